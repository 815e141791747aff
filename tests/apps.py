"""Small ASGI applications the tests serve."""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel


class Release:
    """An event an app waits on and a test thread sets, on any loop the server runs (anyio)."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None

    def arm(self) -> None:
        """Make the event (in the server's loop): from then on ``open()`` may be called."""
        if self._event is None:
            self._event = anyio.Event()
            self._token = anyio.lowlevel.current_token()

    async def wait(self) -> None:
        self.arm()
        assert self._event is not None
        await self._event.wait()

    def open(self) -> None:
        """Set the event from another thread (once an app has waited on it)."""
        assert self._event is not None and self._token is not None
        anyio.from_thread.run_sync(self._event.set, token=self._token)


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """The benchmark app: read the body, answer 'Hello, world!'."""
    if scope["type"] != "http":
        return
    await read_body(receive)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
        }
    )
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Echo the request body; the scope (minus headers' bytes) comes back in x-scope as JSON."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    info = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope["root_path"],
        "scheme": scope["scheme"],
        "http_version": scope["http_version"],
        "client": scope["client"],
        "server": scope["server"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "asgi": scope["asgi"],
        "state": sorted(scope.get("state", {})),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"x-scope", json.dumps(info).encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def stream(scope: Any, receive: Any, send: Any) -> None:
    """Stream ?n=COUNT chunks of ?size=BYTES (chunked framing)."""
    if scope["type"] != "http":
        return
    params = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
    count, size = int(params.get("n", "10")), int(params.get("size", "10"))
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    chunk = b"x" * size
    for _ in range(count):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def slow(scope: Any, receive: Any, send: Any) -> None:
    """Answer after ?delay= seconds (for graceful-shutdown and concurrency tests)."""
    if scope["type"] != "http":
        return
    params = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
    await read_body(receive)
    await anyio.sleep(float(params.get("delay", "0.5")))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})


class Lifespan:
    """An app with lifespan state: startup stores a value every request's scope['state'] sees."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = json.dumps(scope.get("state")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def asgi2_app(scope: Any) -> Any:
    """An ASGI 2 (double-callable) application."""

    async def instance(receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi2"})

    return instance


async def pid(scope: Any, receive: Any, send: Any) -> None:
    """Answer with the worker's process id."""
    import os

    if scope["type"] != "http":
        return
    await read_body(receive)
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def failing_startup(scope: Any, receive: Any, send: Any) -> None:
    """Lifespan startup fails with a message."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the database is unreachable"})


async def lifespan_marks(scope: Any, receive: Any, send: Any) -> None:
    """Creates the files $MARK.startup and $MARK.shutdown when its lifespan startup and shutdown
    run (a process test's evidence); requests get 'ok'."""
    import os

    if scope["type"] == "lifespan":
        mark = os.environ["MARK"]
        while True:
            message = await receive()
            step = message["type"].rpartition(".")[2]
            with open(f"{mark}.{step}", "w"):
                pass
            await send({"type": f"lifespan.{step}.complete"})
            if step == "shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


_HELD: list[bytes] = []


async def ops(scope: Any, receive: Any, send: Any) -> None:
    """For process tests: ``/block`` blocks the event loop, ``/grow`` keeps 96 MB alive, ``/ids``
    answers 'uid gid', ``/slow?delay=S&mark=PATH`` creates PATH then answers after S seconds;
    anything else answers the pid."""
    import os
    import time

    if scope["type"] != "http":
        return
    await read_body(receive)
    path = scope["path"]
    if path == "/block":
        time.sleep(30)  # a stuck worker: its event loop cannot answer pings
    elif path == "/grow":
        _HELD.append(b"x" * (96 * 1024 * 1024))
    elif path == "/slow":
        params = dict(p.split("=") for p in scope["query_string"].decode().split("&") if "=" in p)
        if "mark" in params:  # tell the test the request is in flight
            with open(params["mark"], "w"):
                pass
        await anyio.sleep(float(params.get("delay", "0.5")))
    body = f"{os.getuid()} {os.getgid()}".encode() if path == "/ids" else str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


async def ws_echo(scope: Any, receive: Any, send: Any) -> None:
    """WebSocket: accept, echo every text message with the client address in front; HTTP: the
    echo app."""
    if scope["type"] == "http":
        await echo(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        client = scope["client"][0] if scope.get("client") else "-"
        await send({"type": "websocket.send", "text": f"{client} {scope['scheme']} {message.get('text')}"})


async def ws_echo_exact(scope: Any, receive: Any, send: Any) -> None:
    """Accept a WebSocket (with the first subprotocol offered) and send every message back as it
    came: text as text, bytes as bytes (the Autobahn|Testsuite echo app)."""
    if scope["type"] != "websocket":
        return
    await receive()
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
