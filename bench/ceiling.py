"""Ceilings: the fastest a Python HTTP/1.1 server built on httptools and uvloop can be.

Three bounds, each removing more of what a real server does:

``app``
    No network at all. The hello app is called in a tight loop with a prebuilt scope and
    trivial ``receive``/``send`` coroutine functions, its coroutine stepped with
    ``coro.send(None)`` (no Task). The result is app calls per second: the cost of the ASGI
    call alone.
``bare``
    An ``asyncio.Protocol`` on uvloop that parses requests with httptools and writes a fixed
    response. No ASGI at all: the cost of the event loop, the parser and the socket.
``asgi``
    The same protocol, but each request builds a scope and calls the ASGI app by stepping its
    coroutine directly (no Task), then writes the response with one ``transport.write``. The
    cost of a minimal ASGI server. It serves apps that finish without suspending (the hello
    app does); an app that suspends gets a 500.

Served ``bench.apps:ws_echo``, both network ceilings also take a WebSocket upgrade and echo each
message: ``bare`` in the protocol itself (``WsBareProtocol``), ``asgi`` through the app's coroutine,
stepped when a message arrives (``WsAsgiProtocol``).

Run ``python -m bench.ceiling serve --mode bare|asgi --port P`` or
``python -m bench.ceiling app --seconds 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, cast

from bench.apps import HELLO_BODY, HELLO_HEADERS, Message, Receive, Scope, Send

App = Callable[[Scope, Receive, Send], Coroutine[Any, Any, None]]

BARE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    + b"".join(name + b": " + value + b"\r\n" for name, value in HELLO_HEADERS)
    + b"\r\n"
    + HELLO_BODY
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
SERVER_ERROR = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
STATUS_LINES = {
    int(status): f"HTTP/1.1 {int(status)} {status.phrase}\r\n".encode("ascii") for status in HTTPStatus
}
REQUEST_DONE: Message = {"type": "http.request", "body": b"", "more_body": False}
DISCONNECT: Message = {"type": "http.disconnect"}


def load_app(spec: str) -> App:
    module_name, _, attr = spec.partition(":")
    app: App = getattr(importlib.import_module(module_name), attr or "app")
    return app


# --- in-process ceiling ----------------------------------------------------------------------


def measure_app(app: App, seconds: float) -> float:
    """Call ``app`` in a tight loop for ``seconds``; return calls per second."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> Message:
        return REQUEST_DONE

    async def send(message: Message) -> None:
        return None

    batch = 2000
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            coro = app(scope, receive, send)
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:
                coro.close()
                raise RuntimeError("the app suspended; the in-process ceiling needs one that does not")
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


# --- network ceilings ------------------------------------------------------------------------


class BareProtocol(asyncio.Protocol):
    """Parse with httptools, answer every request with the same bytes."""

    def __init__(self) -> None:
        import httptools

        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)
        self.parser_error: type[Exception] = httptools.HttpParserError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except self.parser_error:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    def on_message_complete(self) -> None:
        if self.transport is None:
            return
        self.transport.write(BARE_RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


class AsgiProtocol(BareProtocol):
    """Parse with httptools, build a scope, step the app's coroutine, write once."""

    def __init__(self, app: App, server: tuple[str, int]) -> None:
        super().__init__()
        import httptools

        self.app = app
        self.server = server
        self.client: tuple[str, int] | None = None
        self.parse_url: Callable[[bytes], Any] = httptools.parse_url
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if peer else None

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        url = self.parse_url(self.url)
        raw_path: bytes = url.path
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": raw_path.decode("latin-1"),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.server,
        }
        request: Message = {"type": "http.request", "body": b"".join(self.body), "more_body": False}
        pending = [request]
        head: list[bytes] = []
        chunks: list[bytes] = []
        done = False

        async def receive() -> Message:
            return pending.pop() if pending else DISCONNECT

        async def send(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                head.append(STATUS_LINES[message["status"]])
                head.extend(n + b": " + v + b"\r\n" for n, v in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                done = not message.get("more_body", False)

        coro = self.app(scope, receive, send)
        try:
            coro.send(None)
        except StopIteration:
            pass
        else:
            coro.close()
            done = False
        if not done or not head:
            transport.write(SERVER_ERROR)
            transport.close()
            return
        head.append(b"\r\n")
        head.extend(chunks)
        transport.write(b"".join(head))
        if not self.parser.should_keep_alive():
            transport.close()


# --- WebSocket ceilings ----------------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: bytes) -> bytes:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + digest + b"\r\n\r\n"
    )


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked final frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


class WsBareProtocol(BareProtocol):
    """The bare protocol, which also takes a WebSocket upgrade and then echoes every message
    itself: the frame read, unmasked (websockets' C ``apply_mask``) and written back, with no
    ASGI, no checks beyond the frame's length and no fragments or extensions."""

    def __init__(self) -> None:
        super().__init__()
        from websockets.speedups import apply_mask

        self.apply_mask = apply_mask
        self.key = b""
        self.open = False
        self.buffer = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"sec-websocket-key":
            self.key = value

    def on_message_complete(self) -> None:
        if not self.parser.should_upgrade():
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self.open:
            self.frames(data)
            return
        import httptools

        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.open = True
            self.upgraded()
            rest = data[exc.args[0] :]
            if rest:
                self.frames(rest)
        except self.parser_error:
            if self.transport is not None:
                self.transport.write(BAD_REQUEST)
                self.transport.close()

    def upgraded(self) -> None:
        if self.transport is not None:
            self.transport.write(ws_accept(self.key))

    def frames(self, data: bytes) -> None:
        buffer = self.buffer
        if buffer:
            buffer += data
            view = bytes(buffer)
        else:
            view = data
        pos = 0
        end = len(view)
        while end - pos >= 6:
            size = view[pos + 1] & 0x7F
            head = pos + 2
            if size == 126:
                size = int.from_bytes(view[head : head + 2], "big")
                head += 2
            elif size == 127:
                size = int.from_bytes(view[head : head + 8], "big")
                head += 8
            start = head + 4
            if end < start + size:
                break
            payload = self.apply_mask(view[start : start + size], view[head:start])
            self.message(view[pos] & 0x0F, payload)
            pos = start + size
        self.buffer = bytearray(view[pos:]) if pos < end else bytearray()

    def message(self, opcode: int, payload: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if opcode == 0x8:
            transport.write(ws_frame(0x8, payload[:2]))
            transport.close()
        elif opcode == 0x9:
            transport.write(ws_frame(0xA, payload))
        elif opcode in (0x1, 0x2):
            transport.write(ws_frame(opcode, payload))


class _Wait:
    """What ``receive()`` of the ASGI WebSocket ceiling yields while no message is there."""

    __slots__ = ("value",)

    def __await__(self) -> Any:
        yield self
        return self.value


class WsAsgiProtocol(WsBareProtocol):
    """The WebSocket ceiling with an ASGI app: the upgrade builds a websocket scope and starts
    the app, whose coroutine is stepped directly (no Task) each time a message arrives and its
    ``receive()`` waits for one; ``send()`` writes at once. The bound of an ASGI WebSocket server
    with nothing of a real one's checks, limits or task semantics."""

    def __init__(self, app: App, server: tuple[str, int]) -> None:
        super().__init__()
        self.app = app
        self.server = server
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.inbox: list[Message] = []
        self.waiting: _Wait | None = None
        self.coro: Any = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self.headers.append((name, value))
        if name == b"sec-websocket-key":
            self.key = value

    def upgraded(self) -> None:
        transport = self.transport
        if transport is None:
            return
        peer = transport.get_extra_info("peername")
        scope: Scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": self.url.decode("latin-1"),
            "raw_path": self.url,
            "query_string": b"",
            "root_path": "",
            "headers": self.headers,
            "client": (str(peer[0]), int(peer[1])) if peer else None,
            "server": self.server,
            "subprotocols": [],
        }
        self.inbox.append({"type": "websocket.connect"})
        self.coro = self.app(scope, self.receive, self.send)
        self.step()

    async def receive(self) -> Message:
        if self.inbox:
            return self.inbox.pop(0)
        wait = self.waiting = _Wait()
        message: Message = await wait
        return message

    async def send(self, message: Message) -> None:
        transport = self.transport
        if transport is None:
            raise OSError("the connection is closed")
        kind = message["type"]
        if kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                transport.write(ws_frame(0x1, text.encode("utf-8")))
            else:
                transport.write(ws_frame(0x2, message.get("bytes") or b""))
        elif kind == "websocket.accept":
            transport.write(ws_accept(self.key))
        elif kind == "websocket.close":
            transport.write(ws_frame(0x8, int(message.get("code", 1000)).to_bytes(2, "big")))
            transport.close()

    def step(self) -> None:
        coro = self.coro
        if coro is None:
            return
        try:
            coro.send(None)
        except StopIteration:
            self.coro = None
        except Exception:
            self.coro = None
            if self.transport is not None:
                self.transport.close()

    def deliver(self, message: Message) -> None:
        wait = self.waiting
        if wait is None:
            self.inbox.append(message)
            return
        self.waiting = None
        wait.value = message
        self.step()

    def message(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            self.deliver({"type": "websocket.receive", "text": payload.decode("utf-8")})
        elif opcode == 0x2:
            self.deliver({"type": "websocket.receive", "bytes": payload})
        elif opcode == 0x8:
            self.deliver({"type": "websocket.disconnect", "code": 1000})
            if self.transport is not None:
                self.transport.write(ws_frame(0x8, payload[:2]))
                self.transport.close()
        elif opcode == 0x9 and self.transport is not None:
            self.transport.write(ws_frame(0xA, payload))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.coro is not None:
            self.deliver({"type": "websocket.disconnect", "code": 1006})


def serve(mode: str, app_spec: str, host: str, port: int, backlog: int) -> None:
    import uvloop

    app = load_app(app_spec)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server_addr = (host, port)

    websocket = app_spec.endswith(":ws_echo")

    def factory() -> asyncio.Protocol:
        if websocket:
            return WsBareProtocol() if mode == "bare" else WsAsgiProtocol(app, server_addr)
        return BareProtocol() if mode == "bare" else AsgiProtocol(app, server_addr)

    server = loop.run_until_complete(
        loop.create_server(factory, host, port, backlog=backlog, reuse_address=True)
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    app_cmd = sub.add_parser("app", help="in-process ceiling: app calls per second")
    app_cmd.add_argument("--app", default="bench.apps:hello")
    app_cmd.add_argument("--seconds", type=float, default=2.0)
    serve_cmd = sub.add_parser("serve", help="network ceiling server")
    serve_cmd.add_argument("--mode", choices=("bare", "asgi"), required=True)
    serve_cmd.add_argument("--app", default="bench.apps:hello")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8000)
    serve_cmd.add_argument("--backlog", type=int, default=16384)
    args = parser.parse_args(argv)
    if args.command == "app":
        rate = measure_app(load_app(args.app), args.seconds)
        print(json.dumps({"calls_per_s": rate}), flush=True)
    else:
        serve(args.mode, args.app, args.host, args.port, args.backlog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
