"""Real frameworks served end to end: FastAPI, Starlette and Django, driven with httpx."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import django
import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path as django_path
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse as FastAPIStreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from tests.conftest import RunningServer

DJANGO_ASYNCIO = "Django's ASGI handler needs asyncio (asgiref runs sync views from an asyncio loop)"
Serve = Callable[..., RunningServer]

WAIT = 5.0

# ---------------------------------------------------------------- Django, configured here

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="only-for-tests",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()


def django_hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"method": request.method, "path": request.path, "query": request.GET.get("q", "")})


async def django_async_echo(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.body[::-1], content_type="application/octet-stream")


def django_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"part%d;" % i

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def django_form(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "name": request.POST.get("name", ""),
            "script_name": request.META["SCRIPT_NAME"],
            "path": request.path,
            "path_info": request.path_info,
        }
    )


def django_sync_stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse((b"line%d;" % i for i in range(3)), content_type="text/plain")


urlpatterns = [
    django_path("form/", django_form),
    django_path("sync-stream/", django_sync_stream),
    django_path("hello/", django_hello),
    django_path("echo/", django_async_echo),
    django_path("stream/", django_stream),
]


@pytest.fixture(scope="module")
def django_app() -> Any:
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


@pytest.fixture(scope="module")
def django_wsgi_app() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


# ---------------------------------------------------------------- FastAPI


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def make_fastapi(background_done: threading.Event) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan"}

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"name": item.name, "total": item.price * 2, "tags": item.tags}

    @app.get("/stream")
    async def stream() -> FastAPIStreamingResponse:
        async def numbers() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"{i}\n".encode()
                await anyio.sleep(0)

        return FastAPIStreamingResponse(numbers(), media_type="text/plain")

    @app.post("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(background_done.set)
        return {"status": "queued"}

    @app.get("/sync/{word}")
    def sync_route(word: str) -> dict[str, str]:  # run in FastAPI's thread pool
        return {"word": word.upper()}

    @app.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    return app


@pytest.fixture
def fastapi_server(serve: Serve) -> Iterator[tuple[RunningServer, threading.Event]]:
    done = threading.Event()
    yield serve(make_fastapi(done)), done


def test_fastapi_json_route_with_path_and_query_parameters(
    fastapi_server: tuple[RunningServer, threading.Event],
) -> None:
    """A FastAPI route gets typed path and query parameters and answers JSON."""
    server, _ = fastapi_server
    response = httpx.get(server.url + "/items/42", params={"q": "needle"})
    assert response.status_code == 200
    assert response.json() == {"item_id": 42, "q": "needle"}
    assert httpx.get(server.url + "/items/not-a-number").status_code == 422


def test_fastapi_sync_endpoint_in_the_thread_pool(
    fastapi_server: tuple[RunningServer, threading.Event],
) -> None:
    """A plain 'def' endpoint runs in FastAPI's thread pool (anyio, which needs a current task)."""
    server, _ = fastapi_server
    assert httpx.get(server.url + "/sync/quiet").json() == {"word": "QUIET"}


def test_fastapi_request_body_model(fastapi_server: tuple[RunningServer, threading.Event]) -> None:
    """A JSON body is validated into a pydantic model; an invalid one is a 422."""
    server, _ = fastapi_server
    response = httpx.post(server.url + "/items", json={"name": "pen", "price": 1.5, "tags": ["a"]})
    assert response.json() == {"name": "pen", "total": 3.0, "tags": ["a"]}
    assert httpx.post(server.url + "/items", json={"name": "pen"}).status_code == 422


def test_fastapi_streaming_response(fastapi_server: tuple[RunningServer, threading.Event]) -> None:
    """A StreamingResponse arrives chunked and whole."""
    server, _ = fastapi_server
    with httpx.stream("GET", server.url + "/stream") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert "".join(response.iter_text()) == "0\n1\n2\n3\n4\n"


def test_fastapi_background_task_runs_after_the_response(
    fastapi_server: tuple[RunningServer, threading.Event],
) -> None:
    """A background task runs once the response has been sent."""
    server, done = fastapi_server
    response = httpx.post(server.url + "/background")
    assert response.json() == {"status": "queued"}
    assert done.wait(WAIT)


def test_fastapi_lifespan_state(fastapi_server: tuple[RunningServer, threading.Event]) -> None:
    """State yielded by a FastAPI lifespan is on request.state (lifespan 'state')."""
    server, _ = fastapi_server
    assert httpx.get(server.url + "/state").json() == {"greeting": "hello from lifespan"}


# ---------------------------------------------------------------- Starlette


def make_starlette(disconnected: threading.Event, waiting: threading.Event) -> Starlette:
    async def home(request: StarletteRequest) -> PlainTextResponse:
        return PlainTextResponse(f"home {request.method}")

    async def user(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"user": request.path_params["name"]})

    async def numbers(request: StarletteRequest) -> StreamingResponse:
        async def parts() -> AsyncIterator[str]:
            for i in range(3):
                yield f"part {i};"

        return StreamingResponse(parts(), media_type="text/plain")

    async def long_poll(request: StarletteRequest) -> PlainTextResponse:
        waiting.set()
        while not await request.is_disconnected():
            await anyio.sleep(0.01)
        disconnected.set()
        return PlainTextResponse("gone")

    async def where(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(
            {
                "root_path": request.scope["root_path"],
                "path": request.url.path,
                "url_for": str(request.url_for("where")),
            }
        )

    sub = Starlette(routes=[Route("/where", where, name="where")])
    return Starlette(
        routes=[
            Route("/", home, methods=["GET", "POST"]),
            Route("/users/{name}", user),
            Route("/numbers", numbers),
            Route("/poll", long_poll),
            Mount("/sub", app=sub),
        ]
    )


@pytest.fixture
def starlette_app() -> tuple[Starlette, threading.Event, threading.Event]:
    disconnected, waiting = threading.Event(), threading.Event()
    return make_starlette(disconnected, waiting), disconnected, waiting


def test_starlette_routes(serve: Serve, starlette_app: Any) -> None:
    """Starlette routing: methods, path parameters, 404 and 405."""
    server = serve(starlette_app[0])
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").text == "home GET"
        assert client.post("/").text == "home POST"
        assert client.get("/users/ada").json() == {"user": "ada"}
        assert client.get("/missing").status_code == 404
        assert client.delete("/").status_code == 405


def test_starlette_streaming_response(serve: Serve, starlette_app: Any) -> None:
    """A Starlette StreamingResponse arrives whole."""
    server = serve(starlette_app[0])
    assert httpx.get(server.url + "/numbers").text == "part 0;part 1;part 2;"


def test_starlette_request_is_disconnected(serve: Serve, starlette_app: Any) -> None:
    """request.is_disconnected() turns true when the client closes its connection."""
    app, disconnected, waiting = starlette_app
    server = serve(app)
    sock = socket.create_connection((server.host, server.port), timeout=WAIT)
    sock.sendall(b"GET /poll HTTP/1.1\r\nHost: t\r\n\r\n")
    assert waiting.wait(WAIT)
    assert not disconnected.is_set()
    sock.close()
    assert disconnected.wait(WAIT)


def test_starlette_mount_with_root_path(serve: Serve, starlette_app: Any) -> None:
    """Behind --root-path, a mounted app sees the full path and builds URLs with the prefix."""
    server = serve(starlette_app[0], root_path="/api")
    info = httpx.get(server.url + "/sub/where").json()
    assert info["root_path"] == "/api/sub"
    assert info["path"] == "/api/sub/where"
    assert info["url_for"] == f"{server.url}/api/sub/where"


# ---------------------------------------------------------------- Django


@pytest.mark.asyncio_only(
    "Django's ASGI handler needs asyncio (asgiref runs sync views from an asyncio loop)"
)
def test_django_sync_view(serve: Serve, django_app: Any) -> None:
    """A synchronous Django view behind get_asgi_application()."""
    server = serve(django_app)
    response = httpx.get(server.url + "/hello/", params={"q": "x y"})
    assert response.status_code == 200
    assert response.json() == {"method": "GET", "path": "/hello/", "query": "x y"}


@pytest.mark.asyncio_only(
    "Django's ASGI handler needs asyncio (asgiref runs sync views from an asyncio loop)"
)
def test_django_async_view_reads_the_body(serve: Serve, django_app: Any) -> None:
    """An async Django view gets the whole request body, also when it is sent in chunks."""
    server = serve(django_app)
    body = b"0123456789" * 1000

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    response = httpx.post(server.url + "/echo/", content=pieces())
    assert response.content == body[::-1]


@pytest.mark.asyncio_only(
    "Django's ASGI handler needs asyncio (asgiref runs sync views from an asyncio loop)"
)
def test_django_streaming_and_404(serve: Serve, django_app: Any) -> None:
    """A StreamingHttpResponse arrives whole; an unknown URL is Django's 404."""
    server = serve(django_app)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/stream/").text == "part0;part1;part2;"
        assert client.get("/nowhere/").status_code == 404


@pytest.mark.asyncio_only(
    "Django's ASGI handler needs asyncio (asgiref runs sync views from an asyncio loop)"
)
def test_django_with_root_path(serve: Serve, django_app: Any) -> None:
    """Django routes on the path below root_path (its SCRIPT_NAME)."""
    server = serve(django_app, root_path="/app")
    response = httpx.get(server.url + "/hello/")
    assert json.loads(response.content)["path"] == "/app/hello/"


def test_django_wsgi_application_runs_unchanged(serve: Serve, django_wsgi_app: Any) -> None:
    """get_wsgi_application() is detected as WSGI and served on the thread pool: sync and async
    views, a form POST, SCRIPT_NAME from root_path, a streaming response and Django's 404."""
    server = serve(django_wsgi_app, root_path="/app")
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/hello/", params={"q": "x"}).json() == {
            "method": "GET",
            "path": "/app/hello/",
            "query": "x",
        }
        assert client.post("/form/", data={"name": "Zoë"}).json() == {
            "name": "Zoë",
            "script_name": "/app",
            "path": "/app/form/",
            "path_info": "/form/",
        }
        assert client.post("/echo/", content=b"abc").content == b"cba"
        assert client.get("/sync-stream/").text == "line0;line1;line2;"
        assert client.get("/nowhere/").status_code == 404


# ---------------------------------------------------------------- Flask (WSGI)


@pytest.fixture(scope="module")
def flask_app() -> Any:
    from flask import Flask, Response, jsonify, request, url_for

    app = Flask("flask_under_test")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        return jsonify(
            id=item_id,
            url=url_for("item", item_id=item_id),
            script_root=request.script_root,
            path=request.path,
        )

    @app.post("/upload")
    def upload() -> Any:
        uploaded = request.files["file"]
        return jsonify(name=request.form["name"], size=len(uploaded.read()), filename=uploaded.filename)

    @app.get("/stream")
    def stream() -> Response:
        return Response((f"row{i}\n" for i in range(3)), mimetype="text/plain")

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("flask view failed")

    return app


def test_flask_application_runs_unchanged(serve: Serve, flask_app: Any) -> None:
    """A Flask app is detected as WSGI: routes and url_for under root_path (SCRIPT_NAME), a
    multipart upload, a streamed response, Flask's own 404 and 500, lifespan on."""
    server = serve(flask_app, root_path="/shop", lifespan="on")
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/items/7").json() == {
            "id": 7,
            "url": "/shop/items/7",
            "script_root": "/shop",
            "path": "/items/7",
        }
        response = client.post("/upload", data={"name": "n"}, files={"file": ("a.bin", b"x" * 300_000)})
        assert response.json() == {"name": "n", "size": 300_000, "filename": "a.bin"}
        assert client.get("/stream").text == "row0\nrow1\nrow2\n"
        assert client.get("/missing").status_code == 404
        assert client.get("/boom").status_code == 500
