"""WebSocket over HTTP/2 (RFC 8441) end to end: real sockets, h2's client state machine carrying
WebSocket frames built by hand, over h2c and TLS, on asyncio, uvloop and trio. The ASGI cycle is
the one HTTP/1.1 Upgrades use (www spec 2.5); what is HTTP/2's is checked here: the extended
CONNECT, the 200, END_STREAM and RST_STREAM as the connection's ends, flow control both ways."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import HeadersFrame

from tests.conftest import RunningServer
from tests.h2util import WAIT, Certs, H2Client, Response, make_certs, settings
from tests.wsframes import BINARY, CLOSE, PING, PONG, TEXT, close_frame, deflated, frame, parse_frames

Serve = Callable[..., RunningServer]
MB = 1024 * 1024


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class Env:
    server: RunningServer
    tls: bool
    certs: Certs

    def client(self, **options: Any) -> WSClient:
        context = self.certs.client_context(("h2",)) if self.tls else None
        return WSClient(self.server.host, self.server.port, context, **options)

    @property
    def scheme(self) -> bytes:
        return b"https" if self.tls else b"http"


class WSClient(H2Client):
    """An HTTP/2 client that opens WebSockets with extended CONNECT and reads their frames."""

    def open(
        self,
        path: bytes = b"/",
        extra: list[tuple[bytes, bytes]] | None = None,
        protocol: bytes = b"websocket",
        scheme: bytes = b"http",
        version: bytes | None = b"13",
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        block = [
            (b":method", b"CONNECT"),
            (b":protocol", protocol),
            (b":scheme", scheme),
            (b":path", path),
            (b":authority", b"localhost"),
        ]
        if version is not None:
            block.append((b"sec-websocket-version", version))
        self.conn.send_headers(sid, block + (extra or []))
        self.responses[sid] = Response()
        self.flush()
        return sid

    def opened(self, sid: int) -> Response:
        response = self.responses[sid]
        assert self.wait(lambda: response.status or response.reset is not None), "no answer"
        return response

    def send(self, sid: int, data: bytes, end: bool = False) -> None:
        """Send ``data`` as the windows and the frame size allow, reading (and crediting what
        arrives) while the server's window is shut."""
        while True:
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room >= len(data):
                self.conn.send_data(sid, data, end_stream=end)
                self.flush()
                return
            if room:
                self.conn.send_data(sid, data[:room])
                self.flush()
                data = data[room:]
            else:
                assert self.wait(lambda: self.conn.local_flow_control_window(sid) > 0), "window shut"

    def frames(self, sid: int, count: int, timeout: float = WAIT) -> list[tuple[int, bytes]]:
        response = self.responses[sid]
        self.wait(lambda: len(parse_frames(response.body)) >= count or response.ended, timeout)
        return parse_frames(response.body)

    def ended(self, sid: int) -> Response:
        response = self.responses[sid]
        self.wait(lambda: response.ended or response.reset is not None)
        return response


@pytest.fixture(params=["h2c", "tls"])
def both(request: pytest.FixtureRequest, serve: Serve, certs: Certs) -> Callable[..., Env]:
    tls = request.param == "tls"

    def start(app: Any, **options: Any) -> Env:
        if tls:
            options.setdefault("ssl_certfile", str(certs.server_file))
        options.setdefault("lifespan", "off")
        return Env(serve(app, **options), tls, certs)

    return start


@pytest.fixture
def h2c(serve: Serve, certs: Certs) -> Callable[..., Env]:
    def start(app: Any, **options: Any) -> Env:
        options.setdefault("lifespan", "off")
        return Env(serve(app, **options), False, certs)

    return start


class Recorder:
    """A WebSocket app driven by ``script(receive, send, record)``; the test reads ``records`` once
    ``done`` is set. Plain HTTP requests get a 200 saying so."""

    def __init__(self, script: Callable[..., Any]) -> None:
        self.script = script
        self.records: list[Any] = []
        self.scope: dict[str, Any] = {}
        self.done = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"http " + scope["http_version"].encode()})
            return
        if scope["type"] != "websocket":
            return
        self.scope = scope
        try:
            await self.script(receive, send, self.records.append, self)
        finally:
            self.done.set()

    def wait(self) -> None:
        assert self.done.wait(WAIT), "the app did not finish"


async def echo(receive: Any, send: Any, record: Any, app: Recorder) -> None:
    """Accept with the first subprotocol offered; echo until the end; record the disconnect."""
    await receive()
    offered = app.scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            record(message)
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def code_of(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


# ---------------------------------------------------------------- the handshake and the session


def test_websocket_over_http2_echoes_text_binary_and_a_1_mib_message(both: Callable[..., Env]) -> None:
    """RFC 8441 §4-5: an extended CONNECT is answered 200 (never 101) with the chosen subprotocol;
    its DATA carries WebSocket frames both ways under HTTP/2 flow control (1 MiB is sixteen times
    the stream window); the scope says HTTP/2 and ws/wss."""
    app = Recorder(echo)
    env = both(app)
    big = "w" * MB
    with env.client() as client:
        sid = client.open(b"/chat?room=1", [(b"sec-websocket-protocol", b"chat, other")], scheme=env.scheme)
        response = client.opened(sid)
        assert response.status == 200
        assert response.header(b"sec-websocket-protocol") == b"chat"
        assert response.header(b"sec-websocket-accept") is None
        client.send(sid, frame(TEXT, b"hello") + frame(BINARY, b"\x00\xff"))
        client.send(sid, frame(TEXT, big.encode()))
        frames = client.frames(sid, 3, timeout=20)
        assert frames == [(TEXT, b"hello"), (BINARY, b"\x00\xff"), (TEXT, big.encode())]
        client.send(sid, close_frame(1000))
        assert client.frames(sid, 4)[3] == (CLOSE, b"\x03\xe8")
        assert client.ended(sid).ended
    app.wait()
    scope = app.scope
    assert scope["http_version"] == "2"
    assert scope["scheme"] == ("wss" if env.tls else "ws")
    assert (scope["path"], scope["query_string"], scope["subprotocols"]) == (
        "/chat",
        b"room=1",
        ["chat", "other"],
    )
    assert (b"host", b"localhost") in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]
    assert ("tls" in scope["extensions"]) == env.tls
    assert app.records == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


def test_permessage_deflate_is_negotiated_over_http2(h2c: Callable[..., Env]) -> None:
    """RFC 7692 over RFC 8441: offered in the CONNECT, agreed in the 200, compressed frames both
    ways; the same negotiation as on HTTP/1.1."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        sid = client.open(
            extra=[(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")]
        )
        extension = client.opened(sid).header(b"sec-websocket-extensions")
        assert extension is not None and extension.startswith(b"permessage-deflate")
        client.send(sid, frame(TEXT, deflated(b"squeeze " * 100), rsv=4))
        first = client.responses[sid]
        assert client.wait(lambda: len(first.body) > 2)
        assert first.body[0] == 0xC1  # FIN, RSV1 (compressed), text
        assert len(first.body) < 100


def test_permessage_deflate_can_be_switched_off_over_http2(h2c: Callable[..., Env]) -> None:
    """--no-ws-per-message-deflate: the offer is declined on HTTP/2 as on HTTP/1.1."""
    env = h2c(Recorder(echo), ws_per_message_deflate=False)
    with env.client() as client:
        sid = client.open(extra=[(b"sec-websocket-extensions", b"permessage-deflate")])
        assert client.opened(sid).header(b"sec-websocket-extensions") is None


def test_websockets_and_requests_share_one_connection(h2c: Callable[..., Env]) -> None:
    """RFC 8441 §1: a WebSocket is one stream; others (WebSockets and requests) run beside it."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        one = client.open()
        two = client.open()
        get = client.request("/", scheme=b"http")
        client.send(one, frame(TEXT, b"one"))
        client.send(two, frame(TEXT, b"two"))
        assert client.frames(one, 1) == [(TEXT, b"one")]
        assert client.frames(two, 1) == [(TEXT, b"two")]
        assert client.response(get).body == b"http 2"


# ---------------------------------------------------------------- closing


def test_client_close_is_answered_and_the_server_ends_the_stream(h2c: Callable[..., Env]) -> None:
    """RFC 6455 §7.1.1 with RFC 8441 §5: the server answers the client's Close and ends its side
    first (END_STREAM, the TCP FIN of HTTP/2); the client's END_STREAM then closes the stream
    without a reset; the app sees the client's code and reason; the connection goes on."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        client.send(sid, close_frame(4001, b"bye"))
        response = client.ended(sid)
        assert (response.ended, response.reset) == (True, None)
        assert [(op, code_of(p)) for op, p in parse_frames(response.body)] == [(CLOSE, 4001)]
        client.send(sid, b"", end=True)
        assert client.response(client.request("/", scheme=b"http")).status == 200
        assert response.reset is None
    app.wait()
    assert app.records == [{"type": "websocket.disconnect", "code": 4001, "reason": "bye"}]


def test_server_close_waits_for_the_clients_close_then_ends_the_stream(h2c: Callable[..., Env]) -> None:
    """RFC 6455 §7.1.2: the app's close sends a Close frame; the stream ends only once the client
    answers it; the app then sees its own code."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
        record(await receive())

    app = Recorder(script)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        frames = client.frames(sid, 1)
        assert [(op, code_of(p)) for op, p in frames] == [(CLOSE, 4000)]
        assert not client.responses[sid].ended
        client.send(sid, close_frame(4000))
        assert client.ended(sid).ended
    app.wait()
    assert app.records == [{"type": "websocket.disconnect", "code": 4000, "reason": ""}]


def until_disconnect(receive: Any, send: Any, record: Any, app: Recorder) -> Any:
    """Accept, record the disconnect, then try to send (which must raise OSError)."""

    async def run() -> None:
        await receive()
        await send({"type": "websocket.accept"})
        record(await receive())
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:
            record(type(exc).__name__)

    return run()


def test_rst_stream_is_1006_and_send_raises_oserror(h2c: Callable[..., Env]) -> None:
    """RFC 8441 §5: RST_STREAM is the TCP reset of HTTP/2: the app sees websocket.disconnect 1006
    and a later send() raises an OSError (www spec 2.4); other streams are untouched."""
    app = Recorder(until_disconnect)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        app.wait()
        assert client.response(client.request("/", scheme=b"http")).status == 200
    assert app.records == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}, "ClientDisconnected"]


def test_connection_loss_is_1006(h2c: Callable[..., Env]) -> None:
    """The connection under the stream drops: websocket.disconnect 1006 (www spec 2.5)."""
    app = Recorder(until_disconnect)
    env = h2c(app)
    client = env.client()
    sid = client.open()
    client.opened(sid)
    client.close()
    app.wait()
    assert app.records == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}, "ClientDisconnected"]


def test_data_after_the_close_is_dropped_and_the_streams_window_closes(h2c: Callable[..., Env]) -> None:
    """After the closing handshake nothing more reaches the app; what the client still sends on
    the stream is credited to the connection only, so the stream's window closes while other
    streams keep working."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        client.send(sid, close_frame(1000))
        assert client.ended(sid).ended
        app.wait()
        window = client.conn.local_flow_control_window(sid)
        late = frame(TEXT, b"late" * 5000)  # past the quarter-window step at which credit is sent
        client.send(sid, late)
        # The GET is read after the late DATA: a credit for the stream would have come before it.
        assert client.response(client.request("/", scheme=b"http")).status == 200
        assert client.conn.local_flow_control_window(sid) == window - len(late)
    assert app.records == [{"type": "websocket.disconnect", "code": 1000, "reason": ""}]


def test_graceful_shutdown_closes_http2_websockets_with_1001(h2c: Callable[..., Env]) -> None:
    """RFC 6455 §7.4.1, RFC 9113 §6.8: on shutdown the connection gets GOAWAY and each WebSocket a
    Close 1001; once the client answers, its stream ends and the server finishes."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        stopper = threading.Thread(target=env.server.stop)
        stopper.start()
        frames = client.frames(sid, 1)
        assert [(op, code_of(p)) for op, p in frames] == [(CLOSE, 1001)]
        assert client.goaway is not None
        client.send(sid, close_frame(1001), end=True)
        assert client.ended(sid).ended
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert app.records == [{"type": "websocket.disconnect", "code": 1001, "reason": ""}]


# ---------------------------------------------------------------- answers before the session


def test_close_before_accept_is_403_on_the_stream(h2c: Callable[..., Env]) -> None:
    """ASGI www spec (websocket.close before accept): the handshake is answered 403, as the
    stream's whole response; the connection goes on."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.close"})
        record(await receive())

    app = Recorder(script)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        response = client.ended(sid)
        assert (response.status, response.body, response.ended) == (403, b"", True)
        assert client.response(client.request("/", scheme=b"http")).status == 200
    app.wait()
    assert app.records[0]["code"] == 1006


def test_denial_response_is_the_streams_response(h2c: Callable[..., Env]) -> None:
    """ASGI websocket denial response extension: websocket.http.response.start/body become the
    stream's HTTP/2 response, in pieces, ended by the last one."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send(
            {"type": "websocket.http.response.start", "status": 401, "headers": [(b"x-reason", b"token")]}
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})

    env = h2c(Recorder(script))
    with env.client() as client:
        response = client.ended(client.open())
    assert (response.status, response.header(b"x-reason"), response.body) == (401, b"token", b"no entry")


def test_app_returning_without_answering_is_500(h2c: Callable[..., Env]) -> None:
    """ASGI www spec: an app that returns before answering the handshake is a server error."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()

    env = h2c(Recorder(script))
    with env.client() as client:
        assert client.ended(client.open()).status == 500


def test_an_app_that_ends_at_once_frees_its_stream(h2c: Callable[..., Env]) -> None:
    """An app that returns without ever awaiting (so it ends inside the call that starts it) is
    answered 500, and its stream leaves the connection once the client ends its side: with
    --h2-max-concurrent-streams 1 the next request is served, not refused."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    env = h2c(app, h2_max_concurrent_streams=1)
    with env.client() as client:
        sid = client.open()
        assert client.ended(sid).status == 500
        client.send(sid, b"", end=True)
        assert client.response(client.request("/", scheme=b"http")).status == 204


def test_limit_concurrency_refuses_an_http2_websocket_with_503(h2c: Callable[..., Env]) -> None:
    """--limit-concurrency: past the limit the extended CONNECT is answered 503 on its stream."""
    app = Recorder(echo)
    env = h2c(app, limit_concurrency=1)
    with env.client() as client:
        first = client.open()
        assert client.opened(first).status == 200
        assert client.ended(client.open()).status == 503


# ---------------------------------------------------------------- bad input


def never_called(receive: Any, send: Any, record: Any, app: Recorder) -> Any:
    raise AssertionError("the app was called")


@pytest.mark.parametrize(
    ("extra", "version", "status"),
    [
        ([(b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")], b"13", 400),
        ([], b"8", 426),
        ([], None, 426),
        ([(b"sec-websocket-protocol", b"a b")], b"13", 400),
        ([(b"x-forwarded-for", b"10.0.0.1\x85")], b"13", 400),
    ],
    ids=["http11-key", "version-8", "no-version", "malformed-subprotocols", "line-breaker-nel"],
)
def test_a_broken_handshake_is_refused_before_the_app(
    h2c: Callable[..., Env], extra: list[tuple[bytes, bytes]], version: bytes | None, status: int
) -> None:
    """RFC 8441 §5, RFC 6455 §4.2.1 (and CVE-2026-44546): a handshake that breaks a rule is
    answered on its stream (426 names version 13) and never reaches the app."""
    app = Recorder(never_called)
    env = h2c(app)
    with env.client() as client:
        response = client.ended(client.open(extra=extra, version=version))
        assert response.status == status
        assert (response.header(b"sec-websocket-version") == b"13") == (status == 426)
        assert client.response(client.request("/", scheme=b"http")).status == 200
    assert not app.done.is_set()


def test_a_protocol_other_than_websocket_is_501(h2c: Callable[..., Env]) -> None:
    """RFC 8441 §4: :protocol names the protocol to tunnel; this server speaks only websocket."""
    env = h2c(Recorder(never_called))
    with env.client() as client:
        assert client.ended(client.open(protocol=b"connect-udp")).status == 501


def raw_connect(block: list[tuple[bytes, bytes]]) -> bytes:
    headers = HeadersFrame(1, flags=["END_HEADERS"])
    headers.data = hpack.Encoder().encode(block)
    return headers.serialize()


@pytest.mark.parametrize("missing", [b":authority", b":path", b":scheme"])
def test_extended_connect_missing_a_pseudo_header_ends_the_connection(
    h2c: Callable[..., Env], missing: bytes
) -> None:
    """RFC 8441 §4: :protocol needs :scheme, :path and :authority; without one the request is
    malformed: GOAWAY PROTOCOL_ERROR, and the app is not called."""
    app = Recorder(never_called)
    env = h2c(app)
    block = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/"),
        (b":authority", b"localhost"),
        (b"sec-websocket-version", b"13"),
    ]
    with env.client() as client:
        client.send_raw(raw_connect([f for f in block if f[0] != missing]))
        goaway = client.wait_goaway()
        assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert not app.done.is_set()


def test_protocol_with_ws_none_is_not_offered_and_is_refused(h2c: Callable[..., Env]) -> None:
    """RFC 8441 §3-4: with --ws none the server does not send SETTINGS_ENABLE_CONNECT_PROTOCOL,
    and a :protocol it never enabled is malformed: RST_STREAM PROTOCOL_ERROR on that stream; the
    connection serves the next request."""
    app = Recorder(never_called)
    env = h2c(app, ws="none")
    with env.client() as client:
        assert client.wait(
            lambda: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in client.all_events)
        )
        assert client.conn.remote_settings.enable_connect_protocol == 0
        assert client.ended(client.open()).reset == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert client.response(client.request("/", scheme=b"http")).body == b"http 2"
    assert not app.done.is_set()


def test_an_unmasked_frame_is_closed_with_1002(h2c: Callable[..., Env]) -> None:
    """RFC 6455 §5.1 over HTTP/2: the session's framing rules are the same; a client frame without
    a mask fails the WebSocket with 1002 and the stream ends."""
    app = Recorder(echo)
    env = h2c(app)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        client.send(sid, frame(TEXT, b"bare", mask=False))
        response = client.ended(sid)
        assert [(op, code_of(p)) for op, p in parse_frames(response.body)] == [(CLOSE, 1002)]
    app.wait()
    assert app.records[0]["code"] == 1002


# ---------------------------------------------------------------- limits and flow control


def test_message_over_ws_max_size_is_1009(h2c: Callable[..., Env]) -> None:
    """--ws-max-size holds on HTTP/2: a message over it is closed with 1009."""
    app = Recorder(echo)
    env = h2c(app, ws_max_size=1000)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        client.send(sid, frame(TEXT, b"x" * 2000))
        assert [(op, code_of(p)) for op, p in client.frames(sid, 1)] == [(CLOSE, 1009)]
    app.wait()
    assert app.records[0]["code"] == 1009


def test_ws_max_queue_holds_the_client_by_its_window(h2c: Callable[..., Env]) -> None:
    """--ws-max-queue on HTTP/2: while the app does not receive, the server stops crediting the
    stream once the queue is full, so the client's window closes and stays shut (no unbounded
    buffer); when the app reads, every message arrives, in order."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await anyio.to_thread.run_sync(app.release.wait, WAIT, abandon_on_cancel=True)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            record(message["text"])

    app = Recorder(script)
    env = h2c(app, ws_max_queue=2)
    piece = "m" * 4000
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        sent = 0
        for _ in range(200):  # far more than the 65,535-byte stream window
            data = frame(TEXT, f"{sent:04d}{piece}".encode())
            while client.conn.local_flow_control_window(sid) < len(data):
                before = client.conn.local_flow_control_window(sid)
                client.events(0.5)
                if client.conn.local_flow_control_window(sid) == before:
                    break
            if client.conn.local_flow_control_window(sid) < len(data):
                break
            client.send(sid, data)
            sent += 1
        assert sent < 40  # held by the window: 2 queued, some in flight, no more
        app.release.set()
        size = len(frame(TEXT, f"0000{piece}".encode()))
        for _ in range(sent, 60):
            assert client.wait(lambda: client.conn.local_flow_control_window(sid) >= size)
            client.send(sid, frame(TEXT, f"{sent:04d}{piece}".encode()))
            sent += 1
        client.send(sid, close_frame(1000))
        assert client.ended(sid).ended
    app.wait()
    assert [text[:4] for text in app.records] == [f"{n:04d}" for n in range(60)]


def test_send_waits_for_the_clients_window(h2c: Callable[..., Env]) -> None:
    """RFC 9113 §5.2 both ways: a client that does not credit what it received holds the app's
    send() (nothing beyond its window is sent or queued); crediting it lets everything through."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(8):
            await send({"type": "websocket.send", "bytes": b"z" * 65536})
        app.release.set()
        record(await receive())

    app = Recorder(script)
    env = h2c(app)
    with env.client(auto_ack=False) as client:
        sid = client.open()
        response = client.opened(sid)
        client.wait(lambda: len(response.body) >= 65535, 2)
        assert len(response.body) <= 65535
        assert not app.release.is_set()
        client.conn.acknowledge_received_data(len(response.body), sid)
        client.auto_ack = True
        client.flush()
        assert client.wait(lambda: len(parse_frames(response.body)) == 8)
        assert app.release.wait(WAIT)
        client.send(sid, close_frame(1000))
        client.ended(sid)
    app.wait()


def test_a_send_the_server_took_is_not_failed_by_an_orderly_close(h2c: Callable[..., Env]) -> None:
    """www spec 2.4: send() raises when the connection is gone, not when the peer closes in order
    while the message waits for its window: the message is still delivered (before the Close),
    so the app's send() returns and the app then sees the peer's code."""

    async def script(receive: Any, send: Any, record: Any, app: Recorder) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        app.release.set()
        try:
            await send({"type": "websocket.send", "bytes": b"q" * 100_000})
            record("sent")
        except OSError as exc:
            record(type(exc).__name__)
        record(await receive())

    app = Recorder(script)
    env = h2c(app)
    with env.client(auto_ack=False) as client:
        sid = client.open()
        response = client.opened(sid)
        assert app.release.wait(WAIT)
        assert client.wait(lambda: len(response.body) >= 65535)  # the window is full
        client.send(sid, close_frame(1000))  # the peer closes while the rest waits
        client.send(sid, b"", end=True)
        app.wait()
        client.conn.acknowledge_received_data(len(response.body), sid)
        client.auto_ack = True
        client.flush()
        ended = client.ended(sid)
    assert parse_frames(ended.body) == [(BINARY, b"q" * 100_000), (CLOSE, b"\x03\xe8")]
    assert app.records == ["sent", {"type": "websocket.disconnect", "code": 1000, "reason": ""}]


def test_pings_from_a_client_that_does_not_read_are_not_answered_without_bound(
    h2c: Callable[..., Env],
) -> None:
    """A client that sends Pings but does not open its window for the Pongs: once a Pong cannot be
    sent, the server reads no more of that WebSocket (it stops crediting the stream), so the
    Pongs it owes stay bounded; once the client reads, the Pongs go and reading resumes."""
    env = h2c(Recorder(echo))
    with env.client(auto_ack=False, settings=settings(initial_window_size=200)) as client:
        sid = client.open()
        client.opened(sid)
        ping = frame(PING, b"p" * 125)
        sent = 0
        while sent < 2000:
            if client.conn.local_flow_control_window(sid) < len(ping):
                before = client.conn.local_flow_control_window(sid)
                client.events(0.5)
                if client.conn.local_flow_control_window(sid) == before:
                    break
                continue
            client.send(sid, ping)
            sent += 1
        assert sent < 1000  # 2,000 Pings would be 262 KB: the stream window (64 KB) held them
        response = client.responses[sid]
        client.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24})
        if response.body:
            client.conn.acknowledge_received_data(len(response.body), sid)
        client.auto_ack = True
        client.flush()
        assert client.wait(lambda: len(parse_frames(response.body)) >= sent, 10)
        assert {op for op, _ in parse_frames(response.body)} == {PONG}


def test_unanswered_keepalive_ping_closes_with_1011(h2c: Callable[..., Env]) -> None:
    """--ws-ping-interval / --ws-ping-timeout on HTTP/2: a Ping as DATA, then Close 1011 and the
    end of the stream when nothing comes back."""
    app = Recorder(echo)
    env = h2c(app, ws_ping_interval=0.1, ws_ping_timeout=0.2)
    with env.client() as client:
        sid = client.open()
        client.opened(sid)
        frames = client.frames(sid, 2)
        assert [op for op, _ in frames] == [PING, CLOSE]
        assert code_of(frames[1][1]) == 1011
        assert client.ended(sid).ended
    app.wait()
    assert app.records[0]["code"] == 1011


def test_access_log_line_for_a_websocket_over_http2(
    h2c: Callable[..., Env], caplog: pytest.LogCaptureFixture
) -> None:
    """The access log has one line per WebSocket, written when it ends: CONNECT, HTTP/2, 200."""
    caplog.set_level("INFO", logger="wherry.access")
    app = Recorder(echo)
    env = h2c(app, access_log=True)
    with env.client() as client:
        sid = client.open(b"/logged")
        client.opened(sid)
        client.send(sid, close_frame(1000))
        client.ended(sid)
        app.wait()
        assert client.wait(lambda: any("/logged" in r.getMessage() for r in caplog.records), WAIT)
    line = next(r.getMessage() for r in caplog.records if "/logged" in r.getMessage())
    assert '"CONNECT /logged HTTP/2" 200' in line
