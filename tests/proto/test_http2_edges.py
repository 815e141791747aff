"""The HTTP/2 core's (wherry/proto/http2.py) less common turns, against h2's client or raw frames:
request heads at the edges of RFC 9113 §8.3, trailers with bad values, and the checks of what
an application sends (status, content-length, 1xx, trailers) before anything is queued."""

from __future__ import annotations

import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import HeadersFrame

from tests.proto.test_http2_core import BASE, Pair, kinds, raw_client_start, raw_headers_frame
from wherry.proto.events import LocalProtocolError, Request
from wherry.proto.http2 import H2Connection, H2Limits


def head_of(
    block: list[tuple[bytes, bytes]], flags: tuple[str, ...] = ("END_HEADERS", "END_STREAM")
) -> list[str]:
    pair = Pair()
    return kinds(pair.server.receive_data(raw_client_start() + raw_headers_frame(1, block, flags), 0.0))


def request_of(block: list[tuple[bytes, bytes]]) -> Request:
    pair = Pair()
    events = pair.server.receive_data(raw_client_start() + raw_headers_frame(1, block), 0.0)
    assert kinds(events) == ["Request", "EndOfMessage"]
    request = events[0]
    assert isinstance(request, Request)
    return request


# ---------------------------------------------------------------- request heads


def test_a_plain_connect_names_no_scheme_or_path() -> None:
    """RFC 9113 §8.5: a CONNECT (without :protocol) has only :method and :authority."""
    connect = [(b":method", b"CONNECT"), (b":authority", b"example.org:443")]
    request = request_of(connect)
    assert (request.method, request.target, request.raw_path) == (
        b"CONNECT",
        b"example.org:443",
        b"example.org:443",
    )
    assert head_of([*connect, (b":path", b"/")])[-1] == "Rejected"
    assert head_of([*connect, (b":scheme", b"https")])[-1] == "Rejected"


def test_a_host_field_stands_for_a_missing_authority() -> None:
    """RFC 9113 §8.3.1: without :authority the Host field names the target's authority; with
    both they must agree, and a Host that agrees is passed on once."""
    no_authority = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/")]
    request = request_of([*no_authority, (b"host", b"example.org")])
    assert request.headers == [(b"host", b"example.org")]
    request = request_of([*BASE, (b"host", b"example.org")])
    assert [v for n, v in request.headers if n == b"host"] == [b"example.org"]
    assert head_of(no_authority)[-1] == "Rejected"  # neither names it
    assert head_of([*BASE, (b"host", b"other.example")])[-1] == "Rejected"


def test_a_trailer_field_with_a_nul_in_its_value_is_a_protocol_error() -> None:
    pair = Pair()
    wire = raw_client_start() + raw_headers_frame(1, [(b":method", b"POST"), *BASE[1:]], ("END_HEADERS",))
    events = pair.server.receive_data(wire, 0.0)
    assert kinds(events) == ["Request"]
    trailers = HeadersFrame(1, flags=("END_HEADERS", "END_STREAM"))
    trailers.data = hpack.Encoder().encode([(b"x-sum", b"a\x00b")])
    assert kinds(pair.server.receive_data(trailers.serialize(), 0.0))[-1] == "Rejected"


# ---------------------------------------------------------------- what the application sends


def open_stream(method: bytes = b"GET") -> tuple[Pair, int]:
    pair = Pair()
    sid = pair.request([(b":method", method), *BASE[1:]])
    pair.to_server()
    return pair, sid


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (1000, []),
        (99, []),
        (200, [(b"content-length", b"abc")]),
        (200, [(b"content-length", b"1"), (b"content-length", b"1")]),
    ],
    ids=["status-1000", "status-99", "content-length-not-digits", "content-length-twice"],
)
def test_a_response_head_the_protocol_cannot_carry_is_refused(
    status: int, headers: list[tuple[bytes, bytes]]
) -> None:
    pair, sid = open_stream()
    with pytest.raises(LocalProtocolError):
        pair.server.send_response(sid, status, headers, (), False)
    assert pair.to_client() == []


def test_the_apps_own_server_and_date_fields_replace_the_defaults() -> None:
    pair, sid = open_stream()
    defaults = ((b"server", b"wherry"), (b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"))
    pair.server.send_response(sid, 200, [(b"Server", b"mine"), (b"date", b"then")], defaults, True)
    response = pair.to_client()[0]
    assert response.headers == [(b":status", b"200"), (b"server", b"mine"), (b"date", b"then")]


def test_a_remembered_response_head_is_checked_against_its_content_length_again() -> None:
    """A response head sent again, once its fields are in the peer's HPACK table, comes from the
    codec's memory: an app that ends it without the body its content-length announces is
    refused there too, before anything is queued."""
    pair = Pair()
    headers = ((b"content-length", b"4"),)
    for _ in range(2):
        sid = pair.request()
        pair.to_server()
        assert not pair.server.send_response(sid, 200, headers, (), False)
        pair.server.send_data(sid, b"body", True, 0.0)
        pair.to_client()
    sid = pair.request()
    pair.to_server()
    with pytest.raises(LocalProtocolError, match="shorter than its Content-Length"):
        pair.server.send_response(sid, 200, headers, (), True)
    assert pair.to_client() == []
    assert not pair.server.send_response(sid, 200, headers, (), False)  # the stream can still answer
    pair.server.send_data(sid, b"body", True, 0.0)
    events = pair.to_client()
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "DataReceived", "StreamEnded"]


def test_informational_responses_are_1xx_but_101_and_only_on_open_streams() -> None:
    pair, sid = open_stream()
    for status in (200, 101, 99):
        with pytest.raises(LocalProtocolError, match="not an informational status"):
            pair.server.informational(sid, status, [])
    pair.server.informational(sid + 2, 103, [(b"link", b"</a>; rel=preload")])  # no such stream
    assert pair.to_client() == []
    pair.server.informational(sid, 103, [(b"link", b"</a>; rel=preload")])
    assert [type(e).__name__ for e in pair.to_client()] == ["InformationalResponseReceived"]


def test_a_body_that_ends_short_of_its_content_length_is_refused() -> None:
    pair, sid = open_stream()
    pair.server.send_response(sid, 200, [(b"content-length", b"4")], (), False)
    assert pair.server.send_data(sid, b"", False, 0.0) == b""  # nothing: no frame
    assert pair.to_client()[0].__class__.__name__ == "ResponseReceived"
    assert pair.to_client() == []
    with pytest.raises(LocalProtocolError, match="shorter than its Content-Length"):
        pair.server.send_data(sid, b"ab", True, 0.0)
    with pytest.raises(LocalProtocolError, match="shorter than its Content-Length"):
        pair.server.send_trailers(sid, [(b"x-sum", b"1")])


def test_trailers_after_the_end_of_a_stream_are_dropped() -> None:
    pair, sid = open_stream()
    pair.server.send_response(sid, 200, [], (), False)
    pair.server.send_data(sid, b"done", True, 0.0)
    pair.server.send_trailers(sid, [(b"x-sum", b"1")])
    assert [type(e).__name__ for e in pair.to_client()] == ["ResponseReceived", "DataReceived", "StreamEnded"]


# ---------------------------------------------------------------- long header blocks, pushes, h2c


def test_a_response_head_longer_than_a_frame_goes_on_in_continuation_frames() -> None:
    """RFC 9113 §4.3: a field block larger than the peer's SETTINGS_MAX_FRAME_SIZE (16 KiB) is
    split into HEADERS and CONTINUATION frames, the last with END_HEADERS."""
    pair, sid = open_stream()
    big = [(b"x-big", b"a" * 20_000), (b"x-bigger", b"b" * 20_000)]
    pair.server.send_response(sid, 200, big, (), True)
    wire = pair.server.data_to_send()
    assert wire[3] == 0x1 and wire[4] == 0x1  # HEADERS, END_STREAM without END_HEADERS
    events = pair.client.receive_data(wire)
    response = events[0]
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "StreamEnded"]
    assert isinstance(response, h2.events.ResponseReceived)
    assert response.headers[1:] == big


def test_a_push_promises_a_get_without_host_or_connection_fields() -> None:
    """RFC 9113 §8.4: the promised request is a GET of the path, its authority from the parent;
    a host field or a connection-specific one from the app is left out."""
    pair, sid = open_stream()
    extra = [(b"host", b"evil.example"), (b"connection", b"close"), (b"accept", b"text/css")]
    promised = pair.server.push(sid, b"/style.css?v=2", b"example.org", b"https", extra, 0.0)
    assert promised is not None and promised.stream_id == 2
    assert (promised.method, promised.raw_path, promised.query_string) == (b"GET", b"/style.css", b"v=2")
    assert promised.headers == [(b"host", b"example.org"), (b"accept", b"text/css")]
    [event] = pair.to_client()
    assert type(event).__name__ == "PushedStreamReceived"
    assert (b":authority", b"example.org") in event.headers and (b"accept", b"text/css") in event.headers


def test_a_push_promise_longer_than_a_frame_goes_on_in_continuation_frames() -> None:
    pair, sid = open_stream()
    promised = pair.server.push(sid, b"/a", b"example.org", b"https", [(b"x-big", b"a" * 40_000)], 0.0)
    assert promised is not None
    [event] = pair.to_client()
    assert type(event).__name__ == "PushedStreamReceived"
    assert (b"x-big", b"a" * 40_000) in event.headers


def test_no_push_on_a_stream_already_answered_or_beyond_the_peers_stream_limit() -> None:
    pair = Pair(client_settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    pair.to_server()  # the client's settings
    first, second = pair.request(), pair.request()
    pair.to_server()
    assert pair.server.push(first, b"/a", b"example.org", b"https", [], 0.0) is not None
    assert pair.server.push(first, b"/b", b"example.org", b"https", [], 0.0) is None  # one at a time
    pair.server.send_response(second, 200, [], (), True)
    assert pair.server.push(second, b"/c", b"example.org", b"https", [], 0.0) is None  # answered


def test_a_head_request_upgraded_from_h2c_gets_a_bodyless_response() -> None:
    """RFC 7540 §3.2: the upgraded HEAD request is stream 1; its response carries no DATA."""
    server = H2Connection(H2Limits(), 0.0)
    request = Request(b"HEAD", b"/", b"/", b"", "1.1", [(b"host", b"example.org")], True, False, b"h2c")
    server.initiate_upgrade(b"", request, 0.0)
    assert server.bodyless(1)
    assert server.send_response(1, 200, [(b"content-length", b"4")], (), False)  # it ends the stream
