"""The HTTP/1.1 core's writing side (wherry/proto/http1.py), no event loop: the head it writes
for an application's status and fields, the body framing it chooses (Content-Length, chunked,
until close, none), and the checks that keep a response from lying about its length (RFC 9112
§6, RFC 9110 §8.6)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from wherry.proto.events import LocalProtocolError, Rejected, Request
from wherry.proto.http1 import DefaultHeaders, H1Connection, H1Limits

SERVER = b"server: wherry\r\n"
DATE = b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
REST = b"x-default: 1\r\n"


def request(method: bytes = b"GET", version: bytes = b"1.1") -> tuple[H1Connection, Request]:
    conn = H1Connection(H1Limits(), DefaultHeaders(SERVER, DATE, REST), 0.0)
    events = conn.receive_data(method + b" / HTTP/" + version + b"\r\nhost: a\r\n\r\n", 0.0)
    first = events[0]
    assert isinstance(first, Request)
    return conn, first


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_the_apps_own_date_or_server_replaces_the_default() -> None:
    conn, req = request()
    lines = head_lines(conn.response(req, 200, [(b"Date", b"then")], b"", True, 0.0))
    assert b"Date: then" in lines and DATE[:-2] not in lines and SERVER[:-2] in lines
    conn, req = request()
    lines = head_lines(conn.response(req, 200, [(b"server", b"mine")], b"", True, 0.0))
    assert b"server: mine" in lines and SERVER[:-2] not in lines and DATE[:-2] in lines and REST[:-2] in lines


def test_fields_given_as_lists_and_connection_close_from_the_app() -> None:
    """ASGI allows each field as a list: it is checked like any new field. An app's
    "connection: close" ends the connection after the response; a transfer-encoding of its own is
    dropped (the core frames the body)."""
    conn, req = request()
    fields = [[b"x-list", b"1"], [b"Connection", b"Close"], [b"transfer-encoding", b"gzip"]]
    data = conn.response(req, 200, fields, b"body", True, 0.0)
    lines = head_lines(data)
    assert b"x-list: 1" in lines and b"connection: close" in lines
    assert b"transfer-encoding: chunked" in lines and b"transfer-encoding: gzip" not in lines
    assert data.endswith(b"\r\n\r\n4\r\nbody\r\n0\r\n\r\n")
    assert not conn.keep_alive


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ([(b"content-length", b"1"), (b"content-length", b"1")], "more than one content-length"),
        ([(b"content-length", b"x1")], "invalid content-length"),
        ([(b"content-length", b"1" * 19)], "invalid content-length"),
    ],
    ids=["twice", "not-digits", "too-long"],
)
def test_a_response_head_that_cannot_be_written_is_refused(
    fields: list[tuple[bytes, bytes]], error: str
) -> None:
    conn, req = request()
    with pytest.raises(LocalProtocolError, match=error):
        conn.response_head(req, 200, fields)


def test_a_field_given_as_str_is_refused() -> None:
    """LocalProtocolError when interpreted; compiled, the declared bytes is checked where the field
    is unpacked, a TypeError. The ASGI cycle answers both with a 500."""
    conn, req = request()
    with pytest.raises((LocalProtocolError, TypeError), match="bytes"):
        conn.response_head(req, 200, [("x-str", "value")])  # type: ignore[list-item]


def test_a_status_without_a_status_line_is_refused() -> None:
    conn, req = request()
    with pytest.raises(LocalProtocolError, match="invalid status code"):
        conn.response(req, 999, [], b"", True, 0.0)


def test_informational_responses() -> None:
    conn, _ = request()
    assert conn.informational(103, [(b"link", b"</a>")]).startswith(b"HTTP/1.1 103 ")
    for status in (101, 200, 99):
        with pytest.raises(LocalProtocolError, match="not an informational status"):
            conn.informational(status, [])


def test_a_whole_response_must_match_its_content_length_but_for_head() -> None:
    for body, error in ((b"long", "longer"), (b"s", "shorter")):
        conn, req = request()
        with pytest.raises(LocalProtocolError, match=error):
            conn.response(req, 200, [(b"content-length", b"2")], body, True, 0.0)
        assert not conn.keep_alive
    conn, req = request(b"HEAD")
    data = conn.response(req, 200, [(b"content-length", b"2")], b"", True, 0.0)
    assert b"content-length: 2" in head_lines(data) and data.endswith(b"\r\n\r\n")


def test_a_304_keeps_its_content_length_and_sends_no_body() -> None:
    conn, req = request()
    data = conn.response(req, 304, [(b"content-length", b"10")], b"", True, 0.0)
    assert b"content-length: 10" in head_lines(data) and data.endswith(b"\r\n\r\n")


def test_an_empty_chunked_response_is_its_last_chunk() -> None:
    conn, req = request()
    data = conn.response(req, 200, [], b"", True, 0.0)
    assert data.endswith(b"\r\n\r\n0\r\n\r\n")


def test_an_http_1_0_response_without_a_length_runs_until_close() -> None:
    """RFC 9112 §6.3: no chunked coding for HTTP/1.0; the body ends when the connection does."""
    conn, req = request(version=b"1.0")
    head = conn.response_head(req, 200, [])
    assert b"connection: close" in head_lines(head) and b"transfer-encoding: chunked" not in head_lines(head)
    assert conn.response_data(b"abc") == b"abc"
    assert conn.response_file_framing(10) == (b"", b"")
    assert conn.response_end(0.0) == b""
    assert not conn.keep_alive
    conn, req = request(version=b"1.0")
    assert conn.response(req, 200, [], b"whole", True, 0.0).endswith(b"\r\n\r\nwhole")


def test_an_http_1_0_keep_alive_is_said_out_loud() -> None:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    [req, _] = conn.receive_data(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n", 0.0)
    assert isinstance(req, Request)
    head = conn.response_head(req, 200, [(b"content-length", b"0")])
    assert b"connection: keep-alive" in head_lines(head)


def test_streamed_body_framing_by_mode() -> None:
    conn, req = request()
    conn.response_head(req, 200, [(b"content-length", b"5")])
    assert conn.response_data(b"abc") == b"abc"
    with pytest.raises(LocalProtocolError, match="longer than its Content-Length"):
        conn.response_data(b"xyz")
    with pytest.raises(LocalProtocolError, match="longer than its Content-Length"):
        conn.response_file_framing(3)
    assert conn.response_file_framing(2) == (b"", b"")
    assert conn.response_end(0.0) == b""

    conn, req = request()
    conn.response_head(req, 200, [])
    assert conn.response_data(b"") == b""
    assert conn.response_data(b"abc") == b"3\r\nabc\r\n"
    assert conn.response_file_framing(0) == (b"", b"")
    assert conn.response_file_framing(16) == (b"10\r\n", b"\r\n")
    assert conn.response_end(0.0) == b"0\r\n\r\n"

    conn, req = request(b"HEAD")
    conn.response_head(req, 200, [(b"content-length", b"5")])
    assert conn.response_data(b"abc") == b""
    assert conn.response_file_framing(5) is None
    assert conn.response_end(0.0) == b""


def test_a_streamed_body_short_of_its_content_length_cannot_end() -> None:
    conn, req = request()
    conn.response_head(req, 200, [(b"content-length", b"5")])
    conn.response_data(b"abc")
    with pytest.raises(LocalProtocolError, match="shorter than its Content-Length"):
        conn.response_end(0.0)
    assert not conn.keep_alive


# ---------------------------------------------------------------- reading, at the edges


def core(upgrades: frozenset[bytes] = frozenset()) -> H1Connection:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    conn.accepted_upgrades = upgrades
    return conn


def kinds(events: Sequence[object]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_a_fragment_in_the_target_is_not_part_of_the_path_or_query() -> None:
    for target, path, query in ((b"/p?q=1#frag", b"/p", b"q=1"), (b"/p#frag", b"/p", b"")):
        [req, _] = core().receive_data(b"GET " + target + b" HTTP/1.1\r\nhost: a\r\n\r\n", 0.0)
        assert isinstance(req, Request) and (req.raw_path, req.query_string) == (path, query)


def test_an_absolute_form_target_names_the_host_of_an_http_1_0_request_without_one() -> None:
    [req, _] = core().receive_data(b"GET http://example.com/a HTTP/1.0\r\n\r\n", 0.0)
    assert isinstance(req, Request) and req.headers == [(b"host", b"example.com")]


@pytest.mark.parametrize("target", [b"http://", b"http:///a", b"http:/a"])
def test_a_malformed_absolute_target_is_a_400(target: bytes) -> None:
    events = core().receive_data(b"GET " + target + b" HTTP/1.1\r\nhost: a\r\n\r\n", 0.0)
    assert kinds(events) == ["Rejected"]
    assert isinstance(events[0], Rejected) and events[0].status == 400


def test_a_connect_request_goes_to_the_app_and_ends_the_connection() -> None:
    conn = core()
    events = conn.receive_data(
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\ntunnel", 0.0
    )
    assert kinds(events) == ["Request", "EndOfMessage"]
    req = events[0]
    assert isinstance(req, Request)
    assert (req.method, req.raw_path, req.keep_alive) == (b"CONNECT", b"example.com:443", False)
    assert conn.receive_data(b"more", 0.0) == []


def test_an_upgrade_header_without_connection_upgrade_is_no_upgrade() -> None:
    [req, _] = core(frozenset({b"websocket"})).receive_data(
        b"GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\n\r\n", 0.0
    )
    assert isinstance(req, Request) and req.upgrade is None


UPGRADE = b"GET / HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\nupgrade: websocket\r\n"


def test_input_after_an_accepted_upgrade_is_kept_for_the_new_protocol() -> None:
    conn = core(frozenset({b"websocket"}))
    events = conn.receive_data(UPGRADE + b"\r\nframe1", 0.0)
    assert kinds(events) == ["Request"]
    assert conn.receive_data(b"frame2", 0.0) == []
    assert conn.trailing_data == b"frame1frame2"


def test_an_upgrade_with_a_chunked_body_is_declined_and_its_body_read() -> None:
    conn = core(frozenset({b"websocket"}))
    wire = UPGRADE + b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    events = conn.receive_data(wire, 0.0)
    assert kinds(events) == ["Request", "Data", "EndOfMessage"]
    assert isinstance(events[0], Request) and events[0].upgrade is None


def test_a_declined_upgrade_followed_by_part_of_the_next_head() -> None:
    conn = core()
    events = conn.receive_data(UPGRADE + b"\r\nGET /next HT", 0.0)
    assert kinds(events) == ["Request", "EndOfMessage"]
    events = conn.receive_data(b"TP/1.1\r\nhost: a\r\n\r\n", 0.0)
    assert kinds(events) == ["Request", "EndOfMessage"]


@pytest.mark.parametrize("split", [False, True], ids=["one piece", "two pieces"])
def test_an_upgrade_pipelined_behind_a_declined_upgrade_is_decided_alike(split: bool) -> None:
    """A head asking to switch protocols behind a declined one is decided as it would be in a
    piece of its own: declined, both requests are read as HTTP/1.1."""
    conn = core()
    pieces = [UPGRADE + b"\r\n", UPGRADE + b"\r\nGET /3 HTTP/1.1\r\nhost: a\r\n\r\n"]
    events = [e for piece in (pieces if split else [b"".join(pieces)]) for e in conn.receive_data(piece, 0.0)]
    assert kinds(events) == ["Request", "EndOfMessage"] * 3
    assert [e.upgrade for e in events if isinstance(e, Request)] == [None, None, None]


def test_an_upgrade_accepted_behind_a_declined_one_keeps_what_follows_it() -> None:
    """A WebSocket upgrade with a chunked body is declined (its body read as HTTP/1.1); the one
    pipelined behind it switches, and the bytes after its head wait for the new protocol."""
    conn = core(frozenset({b"websocket"}))
    declined = UPGRADE + b"transfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    events = conn.receive_data(declined + UPGRADE + b"\r\nframe", 0.0)
    assert kinds(events) == ["Request", "Data", "EndOfMessage", "Request"]
    first, second = (e for e in events if isinstance(e, Request))
    assert (first.upgrade, second.upgrade) == (None, b"websocket")
    assert conn.trailing_data == b"frame"


def test_a_body_that_breaks_after_its_answer_just_ends_the_connection() -> None:
    """The response was complete before the request body: a chunk size that is not hex then has
    nobody left to answer; the connection closes without a 400."""
    conn = core()
    [req] = conn.receive_data(b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n", 0.0)
    assert isinstance(req, Request)
    conn.response(req, 200, [(b"content-length", b"0")], b"", True, 0.0)
    assert kinds(conn.receive_data(b"zz\r\n", 0.0)) == ["ConnectionClosed"]


def test_an_answer_instead_of_100_continue_starts_the_body_clock() -> None:
    conn = core()
    [req] = conn.receive_data(
        b"POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n", 0.0
    )
    assert isinstance(req, Request) and req.expect_continue
    assert conn.deadline is None or conn.deadline > 0
    conn.response(req, 417, [(b"content-length", b"0")], b"", True, 1.0)
    assert conn.deadline is not None


def test_pipelined_requests_end_their_responses_in_turn() -> None:
    conn = core()
    events = conn.receive_data(b"GET /1 HTTP/1.1\r\nhost: a\r\n\r\nGET /2 HTTP/1.1\r\nhost: a\r\n\r\n", 0.0)
    first, second = (e for e in events if isinstance(e, Request))
    conn.response_head(first, 200, [(b"connection", b"keep-alive"), (b"x-long", b"v" * 300)])
    assert conn.response_end(0.0) == b"0\r\n\r\n"
    assert conn.owed == 1 and conn.keep_alive
    head = conn.response_head(second, 204, [(b"content-length", b"0")])
    assert b"content-length" not in head
    assert conn.response_end(0.0) == b""
