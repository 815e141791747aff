"""Property tests (hypothesis) of the HTTP/2 core's own frame parsing, stream states and HPACK
caches (wherry/proto/http2.py): arbitrary bytes and arbitrary frame sequences never crash it, how
the bytes are split never changes what it decides, and what a real client (h2, hpack) sends
always comes out as the same requests, however its header blocks repeat or its tables change.

Each property runs a bounded number of examples (150: a quick run in the suite); set
WHERRY_FUZZ_EXAMPLES for a longer one."""

from __future__ import annotations

import os
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import Frame, HeadersFrame, SettingsFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wherry.proto.events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    GoAway,
    Rejected,
    Request,
    StreamReset,
    WindowOpened,
)
from wherry.proto.http2 import H2Connection, H2Limits

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
START = PREFACE + SettingsFrame(0).serialize()
KNOWN = (Request, Data, EndOfMessage, StreamReset, WindowOpened, GoAway, Rejected, ConnectionClosed)
FUZZ = settings(
    max_examples=int(os.environ.get("WHERRY_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def frame_bytes(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + sid.to_bytes(4, "big") + payload


def summary(events: list[Event]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, Request):
            out.append(("Request", event.stream_id, event.method, event.target, tuple(event.headers)))
        elif isinstance(event, Data):
            out.append(("Data", event.stream_id, event.data))
        elif isinstance(event, Rejected):
            out.append(("Rejected", event.stream_id, event.status))
        else:
            out.append((type(event).__name__, getattr(event, "stream_id", None)))
    return out


def merged(events: list[Event]) -> list[tuple[Any, ...]]:
    """Adjacent Data of one stream joined: a split may cut a frame, never a decision."""
    out: list[tuple[Any, ...]] = []
    for item in summary(events):
        if item[0] == "Data" and out and out[-1][0] == "Data" and out[-1][1] == item[1]:
            out[-1] = ("Data", item[1], out[-1][2] + item[2])
        else:
            out.append(item)
    return out


def feed(pieces: list[bytes]) -> tuple[list[Event], bytes, bool]:
    server = H2Connection(H2Limits(max_concurrent_streams=8, max_header_list_size=4096), 0.0)
    server.initiate()
    events: list[Event] = []
    wire = b""
    for piece in pieces:
        got = server.receive_data(piece, 0.0)
        assert all(isinstance(event, KNOWN) for event in got)
        if server.closed:
            assert server.receive_data(b"\x00" * 9, 0.0) == []  # nothing after the end is parsed
        events += got
        wire += server.data_to_send()
    return events, wire, server.closed


def real_client() -> h2.connection.H2Connection:
    """h2 as the client, sending fields as given (no normalisation of its own)."""
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        normalize_outbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
    )
    client = h2.connection.H2Connection(config)
    client.initiate_connection()
    return client


def parse_frames(wire: bytes) -> list[Frame]:
    """What the server wrote is a sequence of well-formed frames (hyperframe parses each)."""
    frames = []
    offset = 0
    while offset < len(wire):
        frame, length = Frame.parse_frame_header(memoryview(wire[offset : offset + 9]))
        assert offset + 9 + length <= len(wire)
        frame.parse_body(memoryview(wire[offset + 9 : offset + 9 + length]))
        frames.append(frame)
        offset += 9 + length
    return frames


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


# A header block the fuzzer can vary: valid HPACK of plausible and implausible fields, or noise.
field_names = st.sampled_from(
    [b":method", b":path", b":scheme", b":authority", b":status", b"host", b"content-length", b"te",
     b"x-a", b"X-Upper", b"connection", b"expect", b""]
)  # fmt: skip
field_values = st.sampled_from(
    [b"GET", b"POST", b"/", b"http", b"a.example", b"5", b"trailers", b"a\rb", b" x", b""]
)
header_blocks = st.one_of(
    st.lists(st.tuples(field_names, field_values), max_size=8).map(lambda f: hpack.Encoder().encode(f)),
    st.just(hpack.Encoder().encode([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"),
                                    (b":authority", b"a.example")])),
    st.binary(max_size=24),
)  # fmt: skip
frames = st.one_of(
    st.builds(
        frame_bytes,
        st.integers(0, 10),
        st.integers(0, 255),
        st.sampled_from([0, 1, 2, 3, 5, 7, 2**31 + 1]),
        st.binary(max_size=24),
    ),
    st.builds(
        lambda flags, sid, block: frame_bytes(1, flags, sid, block),
        st.sampled_from([0x4, 0x5, 0x0, 0x1, 0x24, 0x8 | 0x4]),
        st.sampled_from([1, 3, 5, 2]),
        header_blocks,
    ),
    st.builds(
        lambda flags, sid, data: frame_bytes(0, flags, sid, data),
        st.sampled_from([0, 1, 8, 9]),
        st.sampled_from([1, 3, 5]),
        st.binary(max_size=16),
    ),
)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
def test_arbitrary_bytes_after_the_preface_never_crash_the_core(data: bytes, cuts: list[int]) -> None:
    """RFC 9113 §4.1, §5.4: any bytes at all end in events or a connection error, never an
    exception; what the server writes is well-formed frames."""
    events, wire, _closed = feed(splits(START + data, cuts))
    parse_frames(wire)
    assert sum(isinstance(e, Rejected) and not e.stream_id for e in events) <= 1


@FUZZ
@given(st.lists(frames, max_size=12), st.lists(st.integers(0, 600), max_size=8))
def test_how_frames_are_split_never_changes_what_the_core_decides(
    sequence: list[bytes], cuts: list[int]
) -> None:
    """The sans-IO contract: a frame sequence fed whole, split anywhere, or one byte at a time
    gives the same events and the same bytes written."""
    data = START + b"".join(sequence)
    whole = feed([data])
    cut = feed(splits(data, cuts))
    single = feed([data[i : i + 1] for i in range(len(data))])
    assert merged(whole[0]) == merged(cut[0]) == merged(single[0])
    assert whole[1] == cut[1] == single[1]
    assert whole[2] == cut[2] == single[2]
    parse_frames(whole[1])


request_fields = st.lists(
    st.tuples(
        st.sampled_from([b"x-a", b"x-b", b"accept", b"cookie", b"user-agent", b"x-long"]),
        st.binary(min_size=1, max_size=300).map(lambda v: v.replace(b"\r", b"r").replace(b"\n", b"n")
                                                  .replace(b"\x00", b"0").strip(b" \t") or b"v"),
    ),
    max_size=5,
)  # fmt: skip
# What an app may send (proto/fields.py): no control byte but HTAB, no whitespace around a value.
response_fields = st.lists(
    st.tuples(
        st.sampled_from([b"x-a", b"x-b", b"accept", b"cookie", b"user-agent", b"x-long"]),
        st.binary(min_size=1, max_size=300).map(lambda v: bytes(c if c == 9 or 32 <= c != 127 else 63
                                                                for c in v).strip(b" \t") or b"v"),
    ),
    max_size=5,
)  # fmt: skip
paths = st.sampled_from([b"/", b"/a", b"/b?q=1", b"/static/app.js"])


@FUZZ
@given(st.lists(st.tuples(paths, request_fields), min_size=1, max_size=25), st.booleans())
def test_requests_from_a_real_client_decode_to_what_it_sent(
    requests: list[tuple[bytes, list[tuple[bytes, bytes]]]], repeat: bool
) -> None:
    """RFC 7541 §2.3: header blocks that repeat (all indexes, taken from the decode cache) and
    blocks that change the dynamic table, evict from it or resize it, in any order, decode to the
    fields the client (h2 with hpack) sent."""
    client = real_client()
    server = H2Connection(H2Limits(max_concurrent_streams=100), 0.0)
    server.initiate()
    client.receive_data(server.data_to_send())
    sent = []
    for path, fields in requests + (requests if repeat else []):
        sid = client.get_next_available_stream_id()
        block = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.example"), (b":path", path)]
        client.send_headers(sid, block + fields, end_stream=True)
        sent.append((sid, path, [(b"host", b"a.example"), *fields]))
        events = server.receive_data(client.data_to_send(), 0.0)
        client.receive_data(server.data_to_send())
        got = [e for e in events if isinstance(e, Request)]
        assert len(got) == 1, summary(events)
        assert (got[0].stream_id, got[0].target, got[0].headers) == sent[-1]
        server.send_response(sid, 200, [], [], True)
        server.stream_done(sid, 0.0)
        client.receive_data(server.data_to_send())


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([200, 204, 404]),
            response_fields,
            st.sampled_from([None, 0, 64, 4096, 256]),
            st.booleans(),
            st.sampled_from([b"Mon, 01 Dec 2026 00:00:00 GMT", b"Mon, 01 Dec 2026 00:00:01 GMT"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_responses_decode_to_what_the_app_sent_whatever_the_table_size(
    responses: list[tuple[int, list[tuple[bytes, bytes]], int | None, bool, bytes]],
) -> None:
    """RFC 7541 §4.2, §6.3; RFC 9113 §6.5.2: response header blocks, from the caches (each
    response is sent twice) or not, with the server's date changing, decode with the client's
    table, including after the client changes SETTINGS_HEADER_TABLE_SIZE."""
    client = real_client()
    server = H2Connection(H2Limits(max_concurrent_streams=100), 0.0)
    server.initiate()
    server.receive_data(client.data_to_send(), 0.0)
    client.receive_data(server.data_to_send())
    for status, fields, table_size, with_length, date in responses:
        if table_size is not None:
            client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: table_size})
        sent = [*fields, (b"content-length", b"2")] if with_length else fields
        default = ((b"server", b"wherry"), (b"date", date))
        for _ in range(2):
            sid = client.get_next_available_stream_id()
            block = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/")]
            client.send_headers(sid, block, end_stream=True)
            server.receive_data(client.data_to_send(), 0.0)
            ended = server.send_response(sid, status, sent, default, not with_length)
            if not ended:
                server.send_data(sid, b"ok", True, 0.0)
            server.stream_done(sid, 0.0)
            events = client.receive_data(server.data_to_send())
            got = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
            assert len(got) == 1
            expected = sent if status != 204 else fields  # 204 loses its content-length
            assert got[0].headers == [(b":status", b"%d" % status), *expected, *default]
            assert any(isinstance(e, h2.events.StreamEnded) for e in events)


def test_headers_frame_helper_matches_hyperframe() -> None:
    """The fuzzer's frame builder writes what hyperframe writes (so the cases mean what they say)."""
    frame = HeadersFrame(3, flags=["END_HEADERS"])
    frame.data = b"\x82"
    assert frame_bytes(1, 4, 3, b"\x82") == frame.serialize()
