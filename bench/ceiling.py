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


def serve(mode: str, app_spec: str, host: str, port: int, backlog: int) -> None:
    import uvloop

    app = load_app(app_spec)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server_addr = (host, port)

    def factory() -> asyncio.Protocol:
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
