"""WebSocket routes of real frameworks end to end: Starlette, FastAPI and a Django Channels consumer,
driven with the websockets client."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import django
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.conftest import RunningServer

if not settings.configured:  # the same settings as test_frameworks, whichever module comes first
    settings.configure(
        DEBUG=False,
        SECRET_KEY="only-for-tests",
        ROOT_URLCONF="tests.e2e.test_frameworks",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path as django_path
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

Serve = Callable[..., RunningServer]

CHANNELS_NEEDS_ASYNCIO = pytest.mark.asyncio_only(
    "Django Channels needs asyncio: its consumers dispatch in asyncio tasks (channels.utils) over asgiref"
)


def url(server: RunningServer, path: str) -> str:
    return f"ws://{server.host}:{server.port}{path}"


# ---------------------------------------------------------------- Starlette and FastAPI


def make_starlette(closed: list[int], done: threading.Event) -> Starlette:
    async def upper(websocket: StarletteWebSocket) -> None:
        await websocket.accept(subprotocol="upper")
        try:
            async for text in websocket.iter_text():
                await websocket.send_text(text.upper())
        finally:
            closed.append(websocket.scope["path"] == "/upper")
            done.set()

    async def private(websocket: StarletteWebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("members only", status_code=401))

    async def refuse(websocket: StarletteWebSocket) -> None:
        await websocket.close(code=1008)

    return Starlette(
        routes=[
            WebSocketRoute("/upper", upper),
            WebSocketRoute("/private", private),
            WebSocketRoute("/refuse", refuse),
        ]
    )


def test_starlette_websocket_route(serve: Serve) -> None:
    """Starlette WebSocketRoute: accept with a subprotocol, iter_text until the client closes."""
    closed: list[int] = []
    done = threading.Event()
    server = serve(make_starlette(closed, done))
    with connect(url(server, "/upper"), subprotocols=["upper"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "upper"
        ws.send("hello")
        assert ws.recv(timeout=5) == "HELLO"
    assert done.wait(5)
    assert closed == [True]


def test_starlette_denial_response_and_close_before_accept(serve: Serve) -> None:
    """Starlette's send_denial_response uses the websocket.http.response extension; a close before
    accept is a 403."""
    server = serve(make_starlette([], threading.Event()))
    with pytest.raises(InvalidStatus) as denied:
        connect(url(server, "/private"))
    assert denied.value.response.status_code == 401
    assert denied.value.response.body == b"members only"
    with pytest.raises(InvalidStatus) as refused:
        connect(url(server, "/refuse"))
    assert refused.value.response.status_code == 403


def make_fastapi(codes: list[int], done: threading.Event) -> FastAPI:
    app = FastAPI()

    @app.websocket("/rooms/{room}")
    async def room(websocket: WebSocket, room: str, token: str = "") -> None:
        await websocket.accept()
        await websocket.send_json({"room": room, "token": token})
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"echo": data, "room": room})
        except WebSocketDisconnect as exc:
            codes.append(exc.code)
            done.set()

    return app


def test_fastapi_websocket_route(serve: Serve) -> None:
    """FastAPI @app.websocket: path and query parameters, JSON both ways, WebSocketDisconnect
    carrying the client's close code."""
    codes: list[int] = []
    done = threading.Event()
    server = serve(make_fastapi(codes, done))
    with connect(url(server, "/rooms/blue?token=abc")) as ws:
        assert ws.recv(timeout=5) == '{"room":"blue","token":"abc"}'
        ws.send('{"n": 1}')
        assert ws.recv(timeout=5) == '{"echo":{"n":1},"room":"blue"}'
        ws.close(4100, "leaving")
    assert done.wait(5)
    assert codes == [4100]


# ---------------------------------------------------------------- Django Channels


class ChatConsumer(AsyncWebsocketConsumer):
    disconnects: list[int] = []
    done = threading.Event()

    async def connect(self) -> None:
        if self.scope["url_route"]["kwargs"]["room"] == "closed":
            await self.close()
            return
        await self.accept("chat" if "chat" in self.scope["subprotocols"] else None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=f"{self.scope['url_route']['kwargs']['room']}: {text_data}")
        else:
            await self.send(bytes_data=bytes_data[::-1] if bytes_data else b"")

    async def disconnect(self, code: int) -> None:
        ChatConsumer.disconnects.append(code)
        ChatConsumer.done.set()


class CounterConsumer(AsyncJsonWebsocketConsumer):
    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"count": content["count"] + 1})
        if content["count"] >= 2:
            await self.close(code=4200)


def channels_app() -> Any:
    return ProtocolTypeRouter(
        {
            "websocket": URLRouter(
                [
                    django_path("chat/<str:room>/", ChatConsumer.as_asgi()),
                    django_path("count/", CounterConsumer.as_asgi()),
                ]
            )
        }
    )


@CHANNELS_NEEDS_ASYNCIO
def test_django_channels_consumer(serve: Serve) -> None:
    """A Channels AsyncWebsocketConsumer behind URLRouter: route kwargs, subprotocol, text and bytes,
    and disconnect() with the client's close code."""
    ChatConsumer.disconnects = []
    ChatConsumer.done = threading.Event()
    server = serve(channels_app())
    with connect(url(server, "/chat/lobby/"), subprotocols=["chat"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat"
        ws.send("hi")
        assert ws.recv(timeout=5) == "lobby: hi"
        ws.send(b"abc")
        assert ws.recv(timeout=5) == b"cba"
        ws.close(4001)
    assert ChatConsumer.done.wait(5)
    assert ChatConsumer.disconnects == [4001]


@CHANNELS_NEEDS_ASYNCIO
def test_django_channels_consumer_closing(serve: Serve) -> None:
    """Channels: close() in connect() refuses with 403; close(code) after accept reaches the client."""
    server = serve(channels_app())
    with pytest.raises(InvalidStatus) as refused:
        connect(url(server, "/chat/closed/"))
    assert refused.value.response.status_code == 403
    with connect(url(server, "/count/")) as ws:
        for count in range(3):
            ws.send(json.dumps({"count": count}))
            assert json.loads(ws.recv(timeout=5)) == {"count": count + 1}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4200


@CHANNELS_NEEDS_ASYNCIO
def test_composition_falls_back_for_a_websocket_route_the_new_app_lacks(serve: Serve) -> None:
    """wherry.compose over a real WebSocket: the new app (Starlette without the route) closes
    before accept, and the legacy app (a Channels consumer) takes the handshake instead."""
    import wherry

    ChatConsumer.disconnects = []
    ChatConsumer.done = threading.Event()
    server = serve(wherry.compose(make_starlette([], threading.Event()), fallback=channels_app()))
    with connect(url(server, "/upper"), subprotocols=["upper"]) as ws:  # type: ignore[list-item]
        ws.send("new")
        assert ws.recv(timeout=5) == "NEW"
    with connect(url(server, "/chat/legacy/")) as ws:  # only the legacy app has it
        ws.send("old")
        assert ws.recv(timeout=5) == "legacy: old"
