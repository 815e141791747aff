"""Every limit trips over a real socket, and a request just inside it passes (RFC 6585 §5 for 431,
RFC 9110 §15.5.14 for 413, §15.6.4 for 503)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.apps import Release
from tests.conftest import RunningServer, read_response
from tests.e2e.test_bad_input import (
    Recorder,
    assert_error_reply,
    read_responses,
    read_until_close,
    talk,
)
from tests.procs import wait_until

Serve = Callable[..., RunningServer]


def head_of_size(size: int, method: bytes = b"GET", extra: bytes = b"") -> bytes:
    """A request head of exactly ``size`` bytes on the wire."""
    start = method + b" / HTTP/1.1\r\nHost: a\r\n" + extra + b"X-Pad: "
    pad = size - len(start) - 4
    assert pad >= 0
    return start + b"p" * pad + b"\r\n\r\n"


def test_limit_request_head_just_inside(serve: Serve) -> None:
    """A head of exactly limit_request_head bytes is accepted."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_head=2048)
    with server.connect() as sock:
        sock.sendall(head_of_size(2048))
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"ok")


@pytest.mark.parametrize("size", [2049, 4096, 1 << 20])
def test_limit_request_head_trips_431(serve: Serve, size: int) -> None:
    """A head over limit_request_head gets 431 and the close, even when the client is still sending
    a huge one (RFC 6585 §5; RFC 9112 §9.6 on closing without losing the answer)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_head=2048)
    with server.connect() as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head_of_size(size))
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 431)
    assert app.calls == []


def test_limit_request_head_trickled_in_pieces(serve: Serve) -> None:
    """The head limit holds for a head that arrives in many segments (each one is counted)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_head=2048)
    data = head_of_size(3000)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(0, len(data), 100):
                sock.send(data[i : i + 100])
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 431)


def test_limit_request_head_counts_only_the_head(serve: Serve) -> None:
    """Pipelined requests that came in the same segment do not count towards the next head's
    limit."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_head=1024)
    one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    last = head_of_size(1000)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(one * 100 + last[:500])  # 2.7 KB: 100 requests and half a head
        assert read_responses(sock, 100) == [(200, b"ok")] * 100
        sock.sendall(last[500:])
        assert read_responses(sock, 1) == [(200, b"ok")]


def test_limit_request_headers_just_inside(serve: Serve) -> None:
    """limit_request_headers fields (Host included) are accepted."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_headers=10)
    fields = b"".join(b"X-%d: a\r\n" % i for i in range(9))
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"ok")


def test_limit_request_headers_trips_431(serve: Serve) -> None:
    """One field more than limit_request_headers gets 431 (RFC 6585 §5)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_headers=10)
    fields = b"".join(b"X-%d: a\r\n" % i for i in range(10))
    reply, closed = talk(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert_error_reply(reply, closed, 431)
    assert app.calls == []


def test_limit_request_body_content_length_just_inside(serve: Serve) -> None:
    """A Content-Length body of exactly limit_request_body bytes is delivered."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"ok" + b"b" * 1000)


def test_limit_request_body_by_content_length_trips_413(serve: Serve) -> None:
    """A Content-Length over limit_request_body gets 413 before the app is called (RFC 9110
    §15.5.14)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n")
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 413)
    assert app.calls == []


def test_limit_request_body_by_content_length_with_body_in_flight(serve: Serve) -> None:
    """413 reaches the client even when it is still pushing a large body (RFC 9112 §9.6)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    with server.connect() as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4000000\r\n\r\n" + b"b" * 4_000_000)
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 413)
    assert app.calls == []


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces)


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_limit_request_body_chunked_just_inside(serve: Serve) -> None:
    """A chunked body of exactly limit_request_body bytes is delivered."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    with server.connect() as sock:
        sock.sendall(CHUNKED_HEAD + chunked(b"b" * 600, b"c" * 400) + b"0\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"ok" + b"b" * 600 + b"c" * 400)


def test_limit_request_body_by_chunked_growth_trips_413(serve: Serve) -> None:
    """A chunked body growing past limit_request_body: the reading app sees http.disconnect and the
    client gets 413 and the close (RFC 9110 §15.5.14; ASGI www spec 2.3)."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    with server.connect() as sock:
        sock.sendall(CHUNKED_HEAD + chunked(b"b" * 600))
        assert app.got_body.wait(3)
        sock.sendall(chunked(b"c" * 401) + b"0\r\n\r\n")
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 413)
    assert app.finished.wait(3)
    assert app.messages == [
        {"type": "http.request", "body": b"b" * 600, "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert app.bodies == []


def test_limit_request_body_chunked_in_one_segment_never_reaches_app(serve: Serve) -> None:
    """A chunked body over the limit that arrives with its head is refused before the app is
    called."""
    app = Recorder()
    server = serve(app, lifespan="off", limit_request_body=1000)
    reply, closed = talk(server, CHUNKED_HEAD + chunked(b"b" * 600, b"c" * 401) + b"0\r\n\r\n")
    assert_error_reply(reply, closed, 413)
    assert app.calls == []


class Gate:
    """An app that holds every request until released; ``entered`` counts the requests inside it."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = Release()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered.release()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held"})

    def open(self) -> None:
        self.release.open()


def test_limit_concurrency_trips_503(serve: Serve) -> None:
    """Beyond limit_concurrency requests in flight the server answers 503 with connection: close
    (RFC 9110 §15.6.4); once they finish, requests are served again."""
    app = Gate()
    server = serve(app, lifespan="off", limit_concurrency=2, timeout_graceful_shutdown=0.5)
    held = [server.connect(), server.connect()]
    try:
        for sock in held:
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in held:
            assert app.entered.acquire(timeout=3)
        reply, closed = talk(server, b"GET /over HTTP/1.1\r\nHost: a\r\n\r\n")
        assert closed
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"connection: close\r\n" in reply.lower()
        app.open()
        for sock in held:
            status, _, body = read_response(sock)
            assert (status, body) == (200, b"held")
    finally:
        for sock in held:
            sock.close()
    # The server has seen both connections go before the next one counts against the limit.
    backend = server.server._backend
    assert backend is not None and backend.ctx is not None
    ctx = backend.ctx
    wait_until(lambda: not ctx.connections, 5, "the held connections to close")
    with server.connect() as sock:
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"held")


def test_limit_concurrency_just_inside(serve: Serve) -> None:
    """limit_concurrency requests may be in flight at once."""
    app = Gate()
    server = serve(app, lifespan="off", limit_concurrency=3, timeout_graceful_shutdown=0.5)
    held = [server.connect() for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n")
        for _ in held:
            assert app.entered.acquire(timeout=3)
        app.open()
        for sock in held:
            assert read_response(sock)[:3:2] == (200, b"held")
    finally:
        for sock in held:
            sock.close()


def listen_queue(port: int) -> int:
    """The accept-queue size of the listening socket on ``port``, as the kernel reports it."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
    ).stdout
    return int(out.split()[2])


def test_backlog_option_reaches_listen(serve: Serve) -> None:
    """--backlog is the listen() queue size of the bound socket."""
    app = Recorder()
    server = serve(app, lifespan="off", backlog=37)
    try:
        queue = listen_queue(server.port)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pytest.skip("ss is not available")
    assert queue == 37
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 200
