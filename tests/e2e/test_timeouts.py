"""Deadlines over real sockets: request head (slowloris), request body, keep-alive; and none of them
fires while the server itself is the slow side (RFC 9110 §15.5.9 for 408, RFC 9112 §9.5 for idle
closes)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.conftest import RunningServer
from tests.e2e.test_bad_input import (
    Recorder,
    assert_error_reply,
    read_responses,
    read_until_close,
    split_response,
)

Serve = Callable[..., RunningServer]


def trickle(sock: socket.socket, data: bytes, interval: float, limit: float) -> tuple[float, bytes]:
    """Send ``data`` one byte every ``interval`` seconds until the server answers or closes.

    Returns the seconds from the first byte to the server's first reaction, and what it sent."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    first = time.monotonic()
    for i in range(len(data)):
        try:
            sock.send(data[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        readable, _, _ = select.select([sock], [], [], interval)
        if readable:
            break
        assert time.monotonic() - first < limit, "no answer while trickling"
    elapsed = time.monotonic() - first
    reply, closed = read_until_close(sock)
    assert closed
    return elapsed, reply


def test_request_head_deadline_stops_slowloris(serve: Serve) -> None:
    """A head trickled one byte every 0.1 s gets 408 and the close timeout_request_head after its
    first byte: trickling does not extend the deadline (RFC 9110 §15.5.9)."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_request_head=0.5, timeout_keep_alive=5)
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 100 + b"\r\n\r\n"
    with server.connect() as sock:
        elapsed, reply = trickle(sock, head, 0.1, 3.0)
    assert 0.4 <= elapsed <= 1.5
    assert_error_reply(reply, True, 408)
    assert app.calls == []


def test_request_head_deadline_on_a_kept_alive_connection(serve: Serve) -> None:
    """The head deadline runs from the first byte of each request, not of the connection."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_request_head=0.5, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_responses(sock, 1) == [(200, b"ok")]
        head = b"GET /2 HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 100
        elapsed, reply = trickle(sock, head, 0.1, 3.0)
    assert 0.4 <= elapsed <= 1.5
    assert_error_reply(reply, True, 408)
    assert app.calls == [("GET", "/1")]


def test_partial_head_then_silence_gets_408(serve: Serve) -> None:
    """A head that stops half way gets 408 and the close (RFC 9110 §15.5.9)."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_request_head=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        reply, closed = read_until_close(sock)
        elapsed = time.monotonic() - started
    assert_error_reply(reply, closed, 408)
    assert 0.2 <= elapsed <= 1.5
    assert app.calls == []


@pytest.mark.parametrize(
    ("head", "first", "rest"),
    [
        pytest.param(b"Content-Length: 10\r\n\r\n", b"hello", b"world", id="content-length"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n", b"5\r\nworld\r\n0\r\n\r\n", id="chunked"
        ),
    ],
)
def test_request_body_deadline_between_pieces(serve: Serve, head: bytes, first: bytes, rest: bytes) -> None:
    """A body that stalls longer than timeout_request_body between two pieces gets 408 and the
    close, and the reading app sees http.disconnect (RFC 9110 §15.5.9; ASGI www spec 2.3)."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_request_body=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\n" + head + first)
        assert app.got_body.wait(3)
        started = time.monotonic()
        reply, closed = read_until_close(sock)
        elapsed = time.monotonic() - started
    assert_error_reply(reply, closed, 408)
    assert elapsed <= 1.5
    assert app.finished.wait(3)
    assert app.messages == [
        {"type": "http.request", "body": b"hello", "more_body": True},
        {"type": "http.disconnect"},
    ]


def test_request_body_deadline_after_response_started_just_closes(serve: Serve) -> None:
    """When the app already answered, a stalled body cuts the connection; no 408 follows the
    response (RFC 9112 §9.6)."""
    seen: list[str] = []
    gone = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                gone.set()
                return

    server = serve(app, lifespan="off", timeout_request_body=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        reply, closed = read_until_close(sock)
    assert closed
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"408" not in reply
    assert gone.wait(3)
    assert seen[-1] == "http.disconnect"


def test_keep_alive_idle_connection_closed(serve: Serve) -> None:
    """An idle keep-alive connection is closed, quietly, timeout_keep_alive after its last response
    (RFC 9112 §9.5)."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_keep_alive=0.3, timeout_request_head=5)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_responses(sock, 1) == [(200, b"ok")]
        started = time.monotonic()
        reply, closed = read_until_close(sock)
        elapsed = time.monotonic() - started
    assert closed
    assert reply == b""
    assert 0.2 <= elapsed <= 1.5


def test_keep_alive_busy_connection_stays_open(serve: Serve) -> None:
    """A connection that sends a request within each keep-alive period stays open past the
    timeout."""
    app = Recorder()
    # Pauses of 0.4 s within a keep-alive period of 1 s: a loaded machine has 0.6 s of margin.
    server = serve(app, lifespan="off", timeout_keep_alive=1.0, timeout_request_head=5)
    with server.connect() as sock:
        started = time.monotonic()
        for i in range(4):
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            assert read_responses(sock, 1) == [(200, b"ok")]
            readable, _, _ = select.select([sock], [], [], 0.4)
            assert not readable, "the server closed a busy connection"
        assert time.monotonic() - started > 1.5  # longer than the keep-alive timeout
    assert len(app.calls) == 4


def test_fresh_connection_sending_nothing_closed_after_keep_alive(serve: Serve) -> None:
    """A connection that never sends a byte is closed quietly after timeout_keep_alive."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_keep_alive=0.3, timeout_request_head=5)
    with server.connect() as sock:
        started = time.monotonic()
        reply, closed = read_until_close(sock)
        elapsed = time.monotonic() - started
    assert closed
    assert reply == b""
    assert 0.2 <= elapsed <= 1.5


def test_no_deadline_while_the_app_is_working(serve: Serve) -> None:
    """Deadlines measure the client only: an app slower than every timeout still gets to answer."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await anyio.sleep(0.8)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"slow"})

    server = serve(
        app, lifespan="off", timeout_keep_alive=0.2, timeout_request_head=0.2, timeout_request_body=0.2
    )
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        assert read_responses(sock, 1) == [(200, b"slow")]


def test_no_body_deadline_while_the_server_paused_reading(serve: Serve) -> None:
    """An app slow to read a large upload pauses reading; the client is not blamed for that: no 408
    (flow control, ARCHITECTURE property 4)."""
    size = 4 * 1024 * 1024
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(1.0)  # three body timeouts without reading anything
        total = 0
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            total += len(message["body"])
            if not message["more_body"]:
                break
        received.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="off", timeout_request_body=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sender = threading.Thread(
            target=sock.sendall,
            args=(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size + b"u" * size,),
        )
        sender.start()
        try:
            assert read_responses(sock, 1, timeout=5) == [(200, b"ok")]
        finally:
            sender.join(5)
    assert received == [size]


async def slow_first(scope: Any, receive: Any, send: Any) -> None:
    """Answers /slow after 0.6 s, anything else at once (the body is read first either way)."""
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/slow":
        await anyio.sleep(0.6)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": b"done"})


@pytest.mark.parametrize(
    "stalled",
    [
        pytest.param(b"GET /2 HTTP/1.1\r\nHost: a\r\nX-Half: ", id="head"),
        pytest.param(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf", id="body"),
    ],
)
def test_deadline_behind_a_slow_response_answers_in_order(serve: Serve, stalled: bytes) -> None:
    """A pipelined request that stalls while an earlier one is still being answered: the earlier
    response comes first and whole, then the 408, then the close (RFC 9112 §9.3.2)."""
    server = serve(
        slow_first, lifespan="off", timeout_request_head=0.2, timeout_request_body=0.2, timeout_keep_alive=5
    )
    with server.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + stalled)
        reply, closed = read_until_close(sock)
    code, _, body, rest = split_response(reply)
    assert (code, body) == (200, b"done")
    assert_error_reply(rest, closed, 408)


def test_stalled_body_after_its_response_closes_quietly(serve: Serve) -> None:
    """A body that stalls after the app already answered its request: the connection is closed at
    the body deadline with nothing more written (no 408 after a complete response)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"nope"})

    server = serve(app, lifespan="off", timeout_request_body=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf")
        assert read_responses(sock, 1) == [(401, b"nope")]
        started = time.monotonic()
        reply, closed = read_until_close(sock)
        elapsed = time.monotonic() - started
    assert closed
    assert reply == b""
    assert elapsed <= 1.5


def test_body_deadline_waits_for_100_continue(serve: Serve) -> None:
    """A client that sent ``Expect: 100-continue`` waits for the 100 before its body; the body
    deadline runs only from the 100 on, so an app slow to start reading does not cause a 408
    (RFC 9110 §10.1.1)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.sleep(0.6)  # e.g. an auth lookup before the upload is read
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    server = serve(app, lifespan="off", timeout_request_body=0.2, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        sock.settimeout(3)
        interim = sock.recv(1024)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        assert read_responses(sock, 1) == [(200, b"hello")]


def test_body_deadline_after_100_continue_still_applies(serve: Serve) -> None:
    """Once the 100 is sent, a client that does not send its body gets 408 (RFC 9110 §15.5.9)."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_request_body=0.3, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        reply, closed = read_until_close(sock)
    assert reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert_error_reply(reply[len(b"HTTP/1.1 100 Continue\r\n\r\n") :], closed, 408)


def test_empty_lines_do_not_keep_a_connection_alive(serve: Serve) -> None:
    """Empty lines before a request line are ignored (RFC 9112 §2.2) and do not restart the
    keep-alive clock: a client sending only CRLFs is closed after timeout_keep_alive."""
    app = Recorder()
    server = serve(app, lifespan="off", timeout_keep_alive=0.3, timeout_request_head=5)
    with server.connect() as sock:
        elapsed, reply = trickle(sock, b"\r\n" * 100, 0.05, 3.0)
    assert reply == b""
    assert 0.2 <= elapsed <= 1.5
    assert app.calls == []


# ------------------------------------------------ a stalled loop: input that arrived in time counts

STALL = 1.2  # how long the blocking app holds the loop; past every deadline below


class Blocker:
    """An app that blocks the event loop (``time.sleep``, as a sync call in an app does) on
    /block, after telling the test it has started; every other path answers 200 at once."""

    def __init__(self) -> None:
        self.blocking = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            while (message := await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": message["text"]})
            return
        if scope["path"] == "/block":
            self.blocking.set()
            time.sleep(STALL)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def block(self, server: RunningServer) -> socket.socket:
        """Start a request that blocks the loop; returns its connection once the block began."""
        self.blocking.clear()
        sock = server.connect()
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        assert self.blocking.wait(5), "the blocking request did not start"
        return sock


def test_keep_alive_request_sent_in_time_is_served_after_a_stalled_loop(serve: Serve) -> None:
    """RFC 9112 §9.5: a server closes an idle connection, not one whose next request arrived before
    the keep-alive deadline. The loop stalls past the deadline while that request waits unread;
    it is answered, not reset."""
    app = Blocker()
    server = serve(app, lifespan="off", timeout_keep_alive=0.6)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_responses(sock, 1)[0][0] == 200
        with app.block(server) as blocker:
            sock.sendall(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n")  # within the 0.6 s
            assert read_responses(sock, 1)[0][0] == 200
            assert read_responses(blocker, 1)[0][0] == 200


def test_request_head_completed_in_time_is_served_after_a_stalled_loop(serve: Serve) -> None:
    """RFC 9110 §15.5.9: 408 is for a head that did not arrive in time; a head completed before
    --timeout-request-head and read only after a stall of the loop is served."""
    app = Blocker()
    server = serve(app, lifespan="off", timeout_request_head=0.6, timeout_keep_alive=5)
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        with app.block(server) as blocker:
            sock.sendall(b"Host: a\r\n\r\n")
            assert read_responses(sock, 1)[0][0] == 200
            assert read_responses(blocker, 1)[0][0] == 200


def test_http2_request_sent_before_the_idle_deadline_is_served_after_a_stalled_loop(serve: Serve) -> None:
    """RFC 9113 §6.8: the idle GOAWAY is for an idle connection; a stream opened before the
    deadline and read only after a stall of the loop is served."""
    from tests.h2util import H2Client

    app = Blocker()
    server = serve(app, lifespan="off", timeout_keep_alive=0.6)
    with H2Client(server.host, server.port) as client:
        first = client.request(scheme=b"http")
        while not client.responses[first].ended:
            assert client.events(), "no answer"
        with app.block(server) as blocker:
            second = client.request(scheme=b"http")
            while not client.responses[second].ended:
                assert client.events(), "no answer"
            assert client.responses[second].status == 200
            assert read_responses(blocker, 1)[0][0] == 200


def test_websocket_pong_sent_in_time_keeps_the_connection_after_a_stalled_loop(serve: Serve) -> None:
    """RFC 6455 §5.5.3: a pong that answered the ping before --ws-ping-timeout keeps the connection,
    even when the loop stalled past the timeout before reading it."""
    from tests.wsframes import PING, PONG, TEXT, frame, open_websocket, parse_frames

    app = Blocker()
    server = serve(app, lifespan="off", ws_ping_interval=0.3, ws_ping_timeout=1.0)  # < STALL
    with server.connect() as sock:
        _, data = open_websocket(sock)
        sock.settimeout(5)
        while not any(opcode == PING for opcode, _ in parse_frames(data)):
            more = sock.recv(65536)
            assert more, "closed before a ping"
            data += more
        payload = next(p for opcode, p in parse_frames(data) if opcode == PING)
        with app.block(server) as blocker:
            sock.sendall(frame(PONG, payload, mask=True))
            assert read_responses(blocker, 1)[0][0] == 200
        sock.sendall(frame(TEXT, b"still here", mask=True))
        data = b""
        while not any(opcode == TEXT for opcode, _ in parse_frames(data)):
            more = sock.recv(65536)
            assert more, f"closed after the stall: {parse_frames(data)}"
            data += more


def test_body_slower_than_min_body_rate_gets_408(serve: Serve) -> None:
    """--min-body-rate: a body trickled a byte every 0.2 s, each piece well within
    timeout_request_body, still gets 408 and the close once a 5-second window passes without
    the bytes the rate asks for; the reading app sees http.disconnect."""
    app = Recorder()
    server = serve(app, lifespan="off", min_body_rate=100, timeout_request_body=30, timeout_keep_alive=30)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        elapsed, reply = trickle(sock, b"x" * 1000, 0.2, 10.0)
    assert 4.5 <= elapsed <= 7.5
    assert_error_reply(reply, True, 408)
