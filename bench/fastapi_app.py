"""The FastAPI application of the ``fastapi`` scenario: ``GET /json``."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/json")
async def json_hello() -> dict[str, str]:
    return {"message": "Hello, world!"}
