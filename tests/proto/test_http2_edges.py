"""The HTTP/2 core's (wherry/proto/http2.py) less common turns, against h2's client or raw frames:
request heads at the edges of RFC 9113 §8.3, trailers with bad values, and the checks of what
an application sends (status, content-length, 1xx, trailers) before anything is queued."""

from __future__ import annotations

import h2.errors
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from tests.proto.test_http2_core import BASE, Pair, kinds, raw_client_start, raw_headers_frame
from wherry.proto.events import Data, LocalProtocolError, Request
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


# ---------------------------------------------------------------- settings, windows, stream ends


def test_a_request_with_proxy_headers_is_marked_forwarded() -> None:
    assert request_of([*BASE, (b"x-forwarded-for", b"203.0.113.7")]).forwarded
    assert not request_of(BASE).forwarded


def test_a_larger_initial_window_from_the_peer_opens_every_open_stream() -> None:
    """RFC 9113 §6.9.2: a change of SETTINGS_INITIAL_WINDOW_SIZE applies to the open streams."""
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.to_server()
    sids = [pair.request(), pair.request()]
    pair.to_server()
    for sid in sids:
        pair.server.send_response(sid, 200, [], (), False)
        assert pair.server.send_data(sid, b"x" * 15, True, 0.0) == b"x" * 5
    pair.to_client()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 20})
    events = pair.to_server()
    assert kinds(events) == ["WindowOpened"] and events[0].stream_id == 0  # type: ignore[attr-defined]
    for sid in sids:
        assert pair.server.send_data(sid, b"x" * 5, True, 0.0) == b""


def test_a_smaller_initial_window_can_leave_a_stream_below_zero() -> None:
    """RFC 9113 §6.9.2: a window may go negative; nothing is sent on it until it is positive."""
    pair = Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10})
    pair.to_server()
    sid = pair.request()
    pair.to_server()
    pair.server.send_response(sid, 200, [], (), False)
    assert pair.server.send_data(sid, b"x" * 10, False, 0.0) == b""
    pair.to_client()
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    pair.to_server()
    assert pair.server.send_data(sid, b"more", True, 0.0) == b"more"


def test_no_push_to_a_client_that_disabled_it() -> None:
    pair = Pair(client_settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
    pair.to_server()
    sid = pair.request()
    pair.to_server()
    assert not pair.server.push_allowed
    assert pair.server.push(sid, b"/a", b"example.org", b"https", [], 0.0) is None


def test_response_fields_given_as_lists_are_checked_each_time() -> None:
    """ASGI allows each field as a list: such fields cannot be remembered, and are checked and
    sent like new ones each time; fields given by an iterator are read once."""
    pair = Pair()
    for _ in range(2):
        sid = pair.request()
        pair.to_server()
        pair.server.send_response(sid, 200, [[b"x-list", b"1"]], ((b"server", b"wherry"),), True)
        response = pair.to_client()[0]
        assert isinstance(response, h2.events.ResponseReceived)
        assert response.headers == [(b":status", b"200"), (b"x-list", b"1"), (b"server", b"wherry")]
    sid = pair.request()
    pair.to_server()
    pair.server.send_response(sid, 200, iter([(b"x-iter", b"2")]), (), True)
    response = pair.to_client()[0]
    assert isinstance(response, h2.events.ResponseReceived)
    assert response.headers == [(b":status", b"200"), (b"x-iter", b"2")]


def test_a_remembered_head_with_its_whole_body_is_checked_against_its_content_length() -> None:
    pair = Pair()
    headers = ((b"content-length", b"4"),)
    for body in (b"body", b"body", b"toolong"):
        sid = pair.request()
        pair.to_server()
        if body == b"toolong":
            with pytest.raises(LocalProtocolError):
                pair.server.send_response(sid, 200, headers, (), False, len(body), True)
            return
        assert not pair.server.send_response(sid, 200, headers, (), False, len(body), True)
        pair.server.send_data(sid, body, True, 0.0)
        pair.to_client()


def test_many_response_heads_are_remembered_up_to_a_bound() -> None:
    """The codec remembers encoded heads that refer to its table only (at most 64 of them):
    past that it starts over, and every response still reaches the client whole."""
    pair = Pair()
    statuses = list(range(200, 208)) + list(range(226, 227)) + list(range(300, 309)) + list(range(400, 452))
    for round_ in range(2):
        for status in statuses:
            if status in (204, 304):
                continue
            sid = pair.request()
            pair.to_server()
            pair.server.send_response(sid, status, [], (), True)
            pair.server.stream_done(sid, 0.0)
            response = pair.to_client()[0]
            assert isinstance(response, h2.events.ResponseReceived), round_
            assert response.headers == [(b":status", str(status).encode())]


def test_a_response_on_a_stream_that_is_gone_is_not_sent() -> None:
    pair, sid = open_stream()
    pair.server.reset(sid, 8)
    pair.to_client()
    assert pair.server.send_response(sid, 200, [], (), False)  # nothing can follow
    pair.server.reset(sid, 8)  # already gone: nothing more is sent
    assert pair.to_client() == []
    pair.server.stream_done(sid, 0.0)  # unknown by now
    pair.server.acknowledge(sid, 0, 0.0)


def test_nothing_is_sent_once_the_connection_is_closed() -> None:
    pair, sid = open_stream()
    pair.server.graceful_shutdown()
    pair.server.graceful_shutdown()
    pair.server.close()
    pair.server.close()
    pair.to_client()
    assert pair.server.data_to_send() == b""
    pair.server.reset(sid, 8)
    pair.server.acknowledge(sid, 10, 0.0)
    assert pair.server.data_to_send() == b""


def test_the_deadline_is_the_earliest_of_several_streams() -> None:
    limits = H2Limits(body_timeout=10.0, send_timeout=5.0, keep_alive_timeout=100.0)
    pair = Pair(limits, client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    pair.to_server()
    uploads = [pair.request([(b":method", b"POST"), *BASE[1:]], end=False) for _ in range(2)]
    pair.now = 1.0
    pair.to_server()
    assert pair.server.deadline == 11.0  # the two bodies' gap deadlines: the same
    sid = pair.request()
    pair.now = 2.0
    pair.to_server()
    pair.server.send_response(sid, 200, [], (), False)
    pair.server.send_data(sid, b"stalled", True, 2.0)  # no window: stalled from 2.0
    assert pair.server.deadline == 7.0
    pair.server.send_response(uploads[0], 200, [], (), False)
    pair.server.send_data(uploads[0], b"stalled", True, 3.0)
    assert pair.server.deadline == 7.0


def test_te_trailers_and_expect_100_continue_are_accepted_other_expectations_reset() -> None:
    request = request_of([*BASE, (b"te", b"trailers"), (b"expect", b"100-continue")])
    assert (b"te", b"trailers") in request.headers and request.expect_continue
    pair = Pair()
    sid = pair.request([(b":method", b"POST"), *BASE[1:], (b"expect", b"something-else")], end=False)
    assert "Request" not in kinds(pair.to_server())
    resets = [e for e in pair.client_events if isinstance(e, h2.events.StreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(sid, h2.errors.ErrorCodes.PROTOCOL_ERROR)]


def test_a_stream_done_before_its_response_ended_is_reset() -> None:
    pair, sid = open_stream()
    pair.server.send_response(sid, 200, [], (), False)
    pair.server.stream_done(sid, 0.0)
    events = pair.to_client()
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "StreamReset"]
    assert events[1].error_code == h2.errors.ErrorCodes.INTERNAL_ERROR


def test_a_reset_of_a_stream_already_closed_sends_nothing() -> None:
    pair, sid = open_stream()
    pair.server.send_response(sid, 200, [], (), True)  # request and response both ended: closed
    pair.to_client()
    pair.server.reset(sid, 8)
    pair.server.open_tunnel(sid + 100)  # no such stream: nothing to open
    assert pair.to_client() == []


def test_a_pushed_stream_answered_frees_its_slot() -> None:
    pair = Pair(client_settings={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    pair.to_server()
    sid = pair.request()
    pair.to_server()
    promised = pair.server.push(sid, b"/a", b"example.org", b"https", [], 0.0)
    assert promised is not None
    assert pair.server.push(sid, b"/b", b"example.org", b"https", [], 0.0) is None
    pair.server.send_response(promised.stream_id, 200, [], (), True)
    pair.server.stream_done(promised.stream_id, 0.0)
    assert pair.server.push(sid, b"/b", b"example.org", b"https", [], 0.0) is not None


def test_a_stalled_stream_keeps_the_time_it_first_stalled() -> None:
    limits = H2Limits(send_timeout=5.0, keep_alive_timeout=100.0)
    pair = Pair(limits, client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    pair.to_server()
    first, second = pair.request(), pair.request()
    pair.to_server()
    pair.server.send_response(first, 200, [], (), False)
    assert pair.server.send_data(first, b"ab", False, 2.0) == b"ab"
    assert pair.server.send_data(first, b"ab", False, 4.0) == b"ab"
    assert pair.server.deadline == 7.0  # from 2.0, not 4.0
    pair.server.send_response(second, 200, [], (), False)
    assert pair.server.send_data(second, b"cd", True, 3.0) == b"cd"
    assert pair.server.deadline == 7.0


# ---------------------------------------------------------------- raw frames from a client


def data_frame(sid: int, data: bytes, flags: tuple[str, ...] = (), pad: int = 0) -> bytes:
    frame = DataFrame(sid, flags=flags)
    frame.data = data
    if pad:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    return frame.serialize()


POST_HEAD = [(b":method", b"POST"), *BASE[1:]]


def test_padding_is_flow_controlled_and_credited_back_at_once() -> None:
    """RFC 9113 §6.1: padding counts against the windows; nobody reads it, so it is credited."""
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    server.data_to_send()
    wire = raw_client_start() + raw_headers_frame(1, POST_HEAD, ("END_HEADERS",))
    wire += data_frame(1, b"body", ("END_STREAM",), pad=255)
    events = server.receive_data(wire, 0.0)
    assert kinds(events) == ["Request", "Data", "EndOfMessage"]
    assert [e.data for e in events if isinstance(e, Data)] == [b"body"]  # the padding is not body


def test_a_body_refused_as_too_large_is_credited_and_never_ends() -> None:
    server = H2Connection(H2Limits(max_body=4), 0.0)
    server.initiate()
    wire = raw_client_start() + raw_headers_frame(1, POST_HEAD, ("END_HEADERS",)) + data_frame(1, b"12345678")
    events = server.receive_data(wire, 0.0)
    assert kinds(events) == ["Request", "Rejected"]
    assert kinds(server.receive_data(data_frame(1, b"more", ("END_STREAM",)), 0.0)) == []


def test_data_beyond_the_connection_window_is_a_flow_control_error() -> None:
    server = H2Connection(H2Limits(max_concurrent_streams=1), 0.0)
    server.initiate()
    wire = raw_client_start() + raw_headers_frame(1, POST_HEAD, ("END_HEADERS",))
    wire += b"".join(data_frame(1, b"x" * 16384) for _ in range(4))  # 65536: one byte too many
    events = server.receive_data(wire, 0.0)
    assert kinds(events)[0] == "Request" and kinds(events)[-1] == "Rejected"
    assert server.closed


def test_before_our_settings_are_acknowledged_the_default_window_still_holds() -> None:
    """RFC 9113 §6.9.2: until the client acknowledges a smaller initial window, it may send up to
    the default one."""
    server = H2Connection(H2Limits(initial_window_size=1000), 0.0)
    server.initiate()
    wire = raw_client_start() + raw_headers_frame(1, POST_HEAD, ("END_HEADERS",))
    events = server.receive_data(wire + data_frame(1, b"x" * 2000, ("END_STREAM",)), 0.0)
    assert kinds(events) == ["Request", "Data", "EndOfMessage"]


def test_a_header_block_larger_than_the_limit_in_its_first_frame_ends_the_connection() -> None:
    server = H2Connection(H2Limits(max_header_list_size=100), 0.0)
    server.initiate()
    big = raw_headers_frame(1, [*BASE, (b"x-big", b"v" * 200)], ("END_STREAM",))  # no END_HEADERS
    events = server.receive_data(raw_client_start() + big, 0.0)
    assert "Request" not in kinds(events) and server.closed


def test_headers_on_a_stream_closed_both_ways_but_not_yet_done_is_a_stream_closed_error() -> None:
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    events = server.receive_data(raw_client_start() + raw_headers_frame(1, BASE), 0.0)
    assert kinds(events) == ["Request", "EndOfMessage"]
    server.send_response(1, 200, [], (), True)  # closed, the app not yet done with it
    events = server.receive_data(raw_headers_frame(1, BASE), 0.0)
    assert kinds(events)[-1] == "Rejected" and server.closed


def test_a_reset_of_a_stream_already_forgotten_or_answered_is_quiet() -> None:
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    wire = raw_client_start() + raw_headers_frame(1, BASE) + raw_headers_frame(3, POST_HEAD, ("END_HEADERS",))
    wire += raw_headers_frame(5, POST_HEAD, ("END_HEADERS",))
    assert kinds(server.receive_data(wire, 0.0)) == ["Request", "EndOfMessage", "Request", "Request"]
    server.send_response(1, 200, [], (), True)
    server.stream_done(1, 0.0)  # forgotten
    server.send_response(3, 200, [], (), True)
    server.stream_done(3, 0.0)  # answered before its body: half-closed, kept
    resets = RstStreamFrame(1, error_code=8).serialize() + RstStreamFrame(3, error_code=8).serialize()
    assert server.receive_data(resets, 0.0) == []
    assert server.open_streams == 1 and not server.closed


def test_headers_with_priority_fields_are_read_past_them() -> None:
    """RFC 9113 §6.2: the PRIORITY flag adds five bytes before the field block (deprecated
    signals, skipped); the request is read as without them."""
    frame = HeadersFrame(1, flags=("END_HEADERS", "END_STREAM", "PRIORITY"))
    frame.depends_on = 0
    frame.stream_weight = 16
    frame.data = hpack.Encoder().encode(BASE)
    server = H2Connection(H2Limits(), 0.0)
    server.initiate()
    events = server.receive_data(raw_client_start() + frame.serialize(), 0.0)
    assert kinds(events) == ["Request", "EndOfMessage"]
    assert isinstance(events[0], Request) and events[0].raw_path == b"/p"
