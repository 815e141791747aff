"""The WebSocket driver's less travelled paths, over HTTP/1.1 (the wsproto client) and over HTTP/2
(RFC 8441 extended CONNECT, the h2 client carrying wsproto frames): refused and denied handshakes,
input held before the accept, backpressure both ways, deadlines, shutdown and the stream's end."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import h2.errors
import h2.events
import h11
import pytest
import wsproto.connection
import wsproto.events
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    TextMessage,
)

from tests.connection.clients import Gate, H2Client, Receive, Send, WSClient
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver
from wherry.connection.lifecycle import LINGER
from wherry.connection.websocket import CLOSE_TIMEOUT, PENDING_LIMIT

App = Callable[[dict[str, Any], Receive, Send], Any]

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nhost: example.com\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def frames(*events: wsproto.events.Event) -> bytes:
    """Client frames (masked) for ``events``, as a session already open would send them."""
    conn = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    return b"".join(conn.send(event) for event in events)


def parse_response(data: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """An HTTP/1.1 response read with h11: status, headers and body."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.receive_data(data)
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status, headers = event.status_code, dict(event.headers)
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return status, headers, body
        else:
            raise AssertionError(f"incomplete response: {data!r}")


def recorder(seen: list[Any], gate: Gate | None = None, accept: bool = True) -> App:
    """An app that records what it receives (and what its sends raise), optionally waiting at
    ``gate`` before the accept."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        seen.append(await receive())
        if gate is not None:
            await gate.wait()
        if accept:
            await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return app


def closer(seen: list[Any], code: int, gate: Gate | None = None) -> App:
    """An app that accepts, waits at ``gate`` if given, closes with ``code``, and records what it
    receives next."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if gate is not None:
            await gate.wait()
        await send({"type": "websocket.close", "code": code})
        seen.append(await receive())

    return app


class NoEofTransport(MemoryTransport):
    """A transport that cannot half-close (as a TLS transport)."""

    def can_write_eof(self) -> bool:
        return False


# ------------------------------------------------------------------------------ HTTP/1.1: handshake


def test_missing_version_is_refused_with_426_before_the_app(runtime: ManualRuntime) -> None:
    """A handshake without Sec-WebSocket-Version gets 426 naming version 13; the app is not called."""
    seen: list[Any] = []
    transport = connect(server_context(recorder(seen), runtime))
    transport.receive(HANDSHAKE + b"\r\n")
    status, headers, body = parse_response(transport.take())
    assert status == 426 and headers[b"sec-websocket-version"] == b"13"
    assert body.startswith(b"Upgrade Required")
    assert transport.eof_written and not transport.closing and seen == []
    transport.receive(b"ignored")  # dropped while the answer lingers
    assert transport.take() == b""
    transport.receive_eof()
    assert transport.lost and not transport.aborted


def test_post_handshake_is_refused_with_400(runtime: ManualRuntime) -> None:
    """A handshake that is not a GET is answered 400 and never reaches the app."""
    seen: list[Any] = []
    transport = connect(server_context(recorder(seen), runtime))
    transport.receive(HANDSHAKE.replace(b"GET", b"POST") + b"sec-websocket-version: 13\r\n\r\n")
    status, _, body = parse_response(transport.take())
    assert status == 400 and b"GET" in body and seen == []


def test_refused_handshake_lingers_then_closes(runtime: ManualRuntime) -> None:
    """After a refusal the half-closed connection is closed once LINGER passes without the peer."""
    transport = connect(server_context(recorder([]), runtime))
    transport.receive(HANDSHAKE + b"\r\n")
    assert parse_response(transport.take())[0] == 426
    runtime.advance(LINGER - 0.1)
    assert not transport.closing
    runtime.advance(0.2)
    assert transport.closing and transport.lost


def test_refusal_over_a_transport_that_cannot_half_close(runtime: ManualRuntime) -> None:
    """Where the transport cannot write EOF, the refusal is followed by a plain close."""
    ctx = server_context(recorder([]), runtime)
    driver = H1Driver(ctx)
    transport = NoEofTransport(runtime, driver)
    runtime.call(lambda: driver.connection_made(transport))
    transport.receive(HANDSHAKE + b"\r\n")
    assert parse_response(transport.take())[0] == 426
    assert transport.closing and transport.lost and not transport.eof_written


def test_handshake_while_shutting_down_is_503(runtime: ManualRuntime) -> None:
    """A handshake that arrives during shutdown is answered 503 without calling the app."""
    seen: list[Any] = []
    ctx = server_context(recorder(seen), runtime)
    transport = connect(ctx)
    ctx.shutting_down = True
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    status, _, _ = parse_response(transport.take())
    assert status == 503 and seen == []


def test_proxy_headers_from_a_trusted_peer_set_the_client(runtime: ManualRuntime) -> None:
    """X-Forwarded-For from a trusted peer is the scope's client."""
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.close"})

    transport = connect(server_context(app, runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\nx-forwarded-for: 10.1.2.3\r\n\r\n")
    assert parse_response(transport.take())[0] == 403
    assert scopes[0]["client"][0] == "10.1.2.3"


def test_access_log_lines_for_refused_and_accepted_handshakes(
    runtime: ManualRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    """With the access log on, a refusal and an accepted WebSocket each give an access line."""
    caplog.set_level(logging.INFO)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    ctx = server_context(app, runtime, access_log=True)
    refused = connect(ctx)
    refused.receive(HANDSHAKE + b"\r\n")
    assert parse_response(refused.take())[0] == 426
    client = WSClient(connect(ctx))
    assert isinstance(client.handshake(), AcceptConnection)
    [close] = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    assert len(lines) == 2
    assert " 426" in lines[0] and " 101" in lines[1]


# ------------------------------------------------------------------------------ HTTP/1.1: before accept


def test_frames_sent_before_the_accept_are_delivered_after_it(runtime: ManualRuntime) -> None:
    """Frames that arrive with the handshake wait for the accept, then reach the app in order."""
    seen: list[Any] = []
    gate = Gate(runtime)
    ctx = server_context(recorder(seen, gate), runtime, ws_ping_interval=None)
    transport = connect(ctx)
    early = frames(TextMessage(data="early"), BytesMessage(data=b"\x01"))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n" + early)
    assert transport.take() == b"" and seen == [{"type": "websocket.connect"}]
    gate.open()
    assert transport.take().startswith(b"HTTP/1.1 101 ")
    assert seen[1:] == [
        {"type": "websocket.receive", "text": "early"},
        {"type": "websocket.receive", "bytes": b"\x01"},
    ]
    transport.receive(frames(TextMessage(data="later")))  # no keepalive deadline to follow
    assert seen[-1] == {"type": "websocket.receive", "text": "later"}


def test_too_much_input_before_the_accept_pauses_reading(runtime: ManualRuntime) -> None:
    """Past PENDING_LIMIT bytes before the accept reading pauses; the accept resumes it."""
    seen: list[Any] = []
    gate = Gate(runtime)
    transport = connect(server_context(recorder(seen, gate), runtime))
    big = frames(BytesMessage(data=b"x" * (PENDING_LIMIT + 10)))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n" + big)
    assert transport.log == ["pause_reading"]
    gate.open()
    assert transport.log == ["pause_reading", "resume_reading"]
    assert seen[1] == {"type": "websocket.receive", "bytes": b"x" * (PENDING_LIMIT + 10)}


def test_client_gone_before_the_accept(runtime: ManualRuntime) -> None:
    """A client that ends its side before the accept: the app's accept raises and it sees 1006."""
    seen: list[Any] = []
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await gate.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            seen.append(type(exc).__name__)
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    transport.receive_eof()
    assert transport.lost
    gate.open()
    assert seen == ["ClientDisconnected", {"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    assert transport.take() == b""


# ------------------------------------------------------------------------------ HTTP/1.1: denial


def denial_app(parts: list[tuple[bytes, bool]], headers: list[tuple[bytes, bytes]]) -> App:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        for body, more in parts:
            await send({"type": "websocket.http.response.body", "body": body, "more_body": more})

    return app


def test_denial_response_in_chunks(runtime: ManualRuntime) -> None:
    """A denial response sent in parts reaches the client whole (chunked), then the socket closes."""
    app = denial_app([(b"", True), (b"no ", True), (b"entry", False)], [])
    transport = connect(server_context(app, runtime))
    client = WSClient(transport)
    reject = client.handshake()
    assert isinstance(reject, RejectConnection) and reject.status_code == 401
    body = b"".join(e.data for e in client.events() if isinstance(e, RejectData))
    assert body == b"no entry"
    assert transport.eof_written


def test_denial_response_with_a_length_and_an_empty_last_part(runtime: ManualRuntime) -> None:
    """A denial with content-length: the first part starts it, an empty last part ends it."""
    app = denial_app([(b"gone", True), (b"", False)], [(b"content-length", b"4")])
    transport = connect(server_context(app, runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    status, headers, body = parse_response(transport.take())
    assert (status, headers[b"content-length"], body) == (401, b"4", b"gone")
    assert transport.eof_written


def test_denial_body_beyond_its_length_cuts_the_connection(runtime: ManualRuntime) -> None:
    """A denial body longer than its content-length raises in the app and resets the connection."""
    raised: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        start = {
            "type": "websocket.http.response.start",
            "status": 400,
            "headers": [(b"content-length", b"2")],
        }
        await send(start)
        await send({"type": "websocket.http.response.body", "body": b"ab", "more_body": True})
        try:
            await send({"type": "websocket.http.response.body", "body": b"cd", "more_body": False})
        except Exception as exc:
            raised.append(type(exc).__name__)

    transport = connect(server_context(app, runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    assert raised == ["LocalProtocolError"]
    assert transport.aborted and transport.lost


def test_unfinished_denial_cuts_the_connection(runtime: ManualRuntime) -> None:
    """An app that returns in the middle of its denial response has the connection reset."""
    app = denial_app([(b"part", True)], [])
    transport = connect(server_context(app, runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 401 ")
    assert transport.aborted and transport.lost


# ------------------------------------------------------------------------------ HTTP/1.1: reading


def test_full_queue_pauses_reading_until_the_app_takes_half(runtime: ManualRuntime) -> None:
    """With --ws-max-queue 2 reading pauses once 2 messages wait, and resumes as the app reads."""
    seen: list[Any] = []
    gate = Gate(runtime)

    app = accept_and_record(gate, seen)

    transport = connect(server_context(app, runtime, ws_max_queue=2))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    client.send(TextMessage(data="1"))
    client.send(TextMessage(data="2"))
    assert transport.log == ["pause_reading"]
    client.send(TextMessage(data="3"))  # held by the transport
    assert seen == []
    gate.open()
    assert transport.log == ["pause_reading", "resume_reading"]
    assert [m.get("text") for m in seen] == ["1", "2", "3"]


def test_client_eof_without_close_is_1006(runtime: ManualRuntime) -> None:
    """A client that ends the connection without a Close: the app sees 1006."""
    seen: list[Any] = []
    transport = connect(server_context(recorder(seen), runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.receive_eof()
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert transport.closing


def test_pongs_to_a_peer_that_does_not_read_pause_reading(runtime: ManualRuntime) -> None:
    """A ping whose pong cannot be written stops reading until the peer reads again."""
    transport = connect(server_context(recorder([]), runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=0)
    client.send(Ping(payload=b"p1"))
    assert transport.log == ["pause_reading"]
    client.send(Ping(payload=b"p2"))  # waits with the transport
    transport.drain()
    assert transport.log == ["pause_reading", "resume_reading"]
    events = client.events()
    assert [e.payload for e in events if isinstance(e, Pong)] == [b"p1", b"p2"]


def test_peer_that_reads_nothing_is_cut_after_timeout_send(runtime: ManualRuntime) -> None:
    """Output waiting --timeout-send for a peer that reads nothing resets the connection; 1006."""
    seen: list[Any] = []
    transport = connect(server_context(recorder(seen), runtime, timeout_send=5.0))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=0)
    client.send(Ping(payload=b"p"))
    runtime.advance(4.9)
    assert not transport.aborted
    runtime.advance(0.2)
    assert transport.aborted and transport.lost
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_send_waiting_for_a_peer_that_is_lost_raises(runtime: ManualRuntime) -> None:
    """A send() waiting on a paused transport raises ClientDisconnected once the connection is lost."""
    raised: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.send", "bytes": b"x" * 1000})
        except OSError as exc:
            raised.append(type(exc).__name__)

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    transport.stall(high_water=500)  # the 101 fits, the message does not
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    assert raised == []
    [driver] = ctx.connections
    runtime.call(driver.abort_all)
    assert raised == ["ClientDisconnected"] and transport.aborted


def test_closing_handshake_with_output_still_buffered(runtime: ManualRuntime) -> None:
    """The Close exchange ends while output waits: the socket closes once the peer has read it."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        await send({"type": "websocket.send", "text": "last"})
        await send({"type": "websocket.close", "code": 1000})

    transport = connect(server_context(app, runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=1)
    gate.open()
    client.send(CloseConnection(code=1000))  # the answer to a Close it has not read yet
    assert transport.closing and not transport.lost
    transport.drain()
    assert transport.lost and not transport.aborted
    events = client.events()
    assert isinstance(events[0], TextMessage) and events[0].data == "last"
    assert isinstance(events[1], CloseConnection) and events[1].code == 1000


def test_unanswered_close_ends_after_the_close_timeout(runtime: ManualRuntime) -> None:
    """With --ws-ping-timeout 0 the server waits CLOSE_TIMEOUT for the Close answer, then closes."""
    seen: list[Any] = []

    app = closer(seen, 4000)

    transport = connect(server_context(app, runtime, ws_ping_timeout=0))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    [close] = client.events()
    assert isinstance(close, CloseConnection) and close.code == 4000
    runtime.advance(CLOSE_TIMEOUT - 0.1)
    assert not transport.closing
    runtime.advance(0.2)
    assert transport.closing
    assert seen and seen[0]["type"] == "websocket.disconnect"


def test_graceful_shutdown_says_going_away(runtime: ManualRuntime) -> None:
    """Shutdown sends a Close with 1001; the app's later send raises; the client's answer ends it."""
    gate = Gate(runtime)
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:
            seen.append(type(exc).__name__)
        seen.append(await receive())

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    [driver] = ctx.connections
    runtime.call(driver.shutdown)
    [close] = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1001
    gate.open()
    assert seen == ["ClientDisconnected"]
    client.send(close.response())
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1001, "reason": "server shutting down"}
    assert transport.lost and not transport.aborted


def test_shutdown_and_abort_of_a_lingering_refusal(runtime: ManualRuntime) -> None:
    """Shutdown closes a connection lingering after a refusal; abort_all resets one."""
    ctx = server_context(recorder([]), runtime)
    first, second = connect(ctx), connect(ctx)
    first.receive(HANDSHAKE + b"\r\n")
    second.receive(HANDSHAKE + b"\r\n")
    assert first.eof_written and second.eof_written
    drivers = {driver.carrier.transport: driver for driver in ctx.connections}  # type: ignore[attr-defined]
    runtime.call(drivers[first].shutdown)
    assert first.lost and not first.aborted
    runtime.call(drivers[second].abort_all)
    assert second.aborted and second.lost


def test_abort_all_resets_an_open_websocket(runtime: ManualRuntime) -> None:
    """At the end of the graceful period an open WebSocket is reset and its app sees 1006."""
    seen: list[Any] = []
    ctx = server_context(recorder(seen), runtime)
    transport = connect(ctx)
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    [driver] = ctx.connections
    runtime.call(driver.abort_all)
    assert transport.aborted
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


# ------------------------------------------------------------------------------ HTTP/2 (RFC 8441)


class H2WS:
    """An h2 client opening extended CONNECT streams, with a wsproto session per stream for its
    frames."""

    def __init__(self, transport: MemoryTransport, settings: dict[int, int] | None = None) -> None:
        self.transport = transport
        self.h2 = H2Client(transport)
        self.h2.start(settings)
        self.h2.events()
        self.ws: dict[int, wsproto.connection.Connection] = {}
        self.status: dict[int, int] = {}
        self.body: dict[int, bytes] = {}
        self.messages: dict[int, list[wsproto.events.Event]] = {}
        self.ended: list[int] = []
        self.reset: dict[int, int] = {}

    def open(self, protocol: str = "websocket", extra: list[tuple[str, str]] | None = None) -> int:
        sid: int = self.h2.conn.get_next_available_stream_id()
        headers = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":path", "/ws"),
            (":scheme", "http"),
            (":authority", "example.com"),
        ]
        headers += [("sec-websocket-version", "13")] if extra is None else extra
        self.h2.conn.send_headers(sid, headers)
        self.ws[sid] = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
        self.messages[sid] = []
        self.h2.flush()
        self.read()
        return sid

    def send(self, sid: int, event: wsproto.events.Event, end: bool = False) -> None:
        self.h2.conn.send_data(sid, self.ws[sid].send(event), end_stream=end)
        self.h2.flush()
        self.read()

    def data(self, sid: int, data: bytes, end: bool = False) -> None:
        self.h2.conn.send_data(sid, data, end_stream=end)
        self.h2.flush()
        self.read()

    def end(self, sid: int) -> None:
        self.h2.conn.end_stream(sid)
        self.h2.flush()
        self.read()

    def read(self) -> None:
        """Read what the server wrote: statuses, bodies, WebSocket events, ends and resets."""
        for event in self.h2.events():
            sid = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.ResponseReceived):
                assert sid is not None and event.headers is not None
                self.status[sid] = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                assert sid is not None and event.data is not None
                self.h2.conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
                if self.status.get(sid) == 200 and event.data:
                    self.ws[sid].receive_data(event.data)
                    self.messages[sid].extend(self.ws[sid].events())
                else:
                    self.body[sid] = self.body.get(sid, b"") + event.data
            elif isinstance(event, h2.events.StreamEnded):
                assert sid is not None
                self.ended.append(sid)
            elif isinstance(event, h2.events.StreamReset):
                assert sid is not None and event.error_code is not None
                self.reset[sid] = int(event.error_code)
        self.h2.flush()

    def take(self, sid: int) -> list[wsproto.events.Event]:
        self.read()
        found, self.messages[sid] = self.messages[sid], []
        return found


def accept_and_record(gate: Gate, seen: list[Any]) -> App:
    """An app that accepts, waits at ``gate``, then records every message until the disconnect."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return

    return app


def echo(seen: list[Any], gate: Gate | None = None) -> App:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket" and scope["http_version"] == "2"
        seen.append(await receive())
        if gate is not None:
            await gate.wait()
        await send({"type": "websocket.accept", "headers": [(b"x-extra", b"1")]})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({**message, "type": "websocket.send"})

    return app


def h2_connect(
    app: App, runtime: ManualRuntime, **options: Any
) -> tuple[ServerContext, MemoryTransport, H2WS]:
    ctx = server_context(app, runtime, **options)
    transport = connect(ctx)
    return ctx, transport, H2WS(transport)


def test_h2_echo_and_close_handshake(runtime: ManualRuntime) -> None:
    """Over HTTP/2: 200, messages echoed, the Close answered and END_STREAM both ways."""
    seen: list[Any] = []
    _, transport, client = h2_connect(echo(seen), runtime)
    sid = client.open()
    assert client.status == {sid: 200}
    client.send(sid, TextMessage(data="hi"))
    [message] = client.take(sid)
    assert isinstance(message, TextMessage) and message.data == "hi"
    client.send(sid, CloseConnection(code=1000, reason="bye"))
    [close] = client.take(sid)
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert client.ended == [sid]
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}
    client.end(sid)
    assert sid not in client.reset and not transport.closing


def test_h2_stream_reset_after_linger_when_client_does_not_end(runtime: ManualRuntime) -> None:
    """A client that does not end its side within LINGER after the server's gets RST_STREAM NO_ERROR."""
    _, _, client = h2_connect(echo([]), runtime)
    sid = client.open()
    client.send(sid, CloseConnection(code=1000))
    assert client.ended == [sid] and sid not in client.reset
    client.data(sid, b"late")  # after the server's end: read and dropped
    runtime.advance(LINGER + 0.1)
    client.read()
    assert client.reset == {sid: h2.errors.ErrorCodes.NO_ERROR}


def test_h2_unknown_protocol_is_501(runtime: ManualRuntime) -> None:
    """An extended CONNECT for a protocol other than websocket gets 501."""
    seen: list[Any] = []
    _, _, client = h2_connect(echo(seen), runtime)
    sid = client.open(protocol="chat")
    assert client.status == {sid: 501} and client.ended == [sid] and seen == []
    assert client.body[sid].startswith(b"Not Implemented")


def test_h2_streams_beyond_the_limit_are_refused(runtime: ManualRuntime) -> None:
    """An extended CONNECT beyond the concurrent stream limit is reset REFUSED_STREAM."""
    gate = Gate(runtime)
    _, _, client = h2_connect(echo([], gate), runtime, h2_max_concurrent_streams=1)
    first = client.open()
    client.h2.conn.reset_stream(first)  # its app still runs: the stream still counts
    second = client.open()
    assert client.reset == {second: h2.errors.ErrorCodes.REFUSED_STREAM}
    gate.open()


def test_h2_handshake_refusals(runtime: ManualRuntime) -> None:
    """Over HTTP/2 a Sec-WebSocket-Key is a 400 and a missing version a 426, before the app."""
    seen: list[Any] = []
    _, _, client = h2_connect(echo(seen), runtime)
    keyed = client.open(extra=[("sec-websocket-version", "13"), ("sec-websocket-key", "abc")])
    bare = client.open(extra=[])
    assert client.status == {keyed: 400, bare: 426}
    assert client.ended == [keyed, bare] and seen == []
    assert b"sec-websocket-key" in client.body[keyed]


def test_h2_shutdown_refuses_then_says_going_away(runtime: ManualRuntime) -> None:
    """During shutdown a new stream is refused 503 and an open WebSocket gets Close 1001."""
    seen: list[Any] = []
    ctx, _, client = h2_connect(echo(seen), runtime)
    sid = client.open()
    ctx.shutting_down = True
    late = client.open()
    assert client.status == {sid: 200, late: 503}
    [conn] = ctx.connections
    runtime.call(conn.streams[sid].shutdown)  # type: ignore[attr-defined]
    [close] = client.take(sid)
    assert isinstance(close, CloseConnection) and close.code == 1001


def test_h2_denials(runtime: ManualRuntime) -> None:
    """Over HTTP/2 a close before accept is a 403 and a denial response arrives in its parts."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        if scope["path"] == "/ws":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await gate.wait()
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    _, _, client = h2_connect(app, runtime)
    refused = client.open()
    assert client.status == {refused: 403} and client.ended == [refused]
    sid = client.h2.conn.get_next_available_stream_id()
    client.h2.conn.send_headers(
        sid,
        [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":path", "/deny"),
            (":scheme", "http"),
            (":authority", "example.com"),
            ("sec-websocket-version", "13"),
        ],
    )
    client.ws[sid] = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
    client.h2.flush()
    client.read()
    assert client.status[sid] == 401 and client.body[sid] == b"no "
    gate.open()
    client.read()
    assert client.body[sid] == b"no entry" and client.ended == [refused, sid]


def test_h2_full_queue_holds_data_and_end(runtime: ManualRuntime) -> None:
    """A full queue holds the stream's DATA (and its END_STREAM) uncredited until the app reads."""
    seen: list[Any] = []
    gate = Gate(runtime)

    app = accept_and_record(gate, seen)

    _, _, client = h2_connect(app, runtime, ws_max_queue=1)
    sid = client.open()
    window = client.h2.conn.local_flow_control_window(sid)
    client.send(sid, TextMessage(data="1"))
    client.send(sid, TextMessage(data="2"))
    client.send(sid, TextMessage(data="3"), end=True)
    assert seen == []
    assert client.h2.conn.local_flow_control_window(sid) < window - 3
    gate.open()
    assert [m.get("text") for m in seen[:3]] == ["1", "2", "3"]
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    client.read()
    assert client.ended == [sid]


def test_h2_client_reset_is_1006(runtime: ManualRuntime) -> None:
    """A client's RST_STREAM ends the WebSocket: the app sees 1006."""
    seen: list[Any] = []
    _, _, client = h2_connect(echo(seen), runtime)
    sid = client.open()
    client.h2.conn.reset_stream(sid)
    client.h2.flush()
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


def test_h2_client_end_before_accept_cancels(runtime: ManualRuntime) -> None:
    """END_STREAM before the accept: the stream is cancelled and the app's accept raises."""
    gate = Gate(runtime)
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await gate.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            seen.append(type(exc).__name__)

    _, _, client = h2_connect(app, runtime)
    sid = client.open()
    client.end(sid)
    assert client.reset == {sid: h2.errors.ErrorCodes.CANCEL}
    gate.open()
    assert seen == ["ClientDisconnected"]


def test_h2_send_waits_for_the_stream_window(runtime: ManualRuntime) -> None:
    """A message larger than the client's window: send() waits until the window opens."""
    done: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"z" * 300})
        done.append("sent")

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = H2WS(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    client.h2.conn.local_settings.acknowledge()
    sid = client.open()
    assert done == []
    client.h2.conn.increment_flow_control_window(1000, sid)
    client.h2.flush()
    client.read()
    assert done == ["sent"]
    events = client.take(sid)
    assert b"".join(e.data for e in events if isinstance(e, BytesMessage)) == b"z" * 300
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1000


def test_h2_abort_all_resets_the_stream(runtime: ManualRuntime) -> None:
    """At the end of the graceful period the HTTP/2 connection is cut; the app sees 1006."""
    seen: list[Any] = []
    ctx, transport, client = h2_connect(echo(seen), runtime)
    client.open()
    [conn] = ctx.connections
    runtime.call(conn.abort_all)
    assert transport.aborted
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}


# ------------------------------------------------------------------------------ more paths


def test_frames_in_a_later_read_before_the_accept_wait_for_it(runtime: ManualRuntime) -> None:
    """Frames read after the handshake but before the accept are held, then delivered after it."""
    seen: list[Any] = []
    gate = Gate(runtime)
    transport = connect(server_context(recorder(seen, gate), runtime))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    transport.receive(frames(TextMessage(data="held")))
    assert seen == [{"type": "websocket.connect"}] and transport.take() == b""
    gate.open()
    assert seen[1] == {"type": "websocket.receive", "text": "held"}


def test_upgrade_behind_a_full_pipeline(runtime: ManualRuntime) -> None:
    """An Upgrade behind enough pipelined requests to pause reading is served once they are answered."""
    gate = Gate(runtime)
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await recorder(seen)(scope, receive, send)
            return
        if scope["path"] == "/slow":
            await gate.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    transport = connect(server_context(app, runtime))
    get = b"GET /%b HTTP/1.1\r\nhost: x\r\n\r\n"
    transport.receive(get % b"slow" + get % b"fast" * 16 + HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    assert "pause_reading" in transport.log
    gate.open()
    assert transport.log[-1] == "resume_reading"
    assert transport.take().count(b"HTTP/1.1 204 ") == 17
    transport.receive(frames(TextMessage(data="after")))
    assert seen[-1] == {"type": "websocket.receive", "text": "after"}


def test_queue_resumes_only_once_half_is_taken(runtime: ManualRuntime) -> None:
    """With --ws-max-queue 4 reading resumes when 2 messages are left, not after the first is taken."""
    gate = Gate(runtime)
    log: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        for _ in range(3):
            await receive()
            log.append(transport.log[-1])

    transport = connect(server_context(app, runtime, ws_max_queue=4))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    for i in range(4):
        client.send(TextMessage(data=str(i)))
    assert transport.log == ["pause_reading"]
    gate.open()
    assert log == ["pause_reading", "resume_reading", "resume_reading"]


def test_pong_held_while_the_queue_is_full(runtime: ManualRuntime) -> None:
    """Queue full and a pong waiting: reading resumes only when both the app and the peer read."""
    gate = Gate(runtime)
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        seen.append(await receive())
        seen.append(await receive())

    transport = connect(server_context(app, runtime, ws_max_queue=1))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=0)
    transport.receive(frames(Ping(payload=b"p"), TextMessage(data="m")))
    assert transport.log == ["pause_reading"]
    gate.open()  # the app takes the message; the pong still waits
    assert seen == [{"type": "websocket.receive", "text": "m"}]
    assert transport.log == ["pause_reading"]
    transport.drain()
    assert transport.log == ["pause_reading", "resume_reading"]
    assert [e.payload for e in client.events() if isinstance(e, Pong)] == [b"p"]


def test_queue_full_then_pong_waits_for_both(runtime: ManualRuntime) -> None:
    """Queue full and a pong waiting: the peer reading first leaves reading paused for the app."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        await receive()
        await receive()

    transport = connect(server_context(app, runtime, ws_max_queue=1))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=0)
    transport.receive(frames(Ping(payload=b"p"), TextMessage(data="m")))
    transport.drain()
    assert transport.log == ["pause_reading"]
    gate.open()
    assert transport.log == ["pause_reading", "resume_reading"]


def test_app_close_while_reading_is_paused_reads_the_answer(runtime: ManualRuntime) -> None:
    """An app that closes with its queue full resumes reading, so the client's Close is read."""
    gate = Gate(runtime)
    seen: list[Any] = []

    app = closer(seen, 4002, gate)

    transport = connect(server_context(app, runtime, ws_max_queue=1))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    client.send(TextMessage(data="unread"))
    assert transport.log == ["pause_reading"]
    gate.open()
    assert transport.log == ["pause_reading", "resume_reading"]
    [close] = client.events()
    assert isinstance(close, CloseConnection) and close.code == 4002
    client.send(close.response())
    assert transport.lost and seen[0]["type"] == "websocket.receive"


def test_refusal_to_a_peer_that_reads_nothing_is_cut(runtime: ManualRuntime) -> None:
    """A refusal the peer never reads: the connection is reset after --timeout-send."""
    transport = connect(server_context(recorder([]), runtime, timeout_send=5.0))
    transport.stall(high_water=0)
    transport.receive(HANDSHAKE + b"\r\n")
    assert transport.eof_written and not transport.aborted
    runtime.advance(5.1)
    assert transport.aborted and transport.lost


def test_denial_after_too_much_early_input_resumes_reading(runtime: ManualRuntime) -> None:
    """A 403 after input that paused reading: reading resumes so the rest is drained and dropped."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await gate.wait()
        await send({"type": "websocket.close"})

    transport = connect(server_context(app, runtime))
    big = frames(BytesMessage(data=b"x" * (PENDING_LIMIT + 10)))
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n" + big)
    assert transport.log == ["pause_reading"]
    gate.open()
    assert parse_response(transport.take())[0] == 403
    assert transport.log == ["pause_reading", "write_eof", "resume_reading"]


def test_shutdown_before_the_accept_sends_nothing(runtime: ManualRuntime) -> None:
    """Shutdown of a WebSocket not yet accepted writes no Close; the accept still goes out."""
    gate = Gate(runtime)
    ctx = server_context(recorder([], gate), runtime)
    transport = connect(ctx)
    transport.receive(HANDSHAKE + b"sec-websocket-version: 13\r\n\r\n")
    [driver] = ctx.connections
    runtime.call(driver.shutdown)
    assert transport.take() == b""
    gate.open()
    assert transport.take().startswith(b"HTTP/1.1 101 ")


def test_h2_data_before_the_accept_waits_for_it(runtime: ManualRuntime) -> None:
    """Over HTTP/2, DATA that arrives before the accept reaches the app after it."""
    seen: list[Any] = []
    gate = Gate(runtime)
    _, _, client = h2_connect(echo(seen, gate), runtime)
    sid = client.open()
    client.send(sid, TextMessage(data="early"))
    assert client.status == {} and seen == [{"type": "websocket.connect"}]
    gate.open()
    [message] = client.take(sid)
    assert client.status == {sid: 200}
    assert isinstance(message, TextMessage) and message.data == "early"


def test_h2_transport_backpressure_reaches_the_websocket(runtime: ManualRuntime) -> None:
    """A stalled HTTP/2 connection pauses the WebSocket's send(); the peer reading resumes it."""
    seen: list[Any] = []
    done: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        await send({"type": "websocket.send", "bytes": b"y" * 70000})  # written at once
        done.append("sent")
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    client = H2WS(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.h2.conn.increment_flow_control_window(1 << 20)
    sid = client.open()
    transport.stall(high_water=50)
    client.send(sid, TextMessage(data="go"))
    assert seen and done == []
    transport.drain()
    assert done == ["sent"]
    events = client.take(sid)
    assert b"".join(e.data for e in events if isinstance(e, BytesMessage)) == b"y" * 70000


def test_h2_denial_beyond_the_window(runtime: ManualRuntime) -> None:
    """A denial body larger than the client's window waits for it and arrives whole."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"a" * 150, "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"b" * 150})

    transport = connect(server_context(app, runtime))
    client = H2WS(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    sid = client.open()
    assert client.body[sid] == b"a" * 100 and client.ended == []
    for _ in range(3):
        client.h2.conn.increment_flow_control_window(100, sid)
        client.h2.flush()
        client.read()
    assert client.body[sid] == b"a" * 150 + b"b" * 150 and client.ended == [sid]


def test_h2_reset_drops_held_data(runtime: ManualRuntime) -> None:
    """DATA held for a full queue is dropped when the client resets: the app sees 1006 after the
    message it had queued."""
    gate = Gate(runtime)
    seen: list[Any] = []

    accept_then = accept_and_record(gate, seen)

    _, _, client = h2_connect(accept_then, runtime, ws_max_queue=1)
    sid = client.open()
    for i in range(3):
        client.data(sid, frames(BytesMessage(data=b"%d" % i)))
    client.h2.conn.reset_stream(sid)
    client.h2.flush()
    gate.open()
    assert seen == [
        {"type": "websocket.receive", "bytes": b"0"},
        {"type": "websocket.disconnect", "code": 1006, "reason": ""},
    ]


def test_h2_queue_resumes_with_nothing_held(runtime: ManualRuntime) -> None:
    """A full queue over HTTP/2 drained by the app: later DATA is read and credited at once."""
    seen: list[Any] = []
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        seen.append(await receive())
        seen.append(await receive())

    _, _, client = h2_connect(app, runtime, ws_max_queue=1)
    sid = client.open()
    client.send(sid, TextMessage(data="1"))
    gate.open()
    client.send(sid, TextMessage(data="2"))
    assert seen == [{"type": "websocket.receive", "text": "1"}, {"type": "websocket.receive", "text": "2"}]


# ------------------------------------------------------------------------------ ends that meet


def test_abort_all_leaves_a_closed_websocket_to_flush(runtime: ManualRuntime) -> None:
    """The closing handshake is over while output still waits for the peer: the end of the
    graceful period does not cut what is still buffered (the send deadline bounds it)."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        await send({"type": "websocket.send", "text": "last"})
        await send({"type": "websocket.close", "code": 1000})

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=1)
    gate.open()
    client.send(CloseConnection(code=1000))
    [driver] = ctx.connections
    runtime.call(driver.abort_all)
    assert transport.closing and not transport.aborted
    transport.drain()
    assert transport.lost and not transport.aborted
    assert [type(e) for e in client.events()] == [TextMessage, CloseConnection]


def test_h2_connection_lost_with_data_held(runtime: ManualRuntime) -> None:
    """DATA held for a full queue when the whole connection is lost: dropped (nothing is credited
    on a closed connection), and the app sees 1006 after the message it had queued."""
    gate = Gate(runtime)
    seen: list[Any] = []
    _, transport, client = h2_connect(accept_and_record(gate, seen), runtime, ws_max_queue=1)
    sid = client.open()
    for i in range(3):
        client.data(sid, frames(BytesMessage(data=b"%d" % i)))
    transport.abort()  # the connection is cut
    runtime.settle()
    assert transport.lost
    gate.open()
    assert seen == [
        {"type": "websocket.receive", "bytes": b"0"},
        {"type": "websocket.disconnect", "code": 1006, "reason": ""},
    ]


def test_h2_close_answered_then_reset_in_the_same_read(runtime: ManualRuntime) -> None:
    """The client's Close and its RST_STREAM arrive together: the server's answer ends the stream
    and the reset reaches the driver at once; the app hears of the end once, with the Close."""
    seen: list[Any] = []
    _, transport, client = h2_connect(echo(seen), runtime)
    sid = client.open()
    client.h2.conn.send_data(sid, client.ws[sid].send(CloseConnection(code=1000, reason="bye")))
    client.h2.conn.reset_stream(sid)
    client.h2.flush()
    client.read()
    assert seen[1:] == [{"type": "websocket.disconnect", "code": 1000, "reason": "bye"}]
    assert not transport.closing


def test_h2_stream_lingering_when_writing_resumes(runtime: ManualRuntime) -> None:
    """A stream the server ended waits LINGER for the client's end; the connection's writing
    pausing and resuming meanwhile (a PING answered to a client that reads nothing) changes
    nothing: RST_STREAM NO_ERROR comes after LINGER."""
    _, transport, client = h2_connect(echo([]), runtime)
    sid = client.open()
    client.send(sid, CloseConnection(code=1000))
    assert client.ended == [sid] and sid not in client.reset
    transport.stall(high_water=0)
    client.h2.conn.ping(b"12345678")
    client.h2.flush()
    assert transport.writing_paused
    transport.drain()
    client.read()
    assert sid not in client.reset
    runtime.advance(LINGER + 0.1)
    client.read()
    assert client.reset == {sid: h2.errors.ErrorCodes.NO_ERROR}


def test_a_bad_frame_answering_the_shutdown_close_ends_the_connection(runtime: ManualRuntime) -> None:
    """Shutdown sent its Close (1001); the client answers with a frame that breaks the protocol:
    the session fails and the connection closes. The app's own close afterwards writes nothing,
    and the app learns of the end from the connection's loss (1006)."""
    gate = Gate(runtime)
    seen: list[Any] = []

    app = closer(seen, 1000, gate)

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    [driver] = ctx.connections
    transport.stall(high_water=1 << 20)  # the client reads nothing for now
    runtime.call(driver.shutdown)
    transport.receive(b"\x81\x05hello")  # an unmasked frame from a client (RFC 6455 §5.1)
    assert transport.closing and not transport.lost
    written = bytes(transport.buffer)
    gate.open()
    assert bytes(transport.buffer) == written and seen == []
    transport.drain()
    assert transport.lost and seen == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    assert isinstance(client.events()[0], CloseConnection)
