"""The HTTP/2 core's own frame layer (wherry/proto/http2.py), frame by frame: every error RFC 9113
names for a frame type, a stream state or a window, and the bounds the core adds, each fed as raw
bytes whole, one byte at a time, and with trailing garbage (which is never parsed after a
connection error). The answer is read off the wire: GOAWAY with its code, or RST_STREAM."""

from __future__ import annotations

from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from wherry.proto.events import Data, EndOfMessage, Event, LocalProtocolError, Rejected, Request, StreamReset
from wherry.proto.http2 import H2Connection, H2Limits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
START = PREFACE + SettingsFrame(0).serialize()
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.example"), (b":path", b"/")]
POST = [(b":method", b"POST"), *GET[1:]]
GARBAGE = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01"  # a valid WINDOW_UPDATE, after the end

PROTOCOL_ERROR = 0x1
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB


def frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def headers(sid: int, fields: list[tuple[bytes, bytes]], flags: int = 0x5) -> bytes:
    return frame(0x1, flags, sid, hpack.Encoder().encode(fields))


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def spend_window(sid: int, size: int = 65535) -> bytes:
    """Body DATA on ``sid`` (no END_STREAM) that uses up a stream window of ``size`` bytes."""
    pieces = [b"x" * min(16384, size - offset) for offset in range(0, size, 16384)]
    return b"".join(frame(0x0, 0, sid, piece) for piece in pieces)


def written(wire: bytes) -> list[Frame]:
    frames = []
    offset = 0
    while offset < len(wire):
        head, length = Frame.parse_frame_header(memoryview(wire[offset : offset + 9]))
        head.parse_body(memoryview(wire[offset + 9 : offset + 9 + length]))
        frames.append(head)
        offset += 9 + length
    return frames


FEEDS: list[tuple[str, Callable[[bytes], list[bytes]]]] = [
    ("whole", lambda data: [data]),
    ("byte_by_byte", lambda data: [data[i : i + 1] for i in range(len(data))]),
    ("trailing_garbage", lambda data: [data + GARBAGE]),
]


def run(data: bytes, split: Callable[[bytes], list[bytes]], limits: H2Limits | None = None) -> tuple[
    list[Event], list[Frame], H2Connection
]:  # fmt: skip
    server = H2Connection(limits or H2Limits(), 0.0)
    server.initiate()
    server.data_to_send()
    events: list[Event] = []
    wire = b""
    for piece in split(data):
        events += server.receive_data(piece, 0.0)
        wire += server.data_to_send()
    return events, written(wire), server


# A table: what the client sends after its preface, and the GOAWAY code that must answer it.
CONNECTION_ERRORS: list[tuple[str, bytes, int]] = [
    ("first-frame-not-settings", b"", PROTOCOL_ERROR),  # START is replaced below for this one
    ("data-on-stream-0", frame(0x0, 0, 0, b"x"), PROTOCOL_ERROR),
    ("headers-on-stream-0", headers(0, GET), PROTOCOL_ERROR),
    ("rst-on-stream-0", frame(0x3, 0, 0, u32(8)), PROTOCOL_ERROR),
    ("priority-on-stream-0", frame(0x2, 0, 0, u32(0) + b"\x10"), PROTOCOL_ERROR),
    ("settings-on-a-stream", frame(0x4, 0, 1), PROTOCOL_ERROR),
    ("ping-on-a-stream", frame(0x6, 0, 1, b"12345678"), PROTOCOL_ERROR),
    ("goaway-on-a-stream", frame(0x7, 0, 1, u32(0) + u32(0)), PROTOCOL_ERROR),
    ("ping-of-7-bytes", frame(0x6, 0, 0, b"1234567"), FRAME_SIZE_ERROR),
    ("rst-of-3-bytes", headers(1, GET, 0x4) + frame(0x3, 0, 1, b"\x00\x00\x08"), FRAME_SIZE_ERROR),
    ("window-update-of-5-bytes", frame(0x8, 0, 0, b"\x00\x00\x00\x01\x00"), FRAME_SIZE_ERROR),
    ("settings-of-7-bytes", frame(0x4, 0, 0, b"\x00\x03\x00\x00\x00\x01\x00"), FRAME_SIZE_ERROR),
    ("settings-ack-with-payload", frame(0x4, 0x1, 0, b"\x00\x03\x00\x00\x00\x01"), FRAME_SIZE_ERROR),
    ("goaway-of-7-bytes", frame(0x7, 0, 0, b"\x00" * 7), FRAME_SIZE_ERROR),
    ("headers-priority-cut-short", frame(0x1, 0x25, 1, b"\x00\x00"), FRAME_SIZE_ERROR),
    ("push-promise-from-a-client", frame(0x5, 0x4, 1, u32(2)), PROTOCOL_ERROR),
    ("continuation-without-headers", frame(0x9, 0x4, 1, b""), PROTOCOL_ERROR),
    ("header-block-interrupted", headers(1, GET, 0x1) + frame(0x6, 0, 0, b"12345678"), PROTOCOL_ERROR),
    ("continuation-on-another-stream", headers(1, GET, 0x1) + frame(0x9, 0x4, 3, b""), PROTOCOL_ERROR),
    ("padding-as-long-as-the-frame", frame(0x1, 0xD, 1, b"\x05abcde"), PROTOCOL_ERROR),
    ("data-padding-too-long", headers(1, POST, 0x4) + frame(0x0, 0x8, 1, b"\x09abc"), PROTOCOL_ERROR),
    ("headers-self-dependency", frame(0x1, 0x25, 1, u32(1) + b"\x10" + hpack.Encoder().encode(GET)),
     PROTOCOL_ERROR),
    ("hpack-garbage", frame(0x1, 0x5, 1, b"\xff\xff\xff\xff\xff"), COMPRESSION_ERROR),
    ("headers-on-a-closed-stream", headers(1, GET) + headers(3, GET) + frame(0x3, 0, 3, u32(8))
     + headers(3, GET), STREAM_CLOSED),
    ("headers-on-a-half-closed-stream", headers(1, GET) + headers(1, GET), STREAM_CLOSED),
    ("trailers-without-end-stream", headers(1, POST, 0x4) + headers(1, [(b"x-t", b"1")], 0x4),
     PROTOCOL_ERROR),
    ("trailers-with-a-pseudo-header", headers(1, POST, 0x4) + headers(1, [(b":path", b"/")]), PROTOCOL_ERROR),
    ("trailers-ending-a-body-shorter-than-its-content-length",
     headers(1, [*POST, (b"content-length", b"5")], 0x4) + frame(0x0, 0, 1, b"four")
     + headers(1, [(b"x-t", b"1")]), PROTOCOL_ERROR),
    ("rst-on-an-idle-stream", frame(0x3, 0, 9, u32(8)), PROTOCOL_ERROR),
    ("window-update-on-an-idle-stream", frame(0x8, 0, 9, u32(1)), PROTOCOL_ERROR),
    ("window-update-on-an-idle-pushed-stream", frame(0x8, 0, 2, u32(1)), PROTOCOL_ERROR),
    ("data-beyond-the-stream-window", headers(1, POST, 0x4) + frame(0x4, 0x1, 0)
     + b"".join(frame(0x0, 0, 1, b"x" * 16384) for _ in range(4)) + frame(0x0, 0, 1, b"x" * 100),
     FLOW_CONTROL_ERROR),
    ("initial-window-overflows-a-stream", headers(1, GET) + frame(0x8, 0, 1, u32(2**31 - 65536))
     + frame(0x4, 0, 0, b"\x00\x04" + u32(2**31 - 1)), FLOW_CONTROL_ERROR),
    ("settings-max-frame-size-too-large", frame(0x4, 0, 0, b"\x00\x05" + u32(2**24)), PROTOCOL_ERROR),
    ("enable-connect-protocol-2", frame(0x4, 0, 0, b"\x00\x08" + u32(2)), PROTOCOL_ERROR),
    ("missing-authority-and-host", headers(1, [f for f in GET if f[0] != b":authority"]), PROTOCOL_ERROR),
    ("authority-and-host-differ", headers(1, [*GET, (b"host", b"b.example")]), PROTOCOL_ERROR),
    ("empty-path", headers(1, [*GET[:3], (b":path", b"")]), PROTOCOL_ERROR),
    ("connect-with-a-path", headers(1, [(b":method", b"CONNECT"), (b":authority", b"a:1"), (b":path", b"/")]),
     PROTOCOL_ERROR),
    ("protocol-without-connect", headers(1, [*GET, (b":protocol", b"websocket")]), PROTOCOL_ERROR),
    ("empty-field-name", headers(1, [*GET, (b"", b"v")]), PROTOCOL_ERROR),
    ("colon-inside-a-field-name", headers(1, [*GET, (b"x:y", b"v")]), PROTOCOL_ERROR),
    ("value-with-surrounding-space", headers(1, [*GET, (b"x-a", b"v ")]), PROTOCOL_ERROR),
    ("body-shorter-than-content-length", headers(1, [*POST, (b"content-length", b"5")], 0x4)
     + frame(0x0, 0x1, 1, b"abc"), PROTOCOL_ERROR),
    ("content-length-with-no-body", headers(1, [*POST, (b"content-length", b"5")]), PROTOCOL_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
@pytest.mark.parametrize(("case", "wire", "code"), CONNECTION_ERRORS, ids=[c[0] for c in CONNECTION_ERRORS])
def test_frame_level_connection_errors_end_with_goaway_and_the_rfc_code(
    case: str, wire: bytes, code: int, name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 9113 §3.4, §4.2, §5.1, §5.4.1, §6.1-§6.10, §8.1.1, §8.2, §8.3: each malformed frame,
    frame on the wrong stream or state, window overrun and malformed request is a connection error
    with the code the RFC names; no request reaches the driver, and nothing after it is parsed."""
    data = PREFACE + frame(0x6, 0, 0, b"12345678") if case == "first-frame-not-settings" else START + wire
    events, frames, server = run(data, split)
    assert server.closed
    assert isinstance(events[-1], Rejected) and not events[-1].stream_id
    assert not any(isinstance(e, Request) and e.stream_id == 1 for e in events) or case in (
        "rst-of-3-bytes",
        "headers-on-a-closed-stream",
        "headers-on-a-half-closed-stream",
        "trailers-without-end-stream",
        "trailers-with-a-pseudo-header",
        "data-beyond-the-stream-window",
        "initial-window-overflows-a-stream",
        "data-padding-too-long",
        "body-shorter-than-content-length",
        "trailers-ending-a-body-shorter-than-its-content-length",
    )
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1 and goaways[0].error_code == code
    assert isinstance(frames[-1], GoAwayFrame)  # nothing written after it


STREAM_ERRORS: list[tuple[str, bytes, int]] = [
    ("priority-self-dependency", headers(1, GET, 0x4) + frame(0x2, 0, 1, u32(1) + b"\x10"), PROTOCOL_ERROR),
    ("priority-of-4-bytes", headers(1, GET, 0x4) + frame(0x2, 0, 1, u32(0)), FRAME_SIZE_ERROR),
    ("data-on-a-half-closed-stream", headers(1, GET) + frame(0x0, 0, 1, b"late"), STREAM_CLOSED),
    ("window-update-of-0-on-a-stream", headers(1, GET) + frame(0x8, 0, 1, u32(0)), PROTOCOL_ERROR),
    ("stream-window-above-2-31", headers(1, GET) + frame(0x8, 0, 1, u32(2**31 - 1)), FLOW_CONTROL_ERROR),
]  # fmt: skip


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
@pytest.mark.parametrize(("case", "wire", "code"), STREAM_ERRORS, ids=[c[0] for c in STREAM_ERRORS])
def test_stream_level_errors_reset_only_their_stream(
    case: str, wire: bytes, code: int, name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 9113 §5.4.2, §6.3, §6.9, §6.9.1, §5.1 (half-closed (remote)): a stream error answers
    RST_STREAM with its code; the driver hears StreamReset and the connection goes on."""
    events, frames, server = run(START + wire, split)
    assert not server.closed
    resets = [f for f in frames if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, code)]
    assert StreamReset in [type(e) for e in events]
    assert not any(isinstance(f, GoAwayFrame) for f in frames)


@pytest.mark.parametrize(("name", "split"), FEEDS[:2], ids=[f[0] for f in FEEDS[:2]])
def test_continuation_frames_are_bounded_in_number(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """CVE-2023-45288 class (CONTINUATION flood of empty frames, which no byte bound catches): a
    header block may take at most 64 CONTINUATION frames; beyond it GOAWAY ENHANCE_YOUR_CALM."""
    wire = START + headers(1, GET, 0x1) + frame(0x9, 0, 1) * 65 + frame(0x9, 0x4, 1)
    events, frames, server = run(wire, split)
    assert server.closed and isinstance(events[-1], Rejected)
    assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]
    ok, _frames, server = run(
        START + headers(1, GET, 0x1) + frame(0x9, 0, 1) * 63 + frame(0x9, 0x4, 1), split
    )
    assert [type(e) for e in ok] == [Request, EndOfMessage] and not server.closed


@pytest.mark.parametrize(("name", "split"), FEEDS[:2], ids=[f[0] for f in FEEDS[:2]])
def test_streams_beyond_the_limit_are_refused_within_a_budget(
    name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 9113 §5.1.2: a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS gets RST_STREAM
    REFUSED_STREAM, not GOAWAY; refusals make no progress, so a flood of them spends the
    idle-frame budget and ends with GOAWAY ENHANCE_YOUR_CALM."""
    limits = H2Limits(max_concurrent_streams=1, idle_frame_budget=(5, 1.0))
    wire = START + headers(1, POST, 0x4) + b"".join(headers(sid, GET) for sid in (3, 5, 7))
    events, frames, server = run(wire, split, limits)
    assert [type(e) for e in events] == [Request] and not server.closed
    assert [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)] == [
        (3, REFUSED_STREAM),
        (5, REFUSED_STREAM),
        (7, REFUSED_STREAM),
    ]
    assert not any(isinstance(f, GoAwayFrame) for f in frames)
    flood = START + headers(1, POST, 0x4) + b"".join(headers(sid, GET) for sid in range(3, 41, 2))
    events, frames, server = run(flood, split, limits)
    assert server.closed and isinstance(events[-1], Rejected)
    assert [f.error_code for f in frames if isinstance(f, GoAwayFrame)] == [ENHANCE_YOUR_CALM]


@pytest.mark.parametrize(("name", "split"), FEEDS[:2], ids=[f[0] for f in FEEDS[:2]])
def test_request_trailers_end_the_body(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """RFC 9113 §8.1: a HEADERS frame with END_STREAM after DATA carries trailers; the body ends
    (ASGI has no request trailers, so they are checked and dropped)."""
    wire = START + headers(1, POST, 0x4) + frame(0x0, 0, 1, b"abc") + headers(1, [(b"x-checksum", b"1")])
    events, _frames, server = run(wire, split)
    assert [type(e) for e in events] == [Request, Data, EndOfMessage]
    assert not server.closed


@pytest.mark.parametrize(("name", "split"), FEEDS, ids=[f[0] for f in FEEDS])
def test_unknown_frames_and_settings_are_ignored(name: str, split: Callable[[bytes], list[bytes]]) -> None:
    """RFC 9113 §5.5, §6.5.2: frames of unknown types and unknown SETTINGS are ignored."""
    wire = (
        START + frame(0xEE, 0xFF, 1, b"whatever") + frame(0x4, 0, 0, b"\x00\x99" + u32(7)) + headers(1, GET)
    )
    events, frames, server = run(wire, split)
    assert [type(e) for e in events if not isinstance(e, Rejected)][:2] == [Request, EndOfMessage]
    assert not server.closed
    assert sum(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in frames) == 2


def test_body_read_in_small_pieces_is_credited_in_batches_and_never_stalls() -> None:
    """RFC 9113 §6.9: credits for a body the app reads a little at a time are gathered into
    WINDOW_UPDATE frames of at least a quarter of the window, and a window the app has emptied is
    always opened again, so the client never waits on credits that were not sent."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    client.receive_data(server.data_to_send())
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, POST)
    total = 0
    updates = []
    for _ in range(40):
        size = client.local_flow_control_window(sid)
        assert size > 0  # the client always has room: credits are never held back at zero
        client.send_data(sid, b"x" * min(size, 16384))
        events = server.receive_data(client.data_to_send(), 0.0)
        for event in events:
            if isinstance(event, Data):
                for offset in range(0, len(event.data), 1000):  # the app reads 1000 bytes at a time
                    server.acknowledge(sid, len(event.data[offset : offset + 1000]), 0.0)
                    total += len(event.data[offset : offset + 1000])
        for answer in client.receive_data(server.data_to_send()):
            if isinstance(answer, h2.events.WindowUpdated) and answer.stream_id == sid:
                updates.append(answer.delta)
    assert total > 4 * 65535
    assert updates and min(updates) >= 65535 // 4


def test_window_update_frames_sent_are_well_formed() -> None:
    """RFC 9113 §6.9: the server preface's connection WINDOW_UPDATE is a 4-byte increment on
    stream 0."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    frames = written(server.data_to_send())
    assert isinstance(frames[0], SettingsFrame)
    assert isinstance(frames[1], WindowUpdateFrame) and frames[1].stream_id == 0
    assert frames[1].window_increment == 65535 * 16 - 65535


@pytest.mark.parametrize(("name", "split"), FEEDS[:2], ids=[f[0] for f in FEEDS[:2]])
def test_frames_after_the_server_reset_a_stream_are_ignored(
    name: str, split: Callable[[bytes], list[bytes]]
) -> None:
    """RFC 9113 §5.1 (closed), §8.1: after the server answered early, body DATA that spends the
    stream's window stops the upload (RST_STREAM NO_ERROR); the client's trailers already in
    flight are then ignored, and their header block still updates the HPACK table the next
    request refers to."""
    encoder = hpack.Encoder()
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(START + frame(0x1, 0x4, 1, encoder.encode(POST)), 0.0)
    server.send_response(1, 200, [], [], True)
    server.stream_done(1, 0.0)
    assert not any(isinstance(f, RstStreamFrame) for f in written(server.data_to_send()))
    late = spend_window(1) + frame(0x1, 0x5, 1, encoder.encode([(b"x-trailer", b"indexed now")]))
    fields = [*GET, (b"x-trailer", b"indexed now")]  # the last field comes from the dynamic table
    wire = late + frame(0x1, 0x5, 3, encoder.encode(fields))
    events: list[Event] = []
    for piece in split(wire):
        events += server.receive_data(piece, 0.0)
    assert [type(e) for e in events] == [Request, EndOfMessage]
    request = events[0]
    assert isinstance(request, Request) and request.stream_id == 3
    assert (b"x-trailer", b"indexed now") in request.headers
    assert not server.closed
    out = written(server.data_to_send())
    assert [(f.stream_id, f.error_code) for f in out if isinstance(f, RstStreamFrame)] == [(1, 0)]
    assert not any(isinstance(f, GoAwayFrame) for f in out)


POST_LENGTH_1 = [*POST, (b"content-length", b"1")]

# Cases h2spec runs on a stream it opened without END_STREAM, which an app that answers at once
# has answered in full before the client's next frames are read: the request head (HEADERS
# without END_STREAM), what follows, and the frame and code that must answer it.
AFTER_EARLY_ANSWER: list[tuple[str, list[tuple[bytes, bytes]], bytes, type[Frame], int]] = [
    # h2spec 5.1/8: the client resets the stream, then sends DATA on it (now closed).
    (
        "data after the client's reset",
        POST,
        frame(0x3, 0, 1, u32(0x8)) + frame(0x0, 0x1, 1, b"x"),
        RstStreamFrame,
        0x5,
    ),
    # h2spec 5.1/9: HEADERS on a stream the client reset.
    (
        "headers after the client's reset",
        POST,
        frame(0x3, 0, 1, u32(0x8)) + headers(1, POST),
        GoAwayFrame,
        0x5,
    ),
    # h2spec 6.9/2: a WINDOW_UPDATE of 0 on the stream.
    ("window update of 0", POST, frame(0x8, 0, 1, u32(0)), RstStreamFrame, PROTOCOL_ERROR),
    # h2spec 6.9.1/3: the stream's window pushed above 2^31-1.
    ("window above 2^31-1", POST, frame(0x8, 0, 1, u32(2**31 - 1)) * 2, RstStreamFrame, FLOW_CONTROL_ERROR),
    # h2spec 8.1/1: some body, then trailers without END_STREAM.
    (
        "trailers without END_STREAM after some body",
        POST,
        frame(0x0, 0, 1, b"test") + headers(1, [(b"x-test", b"ok")], 0x4),
        GoAwayFrame,
        PROTOCOL_ERROR,
    ),
    # h2spec 8.1.2.1/3: some body, then trailers with a pseudo-header.
    (
        "trailers with a pseudo-header after some body",
        POST,
        frame(0x0, 0, 1, b"test") + headers(1, [(b":method", b"POST")], 0x4),
        GoAwayFrame,
        PROTOCOL_ERROR,
    ),
    # h2spec 8.1.2.6/1: content-length 1, then a 4-byte body that ends the request.
    (
        "body longer than its content-length",
        POST_LENGTH_1,
        frame(0x0, 0x1, 1, b"test"),
        GoAwayFrame,
        PROTOCOL_ERROR,
    ),
    # h2spec 8.1.2.6/2: content-length 1, then two 4-byte DATA frames.
    (
        "body in two frames longer than its content-length",
        POST_LENGTH_1,
        frame(0x0, 0, 1, b"test") + frame(0x0, 0x1, 1, b"test"),
        GoAwayFrame,
        PROTOCOL_ERROR,
    ),
    # The same rule when trailers end a body shorter than its content-length.
    (
        "trailers ending a body shorter than its content-length",
        [*POST, (b"content-length", b"5")],
        frame(0x0, 0, 1, b"test") + headers(1, [(b"x-test", b"ok")]),
        GoAwayFrame,
        PROTOCOL_ERROR,
    ),
]


@pytest.mark.parametrize(
    ("name", "head", "wire", "kind", "code"), AFTER_EARLY_ANSWER, ids=[c[0] for c in AFTER_EARLY_ANSWER]
)
@pytest.mark.parametrize(("feed", "split"), FEEDS[:2], ids=[f[0] for f in FEEDS[:2]])
def test_a_stream_answered_before_its_body_ended_is_half_closed_local(
    name: str,
    head: list[tuple[bytes, bytes]],
    wire: bytes,
    kind: type[Frame],
    code: int,
    feed: str,
    split: Callable[[bytes], list[bytes]],
) -> None:
    """RFC 9113 §5.1, §6.9, §6.9.1, §8.1, §8.1.1: a stream the server answered in full while the
    request body may still come stays half-closed (local) rather than being reset at once, and
    what arrives on it is checked as on an open stream (the body against its content-length, the
    trailers), so the client's frames get the errors the RFC names (as h2spec expects of an app
    that answers at once)."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(START + headers(1, head, 0x4), 0.0)
    server.send_response(1, 200, [], [], True)
    server.stream_done(1, 0.0)
    server.data_to_send()
    events: list[Event] = []
    for piece in split(wire):
        events += server.receive_data(piece, 0.0)
    assert not any(isinstance(e, (Request, Data, EndOfMessage)) for e in events)
    out = [f for f in written(server.data_to_send()) if isinstance(f, (GoAwayFrame, RstStreamFrame))]
    assert [(type(f), f.error_code) for f in out] == [(kind, code)]


def test_an_answered_stream_is_reset_once_its_window_is_spent() -> None:
    """RFC 9113 §8.1: the body of an answered stream is dropped while the client spends the
    window it already has; a stream whose window is spent when the app returns is reset
    (NO_ERROR) at once, as it could send nothing more, and one with window left is reset when
    DATA spends it. The connection window gets back every byte dropped."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send())
    for sid in (1, 3):
        client.send_headers(sid, POST)
    for _ in range(3):
        client.send_data(1, b"x" * 16384)
    client.send_data(1, b"x" * 16383)  # stream 1's window spent; stream 3 sends nothing yet
    server.receive_data(client.data_to_send(), 0.0)
    for sid in (1, 3):
        server.send_response(sid, 200, [], [], True)
        server.stream_done(sid, 0.0)  # the apps return without reading
    events = client.receive_data(server.data_to_send())
    assert [(e.stream_id, e.error_code) for e in events if isinstance(e, h2.events.StreamReset)] == [(1, 0)]
    client.send_data(3, b"y" * 16384)
    server.receive_data(client.data_to_send(), 0.0)
    assert not any(isinstance(f, RstStreamFrame) for f in written(server.data_to_send()))
    for _ in range(2):
        client.send_data(3, b"y" * 16384)
    client.send_data(3, b"y" * 16383)
    server.receive_data(client.data_to_send(), 0.0)
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(3, 0)]
    assert server.open_streams == 0 and not server.closed


def end_unread(server: H2Connection, how: str) -> None:
    """End stream 1, whose body the app has not read, as ``how`` says."""
    if how == "the client resets it":
        server.receive_data(frame(0x3, 0, 1, u32(0x8)), 0.0)
    elif how == "the driver resets it":
        server.reset(1, 0x8)
    else:
        if how == "its app returns after the body ended":
            server.receive_data(frame(0x0, 0x1, 1), 0.0)
        server.send_response(1, 200, [], [], True)
        server.stream_done(1, 0.0)


UNREAD_ENDS = [
    "the client resets it",
    "the driver resets it",
    "its app returns after answering",
    "its app returns after the body ended",
]


@pytest.mark.parametrize("how", UNREAD_ENDS)
def test_body_left_unread_is_credited_to_the_connection(how: str) -> None:
    """RFC 9113 §6.9: body DATA held for an app that never reads it is given back to the
    connection window when its stream ends, however it ends; the stream's own window is not."""
    server = H2Connection(H2Limits(max_concurrent_streams=1), 0.0)  # credits of 16 KiB go at once
    server.initiate()
    events = server.receive_data(START + headers(1, POST, 0x4) + frame(0x0, 0, 1, b"x" * 16384), 0.0)
    assert [type(e) for e in events] == [Request, Data]
    server.data_to_send()
    end_unread(server, how)
    updates = [f for f in written(server.data_to_send()) if isinstance(f, WindowUpdateFrame)]
    assert [(f.stream_id, f.window_increment) for f in updates] == [(0, 16384)]


def test_a_body_ending_after_an_early_answer_closes_the_stream_quietly() -> None:
    """RFC 9113 §8.1: the rest of a body that ends (DATA with END_STREAM, or trailers) closes the
    answered stream without a reset."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(START + headers(1, POST, 0x4) + headers(3, POST, 0x4), 0.0)
    for sid in (1, 3):
        server.send_response(sid, 200, [], [], True)
        server.stream_done(sid, 0.0)
    server.data_to_send()
    late = frame(0x0, 0x1, 1, b"x" * 16000) + headers(3, [(b"x-trailer", b"t")])
    assert server.receive_data(late, 1.0) == []
    assert server.open_streams == 0
    out = written(server.data_to_send())
    assert not any(isinstance(f, (GoAwayFrame, RstStreamFrame)) for f in out)


def test_a_large_frame_in_small_reads_is_parsed_once_complete() -> None:
    """RFC 9113 §4.1: a DATA frame of the largest allowed size arriving a few bytes per read gives
    its body once, when its last byte arrives."""
    server = H2Connection(H2Limits(max_frame_size=2**20, initial_window_size=2**21), 0.0)
    server.initiate()
    server.receive_data(START + frame(0x4, 0x1, 0) + headers(1, POST, 0x4), 0.0)
    wire = frame(0x0, 0x1, 1, b"y" * 2**20)
    events: list[Event] = []
    for offset in range(0, len(wire), 1000):
        events += server.receive_data(wire[offset : offset + 1000], 0.0)
    assert [type(e) for e in events] == [Data, EndOfMessage]
    assert isinstance(events[0], Data) and events[0].data == b"y" * 2**20


def test_connection_window_held_by_other_streams_still_opens_for_a_reading_app() -> None:
    """RFC 9113 §6.9, §5.2.2: when bodies that other apps have not read fill the connection window,
    what a reading app consumes is credited to the connection at once, so its stream is not
    stalled by credits held back."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    server = H2Connection(H2Limits(max_concurrent_streams=16), 0.0)
    server.initiate()
    client.receive_data(server.data_to_send())
    sids = []
    for _ in range(16):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, POST)
        client.send_data(sid, b"x" * 16384)
        sids.append(sid)
    server.receive_data(client.data_to_send(), 0.0)
    for _ in range(3):  # fill every stream window: the connection window is then empty too
        for sid in sids:
            client.send_data(sid, b"x" * min(16384, client.local_flow_control_window(sid)))
        server.receive_data(client.data_to_send(), 0.0)
    for sid in sids:
        client.send_data(sid, b"x" * client.local_flow_control_window(sid))
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send())
    assert client.outbound_flow_control_window == 0
    reader = sids[-1]
    server.acknowledge(reader, 30000, 0.0)  # one app reads part of its body; the others hold theirs
    client.receive_data(server.data_to_send())
    assert client.outbound_flow_control_window == 30000
    assert client.local_flow_control_window(reader) == 30000


def test_many_window_updates_in_one_read_open_each_window_once() -> None:
    """RFC 9113 §6.9 (CVE-2019-9511 class, data dribble): a read full of tiny WINDOW_UPDATE frames
    makes the driver retry its blocked streams once per window, not once per frame."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(START + headers(1, GET), 0.0)
    wire = (frame(0x8, 0, 0, u32(1)) + frame(0x8, 0, 1, u32(1))) * 500
    events = server.receive_data(wire, 0.0)
    assert [(type(e).__name__, getattr(e, "stream_id", None)) for e in events] == [
        ("WindowOpened", 0),
        ("WindowOpened", 1),
    ]
    assert server.receive_data(frame(0x8, 0, 0, u32(1)), 0.0)  # the next read reports again


def test_the_encoder_table_stays_at_4096_bytes_whatever_the_client_allows() -> None:
    """RFC 7541 §4.2, §6.3: a client's large SETTINGS_HEADER_TABLE_SIZE does not make the server's
    encoder keep more than 4,096 bytes; the table size it uses is announced and the responses
    decode."""
    client_config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(client_config)
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 2**20})
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send())
    for index in range(40):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, GET, end_stream=True)
        server.receive_data(client.data_to_send(), 0.0)
        fields = [(b"x-big", b"%d" % index * 200)]
        server.send_response(sid, 200, fields, [], True)
        server.stream_done(sid, 0.0)
        got = [
            e for e in client.receive_data(server.data_to_send()) if isinstance(e, h2.events.ResponseReceived)
        ]
        assert got[0].headers == [(b":status", b"200"), *fields]
    assert server._codec.encoder.header_table.maxsize == 4096
    assert server._codec.encoder.header_table._current_size <= 4096


@pytest.mark.parametrize(
    "header",
    [b"not*base64!", b"AAMAAA", b"AAIAAAAC", b"AAQAAIAAAA"],
    ids=["not-base64url", "not-a-settings-payload", "enable-push-2", "window-above-2-31"],
)
def test_malformed_http2_settings_is_refused_before_anything_is_queued(header: bytes) -> None:
    """RFC 7540 §3.2.1, RFC 9113 §6.5.2: HTTP2-Settings must be a base64url SETTINGS payload with
    values in range; otherwise ValueError, and the core has queued nothing (no 101, no preface)."""
    server = H2Connection(H2Limits(), 0.0)
    request = Request(b"GET", b"/", b"/", b"", "1.1", [(b"host", b"a")], True, False, None)
    with pytest.raises(ValueError):
        server.initiate_upgrade(header, request, 0.0)
    assert server.data_to_send() == b""


def test_well_formed_http2_settings_become_the_clients_settings() -> None:
    """RFC 7540 §3.2.1: the HTTP2-Settings payload is applied as the client's SETTINGS; the
    request becomes stream 1, half-closed (remote)."""
    server = H2Connection(H2Limits(), 0.0)
    request = Request(b"GET", b"/", b"/", b"", "1.1", [(b"host", b"a")], True, False, None)
    server.initiate_upgrade(b"AAQAAAPo", request, 0.0)  # INITIAL_WINDOW_SIZE 1000
    assert request.stream_id == 1
    server.data_to_send()
    server.receive_data(START, 0.0)
    server.send_response(1, 200, [], [], False)
    assert server.send_data(1, b"x" * 1500, True, 0.0) == b"x" * 500


def test_late_frames_are_ignored_for_the_last_128_streams_the_server_reset() -> None:
    """RFC 9113 §5.1 (closed): late frames on streams the server reset are ignored; the server
    remembers the last 128 such streams (bounded memory), and DATA on an older one gets
    RST_STREAM STREAM_CLOSED, as on any closed stream."""
    server = H2Connection(H2Limits(max_concurrent_streams=200), 0.0)
    server.initiate()
    server.receive_data(START, 0.0)
    sids = list(range(1, 2 * 130, 2))
    for sid in sids:
        server.receive_data(headers(sid, POST, 0x4), 0.0)
        server.send_response(sid, 200, [], [], True)
        server.stream_done(sid, 0.0)  # answered before the body ended
        server.receive_data(spend_window(sid), 0.0)  # its window spent: RST_STREAM NO_ERROR
    server.data_to_send()
    assert server.receive_data(frame(0x0, 0, sids[-1], b"late"), 0.0) == []
    assert not any(isinstance(f, RstStreamFrame) for f in written(server.data_to_send()))
    assert server.receive_data(frame(0x0, 0, sids[0], b"late"), 0.0) == []
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(sids[0], STREAM_CLOSED)]
    assert not server.closed


def test_an_answered_stream_whose_body_stops_is_reset_at_the_body_deadline() -> None:
    """An answered stream kept for the rest of its body is bounded by the body deadline: then
    RST_STREAM NO_ERROR, and no driver hears of it (its app is gone)."""
    server = H2Connection(H2Limits(body_timeout=30.0), 0.0)
    server.initiate()
    server.receive_data(START + headers(1, POST, 0x4), 0.0)
    server.send_response(1, 200, [], [], True)
    server.stream_done(1, 1.0)
    server.data_to_send()
    assert server.deadline == 31.0
    expired, _reason = server.timed_out(31.0)
    assert expired == []
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, 0)]
    assert server.open_streams == 0


def test_an_answered_stream_whose_body_was_refused_is_reset_at_the_body_deadline() -> None:
    """A body refused as too large (413) has no deadline while its app answers; once the app is
    done, the stream kept for the rest of the body is bounded by the body deadline like any."""
    server = H2Connection(H2Limits(max_body=4, body_timeout=30.0), 0.0)
    server.initiate()
    events = server.receive_data(START + headers(1, POST, 0x4) + frame(0x0, 0, 1, b"12345678"), 0.0)
    assert [type(e) for e in events] == [Request, Rejected]
    assert server.deadline is None  # the app is answering; the body is not waited for
    server.send_response(1, 413, [], [], True)
    server.stream_done(1, 2.0)
    server.data_to_send()
    assert server.open_streams == 1 and server.deadline == 32.0
    expired, _reason = server.timed_out(32.0)
    assert expired == []
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, 0)]
    assert server.open_streams == 0


def test_a_body_within_the_size_limit_is_read() -> None:
    server = H2Connection(H2Limits(max_body=10), 0.0)
    server.initiate()
    events = server.receive_data(START + headers(1, POST, 0x4) + frame(0x0, 0x1, 1, b"1234567890"), 0.0)
    assert [type(e) for e in events] == [Request, Data, EndOfMessage]


def test_the_last_stream_answered_with_its_window_spent_is_reset_and_the_idle_clock_starts() -> None:
    """Answered before its body ended, with no window left for more of it: RST_STREAM NO_ERROR
    at once (RFC 9113 §8.1); it was the last stream, so the keep-alive clock starts."""
    server = H2Connection(H2Limits(keep_alive_timeout=5.0), 0.0)
    server.initiate()
    events = server.receive_data(START + headers(1, POST, 0x4) + spend_window(1), 0.0)
    assert [type(e) for e in events] == [Request, *[Data] * 4]
    server.send_response(1, 200, [], [], True)
    server.data_to_send()
    server.stream_done(1, 3.0)
    resets = [f for f in written(server.data_to_send()) if isinstance(f, RstStreamFrame)]
    assert [(f.stream_id, f.error_code) for f in resets] == [(1, 0)]
    assert server.open_streams == 0 and server.deadline == 8.0


def test_response_heads_are_checked_beyond_the_cache_of_heads_checked() -> None:
    """Response fields checked once are remembered in a bounded cache (shared by the
    connections): past its bound, every head is still checked and sent as the app gave it."""
    server = H2Connection(H2Limits(max_concurrent_streams=400), 0.0)
    server.initiate()
    server.receive_data(START, 0.0)
    decoder = hpack.Decoder()
    for sid in range(1, 2 * 300, 2):
        server.receive_data(headers(sid, GET), 0.0)
        server.data_to_send()
        server.send_response(sid, 200, [(b"X-Cache-Probe", b"%d" % sid)], [], True)
        [sent] = written(server.data_to_send())
        assert isinstance(sent, HeadersFrame)
        assert decoder.decode(sent.data, raw=True) == [(b":status", b"200"), (b"x-cache-probe", b"%d" % sid)]
        server.stream_done(sid, 0.0)
    server.receive_data(headers(601, GET), 0.0)
    with pytest.raises(LocalProtocolError):
        server.send_response(601, 200, [(b"x-cache-probe", b"bad\x00value")], [], True)


def test_request_heads_are_decoded_beyond_the_cache_of_heads_decoded() -> None:
    """A header block made only of indexed fields is remembered with its decoded head, in a
    bounded cache: past its bound (more such distinct blocks than it holds) every head is still
    decoded as sent."""
    server = H2Connection(H2Limits(max_concurrent_streams=200), 0.0)
    server.initiate()
    encoder = hpack.Encoder()
    fields = [(b"x-k", b"%d" % i) for i in range(10)]
    events = server.receive_data(START + frame(0x1, 0x5, 1, encoder.encode([*GET, *fields])), 0.0)
    assert isinstance(events[0], Request)
    sid = 3
    for first in fields:
        for second in fields:
            if first == second:
                continue
            block = encoder.encode([*GET, first, second])
            assert all(byte >= 0x81 for byte in block)  # indexed fields only: the cacheable kind
            events = server.receive_data(frame(0x1, 0x5, sid, block), 0.0)
            request = events[0]
            assert isinstance(request, Request) and request.headers[1:] == [first, second]
            server.send_response(sid, 204, [], [], True)
            server.stream_done(sid, 0.0)
            sid += 2
