"""The HTTP/2 core (wherry/proto/http2.py) against h2's client state machine, with no loop and no
socket: RFC 9113 sections (preface, frame sizes, stream states, flow control, SETTINGS, GOAWAY,
HPACK) and every denial-of-service defence, each fed the bytes of the attack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from wherry.proto.events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    LocalProtocolError,
    Rejected,
    Request,
    StreamReset,
    WindowOpened,
)
from wherry.proto.http2 import H2Connection, H2Limits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BASE = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"example.org"), (b":path", b"/p?q=1")]


class Pair:
    """The server core and a real h2 client, bytes passed between them by hand."""

    def __init__(self, limits: H2Limits | None = None, client_settings: dict[Any, int] | None = None) -> None:
        self.now = 0.0
        self.server = H2Connection(limits or H2Limits(), self.now)
        self.server.initiate()
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.client_events: list[Any] = []

    def to_server(self, data: bytes | None = None) -> list[Event]:
        if data is None:
            data = self.client.data_to_send()
        events = self.server.receive_data(data, self.now)
        self.to_client()
        return events

    def to_client(self) -> list[Any]:
        data = self.server.data_to_send()
        if not data:
            return []
        try:
            events = self.client.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        self.client_events.extend(events)
        return events

    def request(
        self, headers: list[tuple[bytes, bytes]] | None = None, body: bytes = b"", end: bool = True
    ) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers or BASE, end_stream=end and not body)
        if body:
            self.client.send_data(sid, body, end_stream=end)
        return sid

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        for event in self.client_events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def raw_headers_frame(
    sid: int, block: list[tuple[bytes, bytes]], flags: tuple[str, ...] = ("END_HEADERS", "END_STREAM")
) -> bytes:
    frame = HeadersFrame(sid, flags=flags)
    frame.data = hpack.Encoder().encode(block)
    return frame.serialize()


def raw_client_start() -> bytes:
    return PREFACE + SettingsFrame(0).serialize()


FEEDS: list[tuple[str, Callable[[bytes], list[bytes]]]] = [
    ("whole", lambda data: [data]),
    ("byte_by_byte", lambda data: [data[i : i + 1] for i in range(len(data))]),
]


# ---------------------------------------------------------------- preface, requests, feeding


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_request_parsed_whole_and_byte_by_byte(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """RFC 9113 §3.4, §8.3.1: the preface then a HEADERS+DATA request give one Request, its Data
    and EndOfMessage, with the stream id, however the bytes are split."""
    pair = Pair()
    sid = pair.request(body=b"hello")
    events: list[Event] = []
    for piece in split(pair.client.data_to_send()):
        events += pair.to_server(piece)
    assert kinds(events) == ["Request", "Data", "EndOfMessage"]
    request = events[0]
    assert isinstance(request, Request)
    assert request.stream_id == sid == 1
    assert (request.method, request.raw_path, request.query_string) == (b"GET", b"/p", b"q=1")
    assert request.http_version == "2"
    assert request.headers[0] == (b"host", b"example.org")  # from :authority, no pseudo-headers
    assert all(not name.startswith(b":") for name, _ in request.headers)
    data = events[1]
    assert isinstance(data, Data) and data.data == b"hello" and data.stream_id == sid
    assert isinstance(events[2], EndOfMessage) and events[2].stream_id == sid


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_trailing_garbage_after_a_request_is_a_connection_error(
    name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 9113 §4.1, §4.2, §5.4.1: bytes that are no frame (an HTTP/1.1 request line read as a
    frame header announces a 4 MB frame) after a valid request end the connection with GOAWAY
    FRAME_SIZE_ERROR; nothing is parsed after it."""
    pair = Pair()
    pair.to_server()
    pair.request()
    wire = pair.client.data_to_send() + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    events: list[Event] = []
    for piece in split(wire):
        events += pair.to_server(piece)
    assert kinds(events)[-1] == "Rejected"
    assert kinds(events).count("Rejected") == 1
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.FRAME_SIZE_ERROR
    assert pair.server.receive_data(b"more", 0.0) == []


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_bad_preface_is_rejected(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """RFC 9113 §3.4: a connection that does not start with the client preface is a
    PROTOCOL_ERROR."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    events: list[Event] = []
    for piece in split(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + SettingsFrame(0).serialize()):
        events += server.receive_data(piece, 0.0)
    assert kinds(events) == ["Rejected"]
    assert server.closed


def test_server_settings_come_from_the_limits() -> None:
    """RFC 9113 §6.5.2: the server preface advertises the configured stream, window, frame and
    header-list limits, and no push from the server's side."""
    limits = H2Limits(
        max_concurrent_streams=7, initial_window_size=1000, max_frame_size=20000, max_header_list_size=5000
    )
    pair = Pair(limits)
    pair.to_server()
    remote = pair.client.remote_settings
    assert remote.max_concurrent_streams == 7
    assert remote.initial_window_size == 1000
    assert remote.max_frame_size == 20000
    assert remote.max_header_list_size == 5000
    assert remote.enable_push == 0


def test_end_of_input_is_connection_closed() -> None:
    """The core contract: receive_data(b"") means the peer closed its side."""
    pair = Pair()
    pair.to_server()
    assert kinds(pair.server.receive_data(b"", 0.0)) == ["ConnectionClosed"]
    assert isinstance(ConnectionClosed(), Event)


# ---------------------------------------------------------------- frame sizes and stream states


def test_frame_larger_than_max_frame_size_is_frame_size_error() -> None:
    """RFC 9113 §4.2: a frame above SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR."""
    pair = Pair()
    pair.to_server()
    sid = pair.request(end=False)
    pair.to_server()
    frame = DataFrame(sid)
    frame.data = b"x" * 16385
    events = pair.to_server(frame.serialize())
    assert kinds(events) == ["Rejected"]
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.FRAME_SIZE_ERROR


def test_data_on_an_idle_stream_is_a_protocol_error() -> None:
    """RFC 9113 §5.1: DATA on a stream in the idle state is a connection error PROTOCOL_ERROR."""
    pair = Pair()
    pair.to_server()
    frame = DataFrame(5)
    frame.data = b"x"
    assert kinds(pair.to_server(frame.serialize())) == ["Rejected"]
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


def test_peer_reset_reaches_the_driver() -> None:
    """RFC 9113 §6.4: RST_STREAM from the client ends the stream; the driver is told."""
    pair = Pair()
    sid = pair.request(end=False)
    pair.to_server()
    pair.client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    events = pair.to_server()
    assert len(events) == 1 and isinstance(events[0], StreamReset)
    assert (events[0].stream_id, events[0].error_code) == (sid, 8)


# ---------------------------------------------------------------- responses


def test_response_with_body_and_trailers() -> None:
    """RFC 9113 §8.1: HEADERS, DATA, then a trailing HEADERS with END_STREAM."""
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    server = pair.server
    assert not server.send_response(
        sid, 200, [(b"content-type", b"text/plain")], [(b"server", b"wherry")], False
    )
    assert server.send_data(sid, b"body", False, 0.0) == b""
    server.send_trailers(sid, [(b"x-checksum", b"abc")])
    events = pair.to_client()
    names = [type(e).__name__ for e in events]
    assert names == ["ResponseReceived", "DataReceived", "TrailersReceived", "StreamEnded"]
    assert (b"server", b"wherry") in events[0].headers
    assert events[2].headers == [(b"x-checksum", b"abc")]


@pytest.mark.parametrize(
    ("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)], ids=["HEAD", "204", "304"]
)
def test_bodyless_responses_send_no_data(method: bytes, status: int) -> None:
    """RFC 9110 §9.3.2, §15.3.5, §15.4.5: a response to HEAD, a 204 and a 304 end with their
    HEADERS frame; body the app sends is dropped; 204 loses its content-length."""
    pair = Pair()
    sid = pair.request([(b":method", method), *BASE[1:]])
    pair.to_server()
    ended = pair.server.send_response(sid, status, [(b"content-length", b"4")], [], False)
    assert ended
    assert pair.server.send_data(sid, b"body", True, 0.0) == b""
    events = pair.to_client()
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "StreamEnded"]
    has_length = any(n == b"content-length" for n, _ in events[0].headers)
    assert has_length == (status != 204)


def test_connection_specific_response_fields_are_removed() -> None:
    """RFC 9113 §8.2.2: connection, keep-alive, proxy-connection, transfer-encoding and upgrade
    never appear in an HTTP/2 response, whatever the app sent."""
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    headers = [
        (b"Connection", b"keep-alive"),
        (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"proxy-connection", b"x"),
        (b"X-Kept", b"1"),
    ]
    pair.server.send_response(sid, 200, headers, [], True)
    response = pair.to_client()[0]
    names = [n for n, _ in response.headers]
    assert names == [b":status", b"x-kept"]


@pytest.mark.parametrize("value", [b"a\r\nb", b"a\nb", b"a\x00b"], ids=["crlf", "lf", "nul"])
def test_app_header_with_control_characters_is_refused(value: bytes) -> None:
    """CVE-2025-57804 class, outbound: a CR, LF or NUL in a response field value is the app's error
    (LocalProtocolError), never sent."""
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    with pytest.raises(LocalProtocolError):
        pair.server.send_response(sid, 200, [(b"x-a", value)], [], True)
    assert pair.to_client() == []


def test_response_body_longer_than_content_length_is_refused() -> None:
    """RFC 9113 §8.1.1: DATA must add up to content-length; the app's excess is an error."""
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    pair.server.send_response(sid, 200, [(b"content-length", b"2")], [], False)
    with pytest.raises(LocalProtocolError):
        pair.server.send_data(sid, b"toolong", True, 0.0)


# ---------------------------------------------------------------- flow control


def test_send_data_stops_at_the_peer_window_and_resumes_on_window_update() -> None:
    """RFC 9113 §5.2, §6.9: no DATA beyond the window; the rest waits for WINDOW_UPDATE."""
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    pair.to_server()
    sid = pair.request()
    pair.to_server()
    pair.server.send_response(sid, 200, [], [], False)
    rest = pair.server.send_data(sid, b"x" * 3000, True, 0.0)
    assert len(rest) == 2000
    received = sum(len(e.data) for e in pair.to_client() if isinstance(e, h2.events.DataReceived))
    assert received == 1000
    pair.client.increment_flow_control_window(5000, stream_id=sid)
    events = pair.to_server()
    assert any(isinstance(e, WindowOpened) and e.stream_id == sid for e in events)
    assert pair.server.send_data(sid, rest, True, 0.0) == b""
    assert any(isinstance(e, h2.events.StreamEnded) for e in pair.to_client())


def test_request_body_is_credited_only_when_the_app_reads_it() -> None:
    """RFC 9113 §6.9: the server sends WINDOW_UPDATE for body bytes once the app consumed them, so
    a client that sends faster than the app reads is held by its window."""
    pair = Pair()
    sid = pair.request(end=False)
    for _ in range(6):
        pair.client.send_data(sid, b"x" * 10000)
    pair.to_server()
    assert pair.client.local_flow_control_window(sid) == 65535 - 60000
    assert not any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid for e in pair.client_events)
    pair.server.acknowledge(sid, 60000, 0.0)
    pair.to_client()
    assert pair.client.local_flow_control_window(sid) == 65535


# ---------------------------------------------------------------- SETTINGS, GOAWAY, HPACK


def test_settings_are_acknowledged() -> None:
    """RFC 9113 §6.5.3: every SETTINGS frame from the client gets a SETTINGS ACK."""
    pair = Pair()
    pair.to_server()
    pair.client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 32768})
    pair.to_server()
    assert any(isinstance(e, h2.events.SettingsAcknowledged) for e in pair.client_events)


def test_graceful_shutdown_names_the_last_stream_and_refuses_later_ones() -> None:
    """RFC 9113 §6.8: GOAWAY NO_ERROR carries the last stream served; streams opened after it are
    refused (REFUSED_STREAM, safe to retry) while the open one can still be answered."""
    pair = Pair()
    first = pair.request()
    pair.to_server()
    pair.server.graceful_shutdown()
    pair.to_client()
    goaway = pair.goaway()
    assert goaway is not None and goaway.last_stream_id == first and goaway.error_code == 0
    late = pair.client.get_next_available_stream_id()
    frame = raw_headers_frame(late, BASE)
    events = pair.server.receive_data(frame, 0.0)
    assert events == []
    wire = pair.server.data_to_send()
    assert RstStreamFrame(late).serialize()[:9] == wire[:9]  # RST_STREAM on the late stream
    assert int.from_bytes(wire[9:13], "big") == 7  # REFUSED_STREAM
    pair.server.send_response(first, 200, [], [], True)
    assert pair.server.data_to_send()  # the open stream is still served


def test_hpack_dynamic_table_carries_across_requests() -> None:
    """RFC 7541 §2.3.2: fields indexed by one request decode in the next from the dynamic table."""
    pair = Pair()
    custom = [*BASE, (b"x-long-custom-field", b"v" * 50)]
    pair.request(custom)
    first = pair.to_server()
    pair.request(custom)
    second = pair.to_server()
    assert first[0].headers == second[0].headers  # type: ignore[attr-defined]


# ---------------------------------------------------------------- denial of service


def test_rapid_reset_ends_the_connection_with_enhance_your_calm() -> None:
    """CVE-2023-44487: streams opened and reset at once spend a per-connection budget; beyond it
    the connection ends with GOAWAY ENHANCE_YOUR_CALM."""
    pair = Pair(H2Limits(reset_budget=(50, 1.0)))
    pair.to_server()
    rejected = False
    for _ in range(60):
        sid = pair.request(end=False)
        pair.client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        events = pair.to_server()
        if any(isinstance(e, Rejected) for e in events):
            rejected = True
            break
    assert rejected
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_within_the_budget_refill_over_time() -> None:
    """CVE-2023-44487: a client that resets now and then (a browser cancelling images) keeps its
    connection: the budget refills with time."""
    pair = Pair(H2Limits(reset_budget=(5, 10.0)))
    for _ in range(30):
        sid = pair.request(end=False)
        pair.client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        assert not any(isinstance(e, Rejected) for e in pair.to_server())
        pair.now += 0.2
    assert pair.goaway() is None


@pytest.mark.parametrize("kind", ["settings", "ping"])
def test_settings_and_ping_floods_end_the_connection(kind: str) -> None:
    """SETTINGS and PING floods (CVE-2019-9512/9515 class): each frame makes the server write an
    ACK; beyond the budget the connection ends with ENHANCE_YOUR_CALM."""
    pair = Pair(H2Limits(settings_budget=(20, 1.0), ping_budget=(20, 1.0)))
    pair.to_server()
    if kind == "settings":
        frame = SettingsFrame(0, settings={h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384}).serialize()
    else:
        frame = PingFrame(0, opaque_data=b"12345678").serialize()
    events = pair.server.receive_data(frame * 100, 0.0)
    assert kinds(events)[-1] == "Rejected"
    pair.to_client()
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def _no_progress_frames(kind: str) -> bytes:
    """One frame of a flood that costs the server work and gives the client nothing."""
    if kind == "empty DATA":
        return DataFrame(1).serialize()  # no payload, no END_STREAM (CVE-2019-9518)
    if kind == "connection WINDOW_UPDATE":
        return WindowUpdateFrame(0, window_increment=1).serialize()
    if kind == "stream WINDOW_UPDATE":
        return WindowUpdateFrame(1, window_increment=1).serialize()
    if kind == "PRIORITY":
        return PriorityFrame(3, depends_on=0, stream_weight=15).serialize()
    if kind == "SETTINGS ACK":
        return SettingsFrame(0, flags=["ACK"]).serialize()
    if kind == "PING ACK":
        return PingFrame(0, flags=["ACK"], opaque_data=b"12345678").serialize()
    if kind == "GOAWAY NO_ERROR":
        return GoAwayFrame(0, last_stream_id=0, error_code=0).serialize()
    assert kind == "unknown type"
    return b"\x00\x00\x00\xfa\x00\x00\x00\x00\x00"  # type 0xfa, ignored (RFC 9113 §5.5)


NO_PROGRESS = [
    "empty DATA",
    "connection WINDOW_UPDATE",
    "stream WINDOW_UPDATE",
    "PRIORITY",
    "SETTINGS ACK",
    "PING ACK",
    "GOAWAY NO_ERROR",
    "unknown type",
]


@pytest.mark.parametrize("kind", NO_PROGRESS)
def test_floods_of_frames_that_make_no_progress_end_the_connection(kind: str) -> None:
    """CVE-2019-9518 class: empty DATA frames, WINDOW_UPDATEs that answer no DATA, PRIORITY, ACKs
    of nothing, repeated GOAWAYs and unknown frame types each cost the server a parse and give
    the client nothing; beyond a per-connection budget (the defaults) the connection ends with
    GOAWAY ENHANCE_YOUR_CALM, and nothing after it is read."""
    pair = Pair()
    sid = pair.request(end=False)  # stream 1 open, its body not ended
    events = pair.to_server()
    assert kinds(events) == ["Request"]
    events = pair.server.receive_data(_no_progress_frames(kind) * 5000, 0.0)
    assert kinds(events)[-1] == "Rejected"
    assert "no progress" in events[-1].detail  # type: ignore[attr-defined]
    assert pair.server.closed
    pair.to_client()
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.server.receive_data(DataFrame(sid).serialize(), 0.0) == []


@pytest.mark.parametrize("kind", NO_PROGRESS)
def test_frames_that_make_no_progress_within_the_budget_refill_over_time(kind: str) -> None:
    """A client that sends such frames now and then keeps its connection: the budget refills
    with time (here 50 a second against a refill of 100)."""
    pair = Pair()
    pair.request(end=False)
    pair.to_server()
    frame = _no_progress_frames(kind)
    for _ in range(3000):
        assert "Rejected" not in kinds(pair.server.receive_data(frame, pair.now))
        pair.now += 0.02
    assert not pair.server.closed


def test_a_browser_never_spends_the_budget_for_frames_that_make_no_progress() -> None:
    """What browsers send is earned by the work it asks for: PRIORITY frames for placeholder
    streams at the start and one PRIORITY per request, a large connection WINDOW_UPDATE at the
    start, and (the most a reader can send) a stream and a connection WINDOW_UPDATE for every
    DATA frame received. Thousands of requests on one connection at one instant never end it."""
    pair = Pair()
    wire = pair.client.data_to_send()
    wire += WindowUpdateFrame(0, window_increment=15_000_000).serialize()
    for placeholder in (3, 5, 7, 9, 11):  # idle streams as priority groups
        wire += PriorityFrame(placeholder, depends_on=0, stream_weight=100).serialize()
    assert kinds(pair.server.receive_data(wire, 0.0)) == ["WindowOpened"]
    pair.to_client()
    sid = 13
    for _ in range(1500):
        wire = PriorityFrame(sid, depends_on=3, stream_weight=30).serialize()
        wire += raw_headers_frame(sid, BASE)
        events = pair.server.receive_data(wire, 0.0)
        assert kinds(events) == ["Request", "EndOfMessage"]
        pair.server.send_response(sid, 200, [], [], False)
        for piece in range(4):
            assert pair.server.send_data(sid, b"x" * 16000, piece == 3, 0.0) == b""
        pair.server.stream_done(sid, 0.0)
        pair.server.data_to_send()  # the client reads it all and acknowledges every DATA frame:
        acks = (WindowUpdateFrame(sid, window_increment=16000).serialize() for _ in range(4))
        acks2 = (WindowUpdateFrame(0, window_increment=16000).serialize() for _ in range(4))
        assert "Rejected" not in kinds(pair.server.receive_data(b"".join(acks) + b"".join(acks2), 0.0))
        sid += 2
    assert not pair.server.closed


def test_continuation_flood_is_bounded_by_the_header_list_size() -> None:
    """CVE-2023-45288 class: CONTINUATION frames without END_HEADERS are not buffered beyond the
    header list limit; the connection ends with GOAWAY."""
    pair = Pair(H2Limits(max_header_list_size=8192))
    pair.to_server()
    head = HeadersFrame(1)
    head.data = hpack.Encoder().encode(BASE)
    head.flags.clear()
    wire = head.serialize()
    for _ in range(20):
        cont = ContinuationFrame(1)
        cont.data = b"\x00" * 1000
        wire += cont.serialize()
    events = pair.server.receive_data(wire, 0.0)
    assert kinds(events) == ["Rejected"]
    pair.to_client()
    assert pair.goaway() is not None


def test_continuation_that_never_ends_meets_the_head_deadline() -> None:
    """CVE-2023-45288 class, slow variant: a header block left open (no END_HEADERS) is a deadline,
    and the connection ends when it passes."""
    limits = H2Limits(head_timeout=3.0)
    pair = Pair(limits)
    pair.to_server()
    head = HeadersFrame(1)
    head.data = hpack.Encoder().encode(BASE)
    head.flags.clear()
    assert pair.server.receive_data(head.serialize(), 1.0) == []
    assert pair.server.deadline == 4.0
    _expired, reason = pair.server.timed_out(4.0)
    assert reason is not None and pair.server.closed


def test_hpack_bomb_is_refused_by_the_header_list_size() -> None:
    """CVE-2016-6581 class (HPACK bomb): a small block that decodes beyond the header list limit
    (one large entry in the dynamic table, referenced many times) ends the connection with
    ENHANCE_YOUR_CALM; the limit holds before the client acknowledged the server's SETTINGS."""
    pair = Pair(H2Limits(max_header_list_size=16384))
    encoder = hpack.Encoder()
    first = encoder.encode([*BASE, (b"x-bomb", b"b" * 4000)])
    # Index 62 is the newest dynamic-table entry: each byte 0xBE repeats the 4 KB field.
    bomb = first + b"\xbe" * 20
    frame = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    frame.data = bomb
    events = pair.server.receive_data(raw_client_start() + frame.serialize(), 0.0)
    assert kinds(events)[-1] == "Rejected"
    pair.to_client()
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_streams_beyond_the_advertised_limit_get_refused_stream() -> None:
    """RFC 9113 §5.1.2 and §8.7: a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS is refused with
    RST_STREAM(REFUSED_STREAM), which a client may retry; the connection and its other streams go
    on, late frames on the refused stream are ignored, and HPACK stays in step."""
    pair = Pair(H2Limits(max_concurrent_streams=2))
    upload = [(b":method", b"POST"), *BASE[1:], (b"x-token", b"abcdef")]
    sids = [pair.request(upload, end=False) for _ in range(3)]  # before the client saw SETTINGS
    events = pair.to_server()
    assert kinds(events) == ["Request", "Request"]
    assert [e.stream_id for e in events] == sids[:2]  # type: ignore[attr-defined]
    resets = [e for e in pair.client_events if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(sids[2], h2.errors.ErrorCodes.REFUSED_STREAM)]
    assert pair.goaway() is None
    # The client's DATA already on its way for the refused stream is ignored (RFC 9113 §5.1).
    late = DataFrame(sids[2], flags=["END_STREAM"])
    late.data = b"late"
    assert pair.to_server(late.serialize()) == []
    # The first two still complete; a slot freed admits the retry, whose header block refers to
    # the dynamic-table entry the refused block added.
    pair.client.send_data(sids[0], b"body", end_stream=True)
    events = pair.to_server()
    assert kinds(events) == ["Data", "EndOfMessage"]
    pair.server.send_response(sids[0], 200, [], (), True)
    pair.server.stream_done(sids[0], 0.0)
    pair.to_client()
    retry = pair.request(upload)
    events = pair.to_server()
    assert kinds(events) == ["Request", "EndOfMessage"]
    request = events[0]
    assert isinstance(request, Request) and request.stream_id == retry
    assert (b"x-token", b"abcdef") in request.headers
    assert pair.goaway() is None


@pytest.mark.parametrize(
    "block",
    [
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":unknown", b"x")],
        [(b":method", b"GET"), (b":scheme", b"http")],
        [(b":method", b"GET"), (b"x-a", b"1"), (b":scheme", b"http"), (b":path", b"/")],
        [(b":method", b"GET"), (b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":status", b"200")],
    ],
    ids=["unknown-pseudo", "missing-path", "pseudo-after-regular", "duplicate-method", "response-pseudo"],
)
def test_invalid_pseudo_headers_are_protocol_errors(block: list[tuple[bytes, bytes]]) -> None:
    """RFC 9113 §8.3: unknown, missing, duplicated or misplaced pseudo-headers make the request
    malformed; it never reaches the app and the server answers with PROTOCOL_ERROR."""
    pair = Pair()
    events = pair.server.receive_data(raw_client_start() + raw_headers_frame(1, block), 0.0)
    assert "Request" not in kinds(events)
    assert kinds(events)[-1] == "Rejected"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"X-Upper", b"v"),
        (b"x-a", b"a\r\nb"),
        (b"x-a", b"a\nb"),
        (b"x-a", b"a\rb"),
        (b"x-a", b"a\x00b"),
        (b"connection", b"keep-alive"),
        (b"te", b"gzip"),
        (b"bad name", b"v"),
    ],
    ids=["uppercase", "crlf", "lf", "cr", "nul", "connection", "te-not-trailers", "space-in-name"],
)
def test_bad_request_fields_are_protocol_errors(name: bytes, value: bytes) -> None:
    """RFC 9113 §8.2, §8.2.1, §8.2.2 (CVE-2025-57804): uppercase names, CR/LF/NUL in values and
    connection-specific fields make the request malformed; it never reaches the app."""
    pair = Pair()
    block = [*BASE, (name, value)]
    events = pair.server.receive_data(raw_client_start() + raw_headers_frame(1, block), 0.0)
    assert "Request" not in kinds(events)
    assert kinds(events)[-1] == "Rejected"


@pytest.mark.parametrize(
    "extra",
    [
        [(b"content-length", b"1"), (b"content-length", b"2")],
        [(b"content-length", b"+5")],
        [(b"content-length", b" 5")],
        [(b"host", b"a.example"), (b"host", b"b.example")],
    ],
    ids=["duplicate-content-length", "signed-content-length", "space-content-length", "duplicate-host"],
)
def test_ambiguous_length_and_host_fields_are_protocol_errors(extra: list[tuple[bytes, bytes]]) -> None:
    """RFC 9110 §8.6, RFC 9113 §8.1.1, §8.3.1 (h2 4.4.0/4.4.1 fixes): duplicate or malformed
    content-length and duplicate host are refused, so nothing ambiguous is passed on (a proxy
    downgrading to HTTP/1.1 could be smuggled through them)."""
    pair = Pair()
    block = [(b":method", b"POST"), *BASE[1:], *extra]
    events = pair.server.receive_data(raw_client_start() + raw_headers_frame(1, block, ("END_HEADERS",)), 0.0)
    assert "Request" not in kinds(events)
    assert kinds(events)[-1] == "Rejected"


def test_body_longer_than_its_content_length_is_a_protocol_error() -> None:
    """RFC 9113 §8.1.1: DATA that exceeds the request's content-length makes it malformed."""
    pair = Pair()
    wire = raw_client_start() + raw_headers_frame(
        1, [(b":method", b"POST"), *BASE[1:], (b"content-length", b"2")], ("END_HEADERS",)
    )
    events = pair.server.receive_data(wire, 0.0)
    assert kinds(events) == ["Request"]
    frame = DataFrame(1, flags=["END_STREAM"])
    frame.data = b"too long"
    events = pair.server.receive_data(frame.serialize(), 0.0)
    assert kinds(events) == ["Rejected"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (WindowUpdateFrame(0, window_increment=0).serialize(), h2.errors.ErrorCodes.PROTOCOL_ERROR),
        (
            WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
            h2.errors.ErrorCodes.FLOW_CONTROL_ERROR,
        ),
        (
            SettingsFrame(0, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31}).serialize(),
            h2.errors.ErrorCodes.FLOW_CONTROL_ERROR,
        ),
        (
            SettingsFrame(0, settings={h2.settings.SettingCodes.MAX_FRAME_SIZE: 100}).serialize(),
            h2.errors.ErrorCodes.PROTOCOL_ERROR,
        ),
        (
            SettingsFrame(0, settings={h2.settings.SettingCodes.ENABLE_PUSH: 2}).serialize(),
            h2.errors.ErrorCodes.PROTOCOL_ERROR,
        ),
    ],
    ids=[
        "zero-window-increment",
        "window-overflow",
        "initial-window-too-large",
        "frame-size-too-small",
        "enable-push-2",
    ],
)
def test_invalid_flow_control_and_settings_values_are_connection_errors(frame: bytes, code: int) -> None:
    """RFC 9113 §6.9 (zero increment: PROTOCOL_ERROR; a window above 2^31-1: FLOW_CONTROL_ERROR)
    and §6.5.2 (SETTINGS values out of range)."""
    pair = Pair()
    pair.to_server()
    events = pair.to_server(frame)
    assert kinds(events)[-1] == "Rejected"
    goaway = pair.goaway()
    assert goaway is not None and goaway.error_code == code


def test_ping_is_answered_with_the_same_payload() -> None:
    """RFC 9113 §6.7: a PING gets a PING with ACK and the same 8 bytes."""
    pair = Pair()
    pair.to_server()
    pair.client.ping(b"abcdefgh")
    pair.to_server()
    acks = [e for e in pair.client_events if isinstance(e, h2.events.PingAckReceived)]
    assert [a.ping_data for a in acks] == [b"abcdefgh"]


def test_headers_on_a_stream_closed_by_end_stream_is_a_stream_closed_error() -> None:
    """RFC 9113 §5.1: frames other than PRIORITY/WINDOW_UPDATE/RST_STREAM on a half-closed
    (remote) stream are STREAM_CLOSED errors."""
    pair = Pair()
    pair.request()
    pair.to_server()
    frame = DataFrame(1)
    frame.data = b"late"
    events = pair.to_server(frame.serialize())
    wire_events = [type(e).__name__ for e in pair.client_events]
    assert "Data" not in kinds(events)
    assert "StreamReset" in wire_events or pair.goaway() is not None


def test_even_stream_id_from_a_client_is_a_protocol_error() -> None:
    """RFC 9113 §5.1.1: streams a client opens have odd ids."""
    pair = Pair()
    events = pair.server.receive_data(raw_client_start() + raw_headers_frame(2, BASE), 0.0)
    assert kinds(events) == ["Rejected"]


def test_goaway_from_the_client_lets_its_open_streams_finish() -> None:
    """RFC 9113 §6.8: after the client's GOAWAY (NO_ERROR) the streams it opened are still
    answered."""
    pair = Pair()
    sid = pair.request()
    pair.to_server()
    frame = GoAwayFrame(0)
    frame.last_stream_id = 0
    events = pair.server.receive_data(frame.serialize(), 0.0)
    assert kinds(events) == ["GoAway"]
    pair.server.send_response(sid, 200, [], [], True)
    assert pair.server.data_to_send()


# ---------------------------------------------------------------- deadlines


def test_stalled_request_body_meets_its_deadline() -> None:
    """A request body that stops arriving while the app waits for it is reset after the body
    timeout (slowloris on a stream)."""
    pair = Pair(H2Limits(body_timeout=2.0))
    sid = pair.request(body=b"x", end=False)
    pair.to_server()
    pair.server.acknowledge(sid, 1, 0.5)  # the app read it and waits for more
    assert pair.server.deadline == 2.5
    expired, reason = pair.server.timed_out(2.5)
    assert expired == [sid] and reason is None


def test_request_body_slower_than_min_body_rate_is_reset() -> None:
    """--min-body-rate on HTTP/2: while the app has read all it got, a stream's body must bring
    rate x window bytes within each window (a new one starts when it did), or the stream is
    reset as a stalled body is; time the app holds the body is not the client's."""
    pair = Pair(H2Limits(body_timeout=30.0, min_body_rate=10.0, body_rate_window=1.0))
    sid = pair.request(body=b"x" * 12, end=False)
    pair.to_server()
    assert pair.server.deadline is None  # the app holds the body: no clock runs
    pair.server.acknowledge(sid, 12, 0.5)  # read: the window starts now
    assert pair.server.deadline == 1.5
    pair.now = 1.2
    pair.client.send_data(sid, b"x" * 10)
    pair.to_server()
    pair.server.acknowledge(sid, 10, 1.2)
    assert pair.server.deadline == pytest.approx(2.2)
    pair.now = 2.0
    pair.client.send_data(sid, b"x" * 3)
    pair.to_server()
    pair.server.acknowledge(sid, 3, 2.0)
    assert pair.server.deadline == pytest.approx(3.0)
    assert pair.server.timed_out(2.9) == ([], None)
    expired, reason = pair.server.timed_out(3.0)
    assert expired == [sid] and reason is None


def test_body_held_by_a_slow_app_runs_no_deadline() -> None:
    """A client whose window is full because the app has not read is not blamed for the gap."""
    pair = Pair(H2Limits(body_timeout=2.0, keep_alive_timeout=100.0))
    pair.request(body=b"x" * 1000, end=False)
    pair.to_server()
    assert pair.server.deadline is None


def test_zero_window_stall_meets_the_send_deadline() -> None:
    """A client that keeps its window at zero cannot hold a response (and its app) for ever: the
    stream is reset after the send timeout."""
    pair = Pair(H2Limits(send_timeout=3.0), client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    pair.to_server()
    sid = pair.request()
    pair.to_server()
    pair.server.send_response(sid, 200, [], [], False)
    assert pair.server.send_data(sid, b"data", True, 1.0) == b"data"
    assert pair.server.deadline == 4.0
    expired, reason = pair.server.timed_out(4.0)
    assert expired == [sid] and reason is None


def test_idle_connection_meets_the_keep_alive_deadline() -> None:
    """A connection with no open stream is idle; past the keep-alive timeout the driver closes it."""
    pair = Pair(H2Limits(keep_alive_timeout=5.0))
    pair.to_server()
    assert pair.server.deadline == 5.0
    assert pair.server.timed_out(5.0) == ([], "idle")


def test_window_update_frame_is_counted_for_the_connection() -> None:
    """RFC 9113 §6.9: a connection-level WINDOW_UPDATE reaches the driver as WindowOpened(0)."""
    pair = Pair()
    pair.to_server()
    events = pair.to_server(WindowUpdateFrame(0, window_increment=1000).serialize())
    assert any(isinstance(e, WindowOpened) and e.stream_id == 0 for e in events)
    assert GoAwayFrame(0).type == 7


@pytest.mark.parametrize(
    ("length", "size", "ends"),
    [(b"2", 5, True), (b"100", 5, True), (b"2", 5, False), (b"5", 0, True)],
    ids=["longer", "shorter", "first-piece-longer", "empty"],
)
def test_body_sent_with_the_headers_is_checked_before_they_are_queued(
    length: bytes, size: int, ends: bool
) -> None:
    """RFC 9113 §8.1.1: a body that cannot match the content-length is refused before the HEADERS
    are queued, so the same stream can still carry a 500 (twice for the cached field block)."""
    pair = Pair()
    for _ in range(2):
        sid = pair.request()
        pair.to_server()
        with pytest.raises(LocalProtocolError):
            pair.server.send_response(
                sid, 200, [(b"content-length", length)], (), size == 0 and ends, size, ends
            )
        assert pair.server.data_to_send() == b""
        assert not pair.server.send_response(sid, 500, [(b"content-length", b"3")], (), False, 3, True)
        assert pair.server.send_data(sid, b"err", True, 0.0) == b""
        events = pair.to_client()
        assert [type(e).__name__ for e in events] == ["ResponseReceived", "DataReceived", "StreamEnded"]
        assert dict(events[0].headers)[b":status"] == b"500"
