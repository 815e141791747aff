"""Fallback of WebSocket handshakes in ``wherry.compose``, driven at the ASGI level: a plain
harness plays the server (``websocket.connect`` in, the app's messages out), as the www spec
describes the exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import wherry

Message = dict[str, Any]


async def run(app: Any, incoming: list[Message]) -> list[Message]:
    """Call ``app`` with a websocket scope; ``incoming`` feeds receive(), then it waits for ever."""
    sent: list[Message] = []
    queue: asyncio.Queue[Message] = asyncio.Queue()
    for message in incoming:
        queue.put_nowait(message)

    async def receive() -> Message:
        return await queue.get()

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.5"},
        "path": "/chat",
        "raw_path": b"/chat",
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def refusing(how: str) -> Any:
    """A default app that refuses every WebSocket: close before accept, or a denial response."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        if how == "close":
            await send({"type": "websocket.close", "code": 1000})
            return
        status = int(how)
        await send({"type": "websocket.http.response.start", "status": status, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": False})

    return app


async def accepting_echo(scope: Any, receive: Any, send: Any) -> None:
    """Accepts, echoes one text message with its path, closes."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": f"legacy {scope['path']}: {message['text']}"})
    await send({"type": "websocket.close", "code": 1000})


def test_websocket_closed_before_accept_falls_back() -> None:
    """www spec "Close - send event": a close before accept refuses the handshake; the composite
    replays websocket.connect to the fallback instead, which accepts and talks to the client."""
    app = wherry.compose(refusing("close"), fallback=accepting_echo)
    sent = asyncio.run(run(app, [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]))
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "legacy /chat: hi"


@pytest.mark.parametrize(("status", "falls_back"), [(404, True), (403, False)])
def test_websocket_denial_response_falls_back_on_its_status(status: int, falls_back: bool) -> None:
    """www spec "Denial Response": a denial with a --fallback-on status is replayed to the
    fallback; any other denial (an auth refusal) is the answer."""
    app = wherry.compose(refusing(str(status)), fallback=accepting_echo)
    sent = asyncio.run(run(app, [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "x"}]))
    if falls_back:
        assert sent[0] == {"type": "websocket.accept"}
    else:
        assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
        assert sent[0]["status"] == 403


def test_websocket_accepted_by_the_default_app_stays_there() -> None:
    """Once the default app accepts, every message is its own and the fallback is never called."""
    called = []

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    async def primary(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000})

    sent = asyncio.run(run(wherry.compose(primary, fallback=fallback), [{"type": "websocket.connect"}]))
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 4000}]
    assert called == []


def test_websocket_mounts_and_routes_dispatch_like_get() -> None:
    """A WebSocket handshake is a GET (RFC 6455 §4.1): it follows mounts and GET routes, and a
    mounted app sees its root_path."""
    app = wherry.compose(refusing("close"), route={"GET /chat": accepting_echo})
    sent = asyncio.run(run(app, [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "r"}]))
    assert sent[1]["text"] == "legacy /chat: r"
    no_route = wherry.compose(refusing("close"), route={"POST /chat": accepting_echo})
    sent = asyncio.run(run(no_route, [{"type": "websocket.connect"}]))
    assert sent == [{"type": "websocket.close", "code": 1000}]
