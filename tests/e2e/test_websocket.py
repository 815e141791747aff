"""WebSocket over real sockets, with the websockets client and raw bytes: the ASGI websocket cycle
(www spec 2.5), the closing handshake and its codes, limits, keepalive and backpressure."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.apps import Release, ws_echo_exact
from tests.conftest import RunningServer, read_response
from tests.procs import wait_until
from tests.wsframes import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    close_code,
    close_frame,
    deflated,
    frame,
    handshake,
    open_websocket,
    parse_frames,
    read_until_closed,
)

Serve = Callable[..., RunningServer]
MB = 1024 * 1024


def ws_url(server: RunningServer, path: str = "/") -> str:
    return f"ws://{server.host}:{server.port}{path}"


class Recorder:
    """An app driven by ``script(receive, send, record)``; what it records is read by the test once
    ``done`` is set (the app has returned)."""

    def __init__(self, script: Callable[..., Any]) -> None:
        self.script = script
        self.records: list[Any] = []
        self.scope: dict[str, Any] = {}
        self.done = threading.Event()
        self.mark = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            if scope["type"] == "http":
                body = json.dumps(
                    {"type": "http", "upgrade": dict(scope["headers"]).get(b"upgrade", b"").decode()}
                )
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": body.encode()})
            return
        self.scope = scope
        try:
            await self.script(receive, send, self.records.append, self)
        finally:
            self.done.set()


def wait(event: threading.Event, timeout: float = 5.0) -> None:
    assert event.wait(timeout), "timed out"


# ------------------------------------------------------------------------------ the cycle


def test_echo_text_binary_and_large_messages(serve: Serve) -> None:
    """RFC 6455 §5.6: text and binary messages, small and of 1 MiB, come back as sent."""
    server = serve(ws_echo_exact)
    with connect(ws_url(server)) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=5) == "héllo"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"
        big = bytes(range(256)) * 4096
        ws.send(big)
        assert ws.recv(timeout=5) == big
        ws.send(["frag", "ment", "ed"])
        assert ws.recv(timeout=5) == "fragmented"


def test_scope_describes_the_websocket(serve: Serve) -> None:
    """ASGI www spec 2.5, WebSocket connection scope: type, scheme ws, path, query, subprotocols,
    spec_version and the denial-response extension."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.close"})

    app = Recorder(script)
    server = serve(app, root_path="/api")
    with server.connect() as sock:
        sock.sendall(handshake("/chat%20room?x=1", b"Sec-WebSocket-Protocol: a, b\r\n"))
        status, _, _ = read_response(sock)
    assert status == 403
    wait(app.done)
    scope = app.scope
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["http_version"] == "1.1"
    assert scope["path"] == "/api/chat room"
    assert scope["raw_path"] == b"/api/chat%20room"
    assert scope["root_path"] == "/api"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert (b"sec-websocket-version", b"13") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"


def test_accept_with_subprotocol_and_headers(serve: Serve) -> None:
    """ASGI www spec, websocket.accept: the chosen subprotocol and extra headers are in the 101."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "v2", "headers": [(b"x-session", b"42")]})
        record(await receive())

    server = serve(Recorder(script))
    with connect(ws_url(server), subprotocols=["v1", "v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "v2"
        assert ws.response is not None
        assert ws.response.headers["x-session"] == "42"


def test_accept_with_a_sec_websocket_protocol_header_is_an_app_error(serve: Serve) -> None:
    """ASGI www spec, websocket.accept: the subprotocol goes in 'subprotocol', not in 'headers';
    the app's error is a 500 (the handshake was not answered)."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"x")]})
        except ValueError as exc:
            record(str(exc))
            raise

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(handshake())
        status, _, _ = read_response(sock)
    assert status == 500
    wait(app.done)
    assert "subprotocol" in app.records[0]


@pytest.mark.parametrize(
    "accept",
    [
        {"type": "websocket.accept", "headers": [(b"x-a", b"1\r\nset-cookie: evil=1")]},
        {"type": "websocket.accept", "headers": [(b"x a", b"1")]},
        {"type": "websocket.accept", "subprotocol": "chat\r\nx-evil: 1"},
    ],
)
def test_accept_cannot_split_the_response(serve: Serve, accept: dict[str, Any]) -> None:
    """RFC 9110 §5.5: header names are tokens and values hold no CR/LF; an accept that would split
    the 101 is an app error (the handshake is answered 500), and nothing of it is written."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        try:
            await send(accept)
        except Exception as exc:
            record(type(exc).__name__)
            raise

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(handshake())
        status, headers, _ = read_response(sock)
        rest = read_until_closed(sock, 3)
    assert status == 500
    assert "set-cookie" not in headers and b"evil" not in rest
    wait(app.done)
    assert app.records == ["LocalProtocolError"]


def test_close_before_accept_is_403_and_the_app_sees_a_disconnect(serve: Serve) -> None:
    """ASGI www spec, websocket.close: before accept the server answers 403 and never completes
    the handshake; the app's next receive() is websocket.disconnect."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        record(await receive())
        await send({"type": "websocket.close", "code": 4003})
        record(await receive())
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            record(type(exc).__name__)

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(handshake())
        status, headers, body = read_response(sock)
        assert read_until_closed(sock, 3) == b""
    assert status == 403 and body == b"" and headers["connection"] == "close"
    wait(app.done)
    assert app.records == [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1006, "reason": ""},
        "ClientDisconnected",
    ]


def test_denial_response_is_a_normal_http_response(serve: Serve) -> None:
    """ASGI websocket.http.response extension: websocket.http.response.start and .body (in pieces)
    answer the handshake with that HTTP response."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"log ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"in"})
        record(await receive())

    app = Recorder(script)
    server = serve(app)
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(server))
    response = caught.value.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.body == b"log in"
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_denial_with_a_header_that_would_split_it_is_500(serve: Serve) -> None:
    """RFC 9110 §5.5: a denial response whose header value holds CR LF is an app error: nothing of
    it is written, the handshake is answered 500."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        headers = [(b"x", b"1\r\nx-evil: 1")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"no"})

    server = serve(Recorder(script))
    with server.connect() as sock:
        sock.sendall(handshake())
        status, headers, _ = read_response(sock)
    assert status == 500 and "x-evil" not in headers


def test_app_returning_without_answering_is_500(serve: Serve) -> None:
    """ASGI: an app that returns before accepting or closing has failed the handshake: 500."""
    server = serve(Recorder(lambda receive, send, record, app: receive()))
    with server.connect() as sock:
        sock.sendall(handshake())
        status, headers, _ = read_response(sock)
    assert status == 500 and headers["connection"] == "close"


@pytest.mark.parametrize(
    ("client_close", "code", "reason"),
    [((4001, "bye"), 4001, "bye"), ((1000, ""), 1000, ""), (None, 1005, "")],
)
def test_client_close_reaches_the_app_with_code_and_reason(
    serve: Serve, client_close: tuple[int, str] | None, code: int, reason: str
) -> None:
    """ASGI www spec 2.5, websocket.disconnect: the peer's Close code and reason (1005 when the
    Close had no code, RFC 6455 §7.1.5); the server echoes the Close."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record(await receive())

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        open_websocket(sock)
        sock.sendall(
            close_frame(None)
            if client_close is None
            else close_frame(client_close[0], client_close[1].encode())
        )
        frames = parse_frames(read_until_closed(sock))
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": code, "reason": reason}]
    assert [op for op, _ in frames] == [CLOSE]
    assert close_code(frames[0][1]) == (None if client_close is None else code)


def test_network_drop_is_1006_and_send_raises_oserror(serve: Serve) -> None:
    """ASGI www spec 2.4-2.5: a dropped connection is websocket.disconnect with 1006, and send()
    after it raises an OSError."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record(await receive())
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:
            record(type(exc).__name__)

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        open_websocket(sock)
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}, "ClientDisconnected"]


def test_drop_before_accept_is_a_disconnect(serve: Serve) -> None:
    """ASGI www spec: websocket.disconnect is sent when the client goes before the app accepts."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        app.mark.set()
        record(await receive())

    app = Recorder(script)
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(handshake())
        wait(app.mark)
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


def test_server_close_completes_the_handshake_and_ends_the_session(serve: Serve) -> None:
    """RFC 6455 §7.1.2, ASGI websocket.close: the app's code and reason reach the client; the app's
    receive() then gives the disconnect, and send() raises."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last"})
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})
        record(await receive())
        try:
            await send({"type": "websocket.send", "text": "after"})
        except OSError as exc:
            record(type(exc).__name__)

    app = Recorder(script)
    server = serve(app)
    with connect(ws_url(server)) as ws:
        assert ws.recv(timeout=5) == "last"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4002 and ws.close_reason == "done"
    wait(app.done)
    assert app.records == [
        {"type": "websocket.disconnect", "code": 4002, "reason": "done"},
        "ClientDisconnected",
    ]


@pytest.mark.parametrize(("raises", "code"), [(False, 1000), (True, 1011)])
def test_app_end_after_accept_closes_the_session(serve: Serve, raises: bool, code: int) -> None:
    """ASGI: an app that returns after accept ends the session with 1000; one that raises, 1011
    (RFC 6455 §7.4.1: an unexpected condition)."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if raises:
            raise RuntimeError("boom")

    server = serve(Recorder(script))
    with connect(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == code


def test_invalid_close_code_from_the_app_is_an_app_error(serve: Serve) -> None:
    """RFC 6455 §7.4.1: 1005 and 1006 are never sent; the app's send raises and it ends with 1011."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": 1006})
        except ValueError:
            record("refused")
            raise

    app = Recorder(script)
    server = serve(app)
    with connect(ws_url(server)) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1011
    assert app.records == ["refused"]


def test_ws_none_answers_upgrades_as_plain_http(serve: Serve) -> None:
    """--ws none: an upgrade request is an ordinary HTTP request to the app."""
    app = Recorder(lambda *a: None)
    server = serve(app, ws="none")
    with server.connect() as sock:
        sock.sendall(handshake())
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body) == {"type": "http", "upgrade": "websocket"}


def test_frames_sent_before_the_101_are_read_after_accept(serve: Serve) -> None:
    """RFC 6455 §4.1: a client should wait for the 101; one that does not has its frames parsed
    after the handshake completes, none lost."""
    server = serve(ws_echo_exact)
    with server.connect() as sock:
        sock.sendall(handshake() + frame(TEXT, b"early"))
        data = read_until_closed(sock, 1.0)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    assert parse_frames(rest) == [(TEXT, b"early")]


def test_upgrade_behind_pipelined_requests_waits_for_their_answers(serve: Serve) -> None:
    """RFC 9112 §9.3.2, RFC 6455 §4.1: requests pipelined before an upgrade are answered first, in
    order; then the connection switches protocols and carries the WebSocket."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await receive()
            body = scope["path"].encode()
            headers = [(b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await ws_echo_exact(scope, receive, send)

    server = serve(app)
    pipelined = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(pipelined + handshake())
        sock.settimeout(5)
        buf = b""
        while b"101 Switching Protocols" not in buf or not buf.endswith(b"\r\n\r\n"):
            data = sock.recv(65536)
            assert data, buf
            buf += data
        one, two, switch = buf.index(b"\r\n\r\n/one"), buf.index(b"\r\n\r\n/two"), buf.index(b"HTTP/1.1 101")
        assert one < two < switch
        sock.sendall(frame(TEXT, b"after the upgrade"))
        data = b""
        while not parse_frames(data):
            data += sock.recv(65536)
        assert parse_frames(data) == [(TEXT, b"after the upgrade")]


def test_limit_concurrency_refuses_a_websocket_with_503(serve: Serve) -> None:
    """--limit-concurrency: a WebSocket holds its app call for its whole life; past the limit a
    handshake is answered 503 and its app is not called."""
    server = serve(ws_echo_exact, limit_concurrency=1)
    with connect(ws_url(server)) as first:
        first.send("hold")
        assert first.recv(timeout=5) == "hold"
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(server))
        assert caught.value.response.status_code == 503


# ------------------------------------------------------------------------------ deflate


def test_permessage_deflate_is_negotiated_and_switchable(serve: Serve) -> None:
    """RFC 7692: compression when offered, unless --no-ws-per-message-deflate."""
    on = serve(ws_echo_exact)
    with connect(ws_url(on)) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        ws.send("a" * 10000)
        assert ws.recv(timeout=5) == "a" * 10000
    off = serve(ws_echo_exact, ws_per_message_deflate=False)
    with connect(ws_url(off)) as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers
        ws.send("a" * 10000)
        assert ws.recv(timeout=5) == "a" * 10000


def test_compression_bomb_is_closed_with_1009(serve: Serve) -> None:
    """RFC 6455 §10.4, RFC 7692 §8.1: 64 MiB of zeros in 64 KiB of deflate, against a 1 MiB limit,
    is closed with 1009; the app receives nothing."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record(await receive())

    app = Recorder(script)
    server = serve(app, ws_max_size=MB)
    with server.connect() as sock:
        head, _ = open_websocket(sock, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        assert b"permessage-deflate" in head
        sock.sendall(frame(BINARY, deflated(b"\x00" * (64 * MB)), rsv=4))
        frames = parse_frames(read_until_closed(sock))
    assert [(op, close_code(p)) for op, p in frames] == [(CLOSE, 1009)]
    wait(app.done)
    assert app.records[0]["code"] == 1009


def test_message_over_max_size_is_1009(serve: Serve) -> None:
    """--ws-max-size: a message over it is refused with 1009 (RFC 6455 §7.4.1) and never delivered."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            record(message)
            if message["type"] == "websocket.disconnect":
                return

    app = Recorder(script)
    server = serve(app, ws_max_size=1000)
    with connect(ws_url(server), max_size=None) as ws:
        ws.send(b"x" * 1000)
        ws.send(b"y" * 1001)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1009
    wait(app.done)
    assert app.records == [
        {"type": "websocket.receive", "bytes": b"x" * 1000},
        {"type": "websocket.disconnect", "code": 1009, "reason": app.records[1]["reason"]},
    ]


# ------------------------------------------------------------------------------ time


def held_open(receive: Any, send: Any, record: Any, app: Recorder) -> Any:
    async def run() -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record(await receive())

    return run()


def test_keepalive_ping_unanswered_closes_with_1011(serve: Serve) -> None:
    """--ws-ping-interval / --ws-ping-timeout: a peer silent after a Ping is closed with 1011."""
    app = Recorder(held_open)
    server = serve(app, ws_ping_interval=0.1, ws_ping_timeout=0.2)
    with server.connect() as sock:
        open_websocket(sock)
        started = time.monotonic()
        frames = parse_frames(read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert [op for op, _ in frames] == [PING, CLOSE]
    assert close_code(frames[1][1]) == 1011
    assert 0.25 <= elapsed < 3
    wait(app.done)
    assert app.records[0]["code"] == 1011


def test_keepalive_ping_answered_keeps_the_connection(serve: Serve) -> None:
    """RFC 6455 §5.5.2-5.5.3: a peer that answers each Ping stays connected past the timeout."""
    server = serve(Recorder(held_open), ws_ping_interval=0.1, ws_ping_timeout=0.2)
    with server.connect() as sock:
        open_websocket(sock)
        sock.settimeout(3)
        pings = 0
        buf = b""
        while pings < 4:
            data = sock.recv(65536)
            assert data, "closed while the client answered every ping"
            buf += data
            for opcode, payload in parse_frames(buf):
                assert opcode == PING
                pings += 1
                sock.sendall(frame(PONG, payload))
            buf = b""
        sock.sendall(close_frame(1000))
        assert [op for op, _ in parse_frames(read_until_closed(sock))] == [CLOSE]


def test_unanswered_close_is_cut_after_the_timeout(serve: Serve) -> None:
    """RFC 6455 §7.1.1: after its Close the server waits --ws-ping-timeout for the peer's, then
    closes the TCP connection; the app sees its own code."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1001})
        record(await receive())

    app = Recorder(script)
    server = serve(app, ws_ping_interval=0, ws_ping_timeout=0.3)
    with server.connect() as sock:
        _, early = open_websocket(sock)
        started = time.monotonic()
        frames = parse_frames(early + read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert [(op, close_code(p)) for op, p in frames] == [(CLOSE, 1001)]
    assert 0.25 <= elapsed < 3
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": 1001, "reason": ""}]


def test_graceful_shutdown_closes_sessions_with_1001(serve: Serve) -> None:
    """RFC 6455 §7.4.1: a server going away closes its WebSockets with 1001; the app sees it."""
    app = Recorder(held_open)
    server = serve(app)
    with connect(ws_url(server)) as ws:
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1001
        stopper.join(10)
    wait(app.done)
    assert app.records[0]["code"] == 1001


# ------------------------------------------------------------------------------ backpressure


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_flooding_client_is_paused_and_memory_stays_flat(serve: Serve) -> None:
    """--ws-max-queue: while the app does not receive, the server stops reading once the queue is
    full: a client trying to push 256 MiB gets only the kernel's buffers in, the server's memory
    does not grow with it, and every message arrives once the app reads."""
    release = Release()

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        app.mark.set()
        await release.wait()
        count = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            count += 1
        record(count)

    app = Recorder(script)
    server = serve(app, ws_max_queue=4, ws_per_message_deflate=False)
    message = frame(BINARY, b"f" * 65536)
    before = rss()
    with server.connect() as sock:
        open_websocket(sock)
        wait(app.mark)
        sock.settimeout(0.5)
        chunk = memoryview(message * 16)  # sent again and again: 4,096 messages, 256 MiB
        offset = 0
        while offset < 4096 * len(message):
            try:
                offset += sock.send(chunk[offset % len(message) :])
            except TimeoutError:
                break  # blocked for 0.5 s: the server stopped reading
        sent = offset // len(message)
        grown = rss() - before
        assert sent < 256, f"the server kept reading: {sent} messages of 64 KiB accepted"
        assert grown < 32 * MB, f"memory grew by {grown} bytes"
        release.open()
        sock.settimeout(5)
        sock.sendall(message[offset % len(message) :])  # the rest of the message cut short
        sock.sendall(close_frame(1000))
        assert parse_frames(read_until_closed(sock)) == [(CLOSE, b"\x03\xe8")]
    wait(app.done)
    assert app.records == [sent + 1]


def small_window(server: RunningServer) -> socket.socket:
    """A client socket whose receive buffer is fixed small before it connects (no autotuning), so
    what the kernel holds for a client that does not read is known."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(5)
    sock.connect((server.host, server.port))
    return sock


def test_send_waits_while_the_client_does_not_read(serve: Serve) -> None:
    """Backpressure on writes: while the client reads nothing, the app's send() waits once the
    transport's buffer is full, so the server holds a bounded amount; all arrives once it reads."""
    count = 64

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        payload = b"s" * MB

        async def send_one(sent: anyio.Event) -> None:
            await send({"type": "websocket.send", "bytes": payload})
            sent.set()

        for i in range(count):
            sent = anyio.Event()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(send_one, sent)
                with anyio.move_on_after(0.5):
                    await sent.wait()
                if not sent.is_set():
                    record(i)
                    app.mark.set()
        record(await receive())

    app = Recorder(script)
    server = serve(app, ws_per_message_deflate=False)
    # Held outside the server: 4 messages in the client's queue, 128 KiB in its socket, at most
    # 4 MiB (tcp_wmem) in the server's socket, and the message being written.
    with connect(ws_url(server), sock=small_window(server), max_size=None, max_queue=4) as ws:
        wait(app.mark, 10)
        stalled_at = app.records[0]
        assert stalled_at < 16, f"send() never waited: {stalled_at} MiB written"
        for _ in range(count):
            assert len(ws.recv(timeout=10)) == MB
    wait(app.done)
    assert app.records[-1]["code"] == 1000


def test_a_send_waiting_for_the_client_to_read_ends_well_when_the_client_closes_first(serve: Serve) -> None:
    """RFC 6455 §7.1.2-7.1.3, ASGI www spec 2.4: a message queued before the server's Close goes
    out before it; when the client's Close is read while the app's send() waits for the client to
    read, and the client then reads, the message arrives whole and send() returns (it raises only
    if the connection is lost first). receive() has already given the disconnect."""
    size = 8 * MB
    sending = threading.Event()

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})

        async def watch() -> None:
            record(await receive())
            app.mark.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            sending.set()  # the message is queued before this task next yields
            try:
                await send({"type": "websocket.send", "bytes": b"b" * size})
            except OSError as exc:
                record(type(exc).__name__)
            else:
                record("sent")

    app = Recorder(script)
    server = serve(app, ws_per_message_deflate=False)
    with small_window(server) as sock:
        _, early = open_websocket(sock)
        wait(sending)
        sock.sendall(close_frame(1000))
        wait(app.mark)  # the Close is read; the message still waits in the server's buffers
        frames = parse_frames(early + read_until_closed(sock))
    assert [(op, len(payload)) for op, payload in frames] == [(BINARY, size), (CLOSE, 2)]
    wait(app.done)
    assert app.records == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}, "sent"]


def _connections(server: RunningServer) -> set[Any]:
    backend = server.server._backend
    assert backend is not None and backend.ctx is not None
    return backend.ctx.connections


def test_a_client_that_reads_nothing_is_cut_after_timeout_send(serve: Serve) -> None:
    """Output waiting for a client that reads nothing has a deadline (--timeout-send): the
    connection is cut, the app's send() raises OSError and receive() gives 1006, instead of
    holding the app and the connection for ever."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": b"s" * MB})
        except OSError as exc:
            record(type(exc).__name__)
        record(await receive())

    app = Recorder(script)
    server = serve(app, ws_per_message_deflate=False, ws_ping_interval=None, timeout_send=0.3)
    with small_window(server) as sock:
        open_websocket(sock)
        wait(app.done, 10)
        assert app.records == [
            "ClientDisconnected",
            {"type": "websocket.disconnect", "code": 1006, "reason": ""},
        ]
        wait_until(lambda: not _connections(server), 5, "the connection to go")


def test_a_close_to_a_client_that_reads_nothing_is_cut_after_timeout_send(serve: Serve) -> None:
    """The app gives up on a send and ends the session while the client reads nothing: the
    server's Close sits behind the unread bytes, and the connection is cut after --timeout-send
    rather than waiting for ever to write them."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        with anyio.move_on_after(0.2):
            await send({"type": "websocket.send", "bytes": b"s" * (16 * MB)})
        await send({"type": "websocket.close", "code": 1000})

    app = Recorder(script)
    server = serve(app, ws_per_message_deflate=False, ws_ping_interval=None, timeout_send=0.5)
    with small_window(server) as sock:
        open_websocket(sock)
        wait(app.done, 10)
        wait_until(lambda: not _connections(server), 10, "the connection to go")


def test_websocket_over_tls_is_wss_with_the_tls_extension(serve: Serve, tmp_path: Any) -> None:
    """RFC 6455 §3 (wss), ASGI TLS extension: a WebSocket over TLS (ALPN http/1.1) has scheme wss
    and the connection's tls extension beside the denial-response one."""
    from tests.h2util import make_certs

    certs = make_certs(tmp_path)
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        seen.append((scope["scheme"], sorted(scope["extensions"])))
        await ws_echo_exact(scope, receive, send)

    server = serve(app, ssl_certfile=str(certs.server_file))
    context = certs.client_context(alpn=("http/1.1",))
    with connect(f"wss://127.0.0.1:{server.port}/", ssl=context) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=5) == "over tls"
    assert seen == [("wss", ["tls", "websocket.http.response"])]
