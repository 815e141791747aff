"""Graceful shutdown in-process (``Server.shutdown()``): stop accepting, close idle connections at
once, let responses in flight finish with ``connection: close``, cut what is left after
``timeout_graceful_shutdown``, then run the lifespan shutdown (docs/discussion/closing.md).

The tests know a request is in flight because the app says so (``Gate.entered``); they let it go on
by opening the gate from the test thread. Nothing sleeps to wait for the server.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.apps import Release
from tests.conftest import RunningServer, read_response
from tests.procs import Wherry, tcp_accepts, wait_until

Serve = Callable[..., RunningServer]


class Gate:
    """An app-side barrier: the app says it is waiting (``entered``), the test thread opens it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._release = Release()

    async def wait(self) -> None:
        self._release.arm()  # before the test thread hears "entered" and opens it
        self.entered.set()
        await self._release.wait()

    def wait_entered(self) -> None:
        assert self.entered.wait(5), "the app never started"

    def open(self) -> None:
        self._release.open()


class GatedApp:
    """``/slow`` waits for the gate then answers 'done'; ``/sleep`` sleeps 5 s; ``/stream``
    streams a chunk every 50 ms for 5 s; anything else answers 'ok' at once. Records how each
    call ended."""

    def __init__(self) -> None:
        self.gate = Gate()
        self.cancelled = threading.Event()
        self.ended: list[str] = []
        self.events: list[str] = []
        self.server: RunningServer | None = None
        self.connections_at_lifespan_shutdown: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        path = scope["path"]
        try:
            if path == "/slow":
                await self.gate.wait()
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]}
                )
                await send({"type": "http.response.body", "body": b"done"})
                self.events.append("response sent")
            elif path == "/sleep":
                self.gate.entered.set()
                await anyio.sleep(5)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"late"})
            elif path == "/stream":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"first", "more_body": True})
                for _ in range(100):
                    await anyio.sleep(0.05)
                    await send({"type": "http.response.body", "body": b"more", "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                await send(
                    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
                )
                await send({"type": "http.response.body", "body": b"ok"})
        except anyio.get_cancelled_exc_class():
            self.ended.append("cancelled")
            self.cancelled.set()
            raise
        except OSError:
            self.ended.append("disconnected")
            raise
        self.ended.append("returned")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                self.events.append("lifespan.shutdown")
                if self.server is not None:
                    self.connections_at_lifespan_shutdown = self.server.server.connections
                await send({"type": "lifespan.shutdown.complete"})
                return


def request(sock: socket.socket, path: str) -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())


def begin_shutdown(server: RunningServer) -> float:
    """Start the graceful shutdown without waiting for it; returns when it was asked for."""
    started = time.monotonic()
    server.server.shutdown()
    return started


def wait_stopped(server: RunningServer, within: float) -> None:
    server.thread.join(within)
    assert not server.thread.is_alive(), f"the server did not stop within {within} s"


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes (EOF or reset); fails if it does not close."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(f"the connection was not closed in {timeout} s") from None
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def assert_closed(sock: socket.socket) -> None:
    """The server closed the connection with nothing more to read."""
    assert read_until_closed(sock) == b""


def test_idle_closed_new_refused_in_flight_completes(serve: Serve) -> None:
    """Shutdown stops accepting, closes idle keep-alive connections at once, and lets the response
    in flight finish with ``connection: close`` (RFC 9112 §9.6) before the server stops."""
    app = GatedApp()
    server = serve(app, timeout_keep_alive=30)
    with server.connect() as idle, server.connect() as busy:
        request(idle, "/")
        assert read_response(idle)[0] == 200  # now idle, kept alive for 30 s
        request(busy, "/slow")
        app.gate.wait_entered()
        begin_shutdown(server)
        # The idle connection is closed while the slow request is still held by its gate. Listening
        # stops before idle connections are closed, so from here a new connection is refused.
        assert_closed(idle)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=5).close()
        assert server.thread.is_alive()
        app.gate.open()
        status, headers, body = read_response(busy)
        assert (status, body) == (200, b"done")
        assert headers["connection"] == "close"
        assert_closed(busy)
    wait_stopped(server, 5)
    assert app.ended == ["returned", "returned"]


def test_pipelined_requests_behind_the_one_in_flight_are_dropped(serve: Serve) -> None:
    """The response in flight says ``connection: close``; requests queued behind it are not started,
    so a client knows to retry them elsewhere (RFC 9112 §9.3.2)."""
    app = GatedApp()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        app.gate.wait_entered()
        begin_shutdown(server)
        app.gate.open()
        rest = read_until_closed(sock)
    assert rest.count(b"HTTP/1.1 ") == 1
    assert b"connection: close\r\n" in rest and rest.endswith(b"done")
    wait_stopped(server, 5)
    assert app.ended == ["returned"]


def test_connection_mid_head_does_not_hold_shutdown(serve: Serve) -> None:
    """A connection whose request head is incomplete has nothing in flight: it is closed at once."""
    app = GatedApp()
    server = serve(app, timeout_request_head=30, timeout_keep_alive=30)
    with server.connect() as sock:
        request(sock, "/")
        assert read_response(sock)[0] == 200  # the server has this connection
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        started = begin_shutdown(server)
        assert_closed(sock)
    wait_stopped(server, 5)
    assert time.monotonic() - started < 2
    assert app.ended == ["returned"]


def test_connections_accepted_as_shutdown_begins_are_closed(serve: Serve) -> None:
    """Connections that arrive while shutdown begins are answered or closed, never left open."""
    server = serve(GatedApp(), timeout_graceful_shutdown=5)
    socks = [server.connect() for _ in range(8)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        started = begin_shutdown(server)
        for sock in socks:
            data = read_until_closed(sock)
            assert data == b"" or (data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok"))
    finally:
        for sock in socks:
            sock.close()
    wait_stopped(server, 5)
    assert time.monotonic() - started < 2


def test_graceful_timeout_cuts_the_request_and_cancels_the_app(serve: Serve) -> None:
    """After timeout_graceful_shutdown the connection is cut, the app task cancelled, and serve()
    returns promptly."""
    app = GatedApp()
    server = serve(app, timeout_graceful_shutdown=0.5)
    with server.connect() as sock:
        request(sock, "/sleep")
        app.gate.wait_entered()
        started = begin_shutdown(server)
        assert read_until_closed(sock) == b""  # no response: the connection is cut
        cut = time.monotonic() - started
    assert app.cancelled.wait(5)
    wait_stopped(server, 3)
    stopped = time.monotonic() - started
    assert 0.45 <= cut < 2.0
    assert stopped < 2.0
    assert app.ended == ["cancelled"]


def test_graceful_timeout_cuts_a_streaming_response(serve: Serve) -> None:
    """A response still streaming when the grace period ends is cut before its last chunk."""
    app = GatedApp()
    server = serve(app, timeout_graceful_shutdown=0.5)
    with server.connect() as sock:
        request(sock, "/stream")
        status, headers, first = read_response_head(sock)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        started = begin_shutdown(server)
        rest = first + read_until_closed(sock)
        cut = time.monotonic() - started
    assert b"more" in rest  # it kept streaming during the grace period ...
    assert not rest.endswith(b"0\r\n\r\n")  # ... and never finished
    assert 0.45 <= cut < 2.0
    wait_stopped(server, 3)
    assert len(app.ended) == 1 and app.ended[0] in ("cancelled", "disconnected")


def read_response_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read a response head and whatever body bytes came with it."""
    sock.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, buf
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, rest


def test_lifespan_shutdown_after_connections_close(serve: Serve) -> None:
    """lifespan.shutdown is sent once every connection is closed (ASGI lifespan spec)."""
    app = GatedApp()
    server = serve(app, lifespan="on")
    app.server = server
    with server.connect() as sock:
        request(sock, "/slow")
        app.gate.wait_entered()
        begin_shutdown(server)
        app.gate.open()
        assert read_response(sock)[2] == b"done"
        assert_closed(sock)
    wait_stopped(server, 5)
    assert app.events == ["response sent", "lifespan.shutdown"]
    assert app.connections_at_lifespan_shutdown == 0


def test_lifespan_shutdown_after_a_cut(serve: Serve) -> None:
    """When the grace period runs out, lifespan.shutdown still comes, after the cut."""
    app = GatedApp()
    server = serve(app, lifespan="on", timeout_graceful_shutdown=0.2)
    app.server = server
    with server.connect() as sock:
        request(sock, "/sleep")
        app.gate.wait_entered()
        begin_shutdown(server)
        assert_closed(sock)
    wait_stopped(server, 3)
    assert app.ended == ["cancelled"]
    assert app.events == ["lifespan.shutdown"]
    assert app.connections_at_lifespan_shutdown == 0


def test_shutdown_without_connections_is_prompt(serve: Serve) -> None:
    """With nothing in flight the server stops at once, whatever the grace period."""
    server = serve(GatedApp(), timeout_graceful_shutdown=30)
    started = begin_shutdown(server)
    wait_stopped(server, 5)
    assert time.monotonic() - started < 1.0


def test_forced_shutdown_skips_the_grace_period(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """shutdown(force=True) cuts requests in flight without waiting for them."""
    caplog.set_level(logging.WARNING, logger="wherry.error")
    app = GatedApp()
    server = serve(app, timeout_graceful_shutdown=30)
    with server.connect() as sock:
        request(sock, "/sleep")
        app.gate.wait_entered()
        started = time.monotonic()
        server.server.shutdown(force=True)
        assert_closed(sock)
    wait_stopped(server, 5)
    assert time.monotonic() - started < 2.0
    assert app.ended == ["cancelled"]
    assert not [r for r in caplog.records if "timed out" in r.getMessage()]


def test_repeated_shutdown_stays_graceful(serve: Serve) -> None:
    """Calling Server.shutdown() again does not cut the grace period; only force=True (or a second
    signal) does."""
    app = GatedApp()
    server = serve(app)
    with server.connect() as sock:
        request(sock, "/slow")
        app.gate.wait_entered()
        begin_shutdown(server)
        begin_shutdown(server)
        assert server.thread.is_alive()
        app.gate.open()
        assert read_response(sock)[2] == b"done"
        assert_closed(sock)
    wait_stopped(server, 5)
    assert app.ended == ["returned"]


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_signal_as_soon_as_the_port_accepts_runs_the_lifespan_shutdown(tmp_path: Path, loop: str) -> None:
    """A SIGINT that arrives between listen() and the server's own handlers is held, not turned
    into an abort: the app's startup is matched by its shutdown and the exit is clean."""
    for attempt in range(3):
        mark = tmp_path / f"mark{attempt}"
        server = Wherry(
            ["tests.apps:lifespan_marks", "--loop", loop, "--no-access-log"],
            tmp_path,
            env={"MARK": str(mark)},
        )
        try:
            wait_until(lambda: tcp_accepts(server.port), 20, "the port to accept")  # noqa: B023
            server.signal(signal.SIGINT)
            code = server.proc.wait(20)
        finally:
            server.close()
        assert code == 0, server.log()
        assert "Aborted" not in server.log()
        started = Path(f"{mark}.startup").exists()
        assert Path(f"{mark}.shutdown").exists() == started, server.log()
        assert started, server.log()
