"""The ASGI applications every server runs in the benchmark.

They depend on nothing but the standard library so that importing them costs the same in
every server. The FastAPI application lives in ``bench/fastapi_app.py``, so that the servers
running these plain apps do not pay for importing FastAPI (in time or in memory).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, world!"
HELLO_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO_BODY)).encode("ascii")),
]

NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]

DOWNLOAD_SIZE = 1024 * 1024
DOWNLOAD_BODY = b"x" * DOWNLOAD_SIZE
DOWNLOAD_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(DOWNLOAD_SIZE).encode("ascii")),
]


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer lifespan startup and shutdown; nothing to set up."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> int:
    """Receive the whole request body (stopping early on a disconnect); return its size."""
    size = 0
    more_body = True
    while more_body:
        message = await receive()
        size += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    return size


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request body, answer 200 text/plain ``Hello, world!``."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO_BODY})


async def download(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request body, answer with a 1 MiB body in one message."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": DOWNLOAD_HEADERS})
    await send({"type": "http.response.body", "body": DOWNLOAD_BODY})


async def ws_echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept a WebSocket and send every message back as it came (text as text, bytes as bytes)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await hello(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the request body, answer 404 ``Not Found`` (the default app of the fallback hop)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 404, "headers": NOT_FOUND_HEADERS})
    await send({"type": "http.response.body", "body": b"Not Found"})
