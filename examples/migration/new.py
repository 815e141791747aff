"""The service as it is becoming: a FastAPI application that has taken over reading orders and
customers. Everything else it answers with a 404, and the server replays the request to the
legacy application (``--fallback``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response

from examples.migration import store


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    yield {"generation": "new"}  # this app's own lifespan state


app = FastAPI(lifespan=lifespan)


@app.middleware("http")
async def served_by(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    response = await call_next(request)
    response.headers["x-served-by"] = "new-fastapi"
    return response


@app.get("/orders")
async def list_orders() -> list[dict[str, Any]]:
    with store.LOCK:
        return sorted(store.ORDERS.values(), key=lambda o: o["id"])


@app.get("/orders/{order_id}")
async def get_order(order_id: int) -> dict[str, Any]:
    with store.LOCK:
        order = store.ORDERS.get(order_id)
    if order is None:
        raise HTTPException(404)
    return order


@app.get("/customers/{customer_id}")
async def get_customer(customer_id: int, request: Request) -> dict[str, Any]:
    customer = store.CUSTOMERS.get(customer_id)
    if customer is None:
        raise HTTPException(404)
    return {**customer, "generation": request.state.generation}


# A sub-application of the new service, mounted by FastAPI itself: a mount inside the server's.
v2 = FastAPI()


@v2.get("/whoami")
async def whoami(request: Request) -> dict[str, Any]:
    return {
        "app": "new-fastapi-v2",
        "root_path": request.scope["root_path"],
        "path": request.scope["path"],
        "url": str(request.url_for("whoami")),
    }


app.mount("/v2", v2)
