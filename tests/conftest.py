"""Shared fixtures: a real Wherry server on a real socket, run in a thread with its own event loop
(asyncio, uvloop, or a ``trio.run`` of its own)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wherry import Config, Server

LOOPS = ["asyncio", "uvloop", "trio"]


class RunningServer:
    def __init__(self, server: Server, thread: threading.Thread, errors: list[Any]) -> None:
        self.server = server
        self.thread = thread
        self.errors = errors
        address = server.addresses[0]
        if isinstance(address, str):
            self.host, self.port = address, 0
            self.url = "http://localhost"
        else:
            self.host, self.port = address[0], address[1]
            host = f"[{self.host}]" if ":" in self.host else self.host
            self.url = f"http://{host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        return sock

    def stop(self, force: bool = False) -> None:
        self.server.shutdown(force)
        self.thread.join(30)
        assert not self.thread.is_alive(), "server did not stop"


def _new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@contextlib.contextmanager
def run_server(app: Any, loop: str = "asyncio", **options: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1 with a free port until the block ends."""
    options.setdefault("host", "127.0.0.1")
    options.setdefault("port", 0)
    options.setdefault("access_log", False)
    config = Config(**options)
    server = Server(app, config)
    started = threading.Event()
    errors: list[Any] = []
    failure: list[BaseException] = []

    def on_started(srv: Server) -> None:
        runtime = getattr(srv._backend, "runtime", None)
        if loop == "trio" and runtime is not None:
            runtime.report = errors.append  # what asyncio gives its exception handler
        started.set()

    def target() -> None:
        if loop == "trio":
            import trio

            try:
                trio.run(functools.partial(server.serve, on_started=on_started))
            except BaseException as exc:
                failure.append(exc)
            finally:
                started.set()
            return
        event_loop = _new_loop(loop)
        event_loop.set_exception_handler(lambda _loop, context: errors.append(context))
        try:
            event_loop.run_until_complete(server.serve(on_started=on_started))
        except BaseException as exc:
            failure.append(exc)
        finally:
            started.set()
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    running = RunningServer(server, thread, errors)
    try:
        yield running
    finally:
        if thread.is_alive():
            running.stop()
    if failure:
        raise failure[0]
    assert not errors, f"unhandled errors in the event loop: {errors}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "asyncio_only(reason): the test needs asyncio itself; skipped on trio with the reason"
    )


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    marker = request.node.get_closest_marker("asyncio_only")
    if marker is not None and name == "trio":
        pytest.skip(marker.args[0])
    return name


@pytest.fixture
def serve(loop_name: str) -> Iterator[Callable[..., RunningServer]]:
    """``serve(app, **options)`` starts a server for the test; all are stopped at teardown."""
    stack = contextlib.ExitStack()

    def start(app: Any, **options: Any) -> RunningServer:
        return stack.enter_context(run_server(app, loop_name, **options))

    with stack:
        yield start


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes (or ``timeout`` passes with nothing more)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def exchange(server: RunningServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and read everything until the server closes."""
    with server.connect() as sock:
        sock.sendall(data)
        return recv_all(sock, timeout)


def read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (Content-Length or chunked) from ``sock``."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a full head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if 100 <= status < 200:
        return status, headers, rest
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return status, headers, rest[:length]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2 :]
            if size == 0:
                return status, headers, body
    return status, headers, rest


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[list[str]], Config]]:
    """``parse(args)``: the Config the ``wherry`` command would serve with (no environment)."""
    import wherry.cli

    for name in list(os.environ):
        if name.startswith(("WHERRY_", "UVICORN_")) or name in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
            monkeypatch.delenv(name)
    captured: list[Config] = []
    monkeypatch.setattr(wherry.cli, "run", lambda config: captured.append(config))
    command = wherry.cli._build()

    def run(args: list[str]) -> Config:
        command.main(args=args, prog_name="wherry", standalone_mode=False)
        return captured.pop()

    yield run
