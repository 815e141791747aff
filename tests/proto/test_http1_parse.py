"""The HTTP/1.1 core, byte level, no event loop: every case is fed whole, one byte at a time, and with
trailing garbage after it (RFC 9112; the smuggling cases carry the advisory they come from)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from wherry.proto.events import Data, EndOfMessage, H2Preface, Rejected, Request
from wherry.proto.http1 import DefaultHeaders, H1Connection, H1Limits


def summary(events: Sequence[object]) -> list[object]:
    out: list[object] = []
    for e in events:
        if isinstance(e, Request):
            out.append(("request", e.method, e.raw_path, e.query_string, e.http_version))
        elif isinstance(e, Data):
            if out and isinstance(out[-1], tuple) and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + e.data)
            else:
                out.append(("data", e.data))
        elif isinstance(e, EndOfMessage):
            out.append("end")
        elif isinstance(e, Rejected):
            out.append(("rejected", e.status))
        elif isinstance(e, H2Preface):
            out.append("h2")
        else:
            out.append(type(e).__name__)
    return out


def feed(data: bytes, *, step: int | None = None, limits: H1Limits | None = None) -> list[object]:
    conn = H1Connection(limits or H1Limits(), DefaultHeaders(), 0.0)
    events: list[object] = []
    if step is None:
        events.extend(conn.receive_data(data, 0.0))
    else:
        for i in range(0, len(data), step):
            events.extend(conn.receive_data(data[i : i + step], 0.0))
    return summary(events)


GET = ("request", b"GET", b"/", b"", "1.1")
POST = ("request", b"POST", b"/", b"", "1.1")

ACCEPTED: list[tuple[str, bytes, list[object]]] = [
    ("simple GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", [GET, "end"]),
    (
        "query string",
        b"GET /p/q?x=1&y=2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [("request", b"GET", b"/p/q", b"x=1&y=2", "1.1"), "end"],
    ),
    ("HTTP/1.0 without Host", b"GET / HTTP/1.0\r\n\r\n", [("request", b"GET", b"/", b"", "1.0"), "end"]),
    ("HTTP/1.2 served as 1.1 (RFC 9110 §2.5)", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", [GET, "end"]),
    (
        "empty lines before a request (RFC 9112 §2.2)",
        b"\r\n\r\nGET /a HTTP/1.0\r\n\r\n",
        [("request", b"GET", b"/a", b"", "1.0"), "end"],
    ),
    (
        "content-length body",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        [POST, ("data", b"hello"), "end"],
    ),
    (
        "chunked body",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        [POST, ("data", b"hello world"), "end"],
    ),
    (
        "chunk extensions ignored",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n",
        [POST, ("data", b"abc"), "end"],
    ),
    (
        "chunked with trailers",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
        [POST, ("data", b"abc"), "end"],
    ),
    (
        "absolute-form target (RFC 9112 §3.2.2)",
        b"GET http://example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [("request", b"GET", b"/a/b", b"c=d", "1.1"), "end"],
    ),
    (
        "asterisk-form for OPTIONS (RFC 9112 §3.2.4)",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        [("request", b"OPTIONS", b"*", b"", "1.1"), "end"],
    ),
    (
        "pipelined requests",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [("request", b"GET", b"/1", b"", "1.1"), "end", ("request", b"GET", b"/2", b"", "1.1"), "end"],
    ),
    ("obs-text in a value is kept", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x85b\r\n\r\n", [GET, "end"]),
    (
        "declined upgrade keeps body framing",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\nContent-Length: 32\r\n\r\n"
        b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        [POST, ("data", b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"), "end"],
    ),
    (
        "declined upgrade without body",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo"
        b"\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [GET, "end", ("request", b"GET", b"/2", b"", "1.1"), "end"],
    ),
]

REJECTED: list[tuple[str, bytes, int]] = [
    (
        "CL and TE together (RFC 9112 §6.3; CVE-2024-6827)",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "conflicting duplicate Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("Content-Length list form", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    ("non-numeric Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ("signed Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("huge Content-Length", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + b"9" * 40 + b"\r\n\r\n", 400),
    (
        "chunk-size overflow",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 100 + b"\r\n",
        400,
    ),
    ("chunk-size junk", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("chunk-size -1", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
    ("chunk-size 0x10", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x10\r\n", 400),
    ("NUL in chunk size", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\x00\r\n", 400),
    (
        "chunk data without CRLF (CVE-2025-43859)",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxxx__1a\r\n",
        400,
    ),
    ("obs-fold (RFC 9112 §5.2)", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("whitespace before the colon (RFC 9112 §5.1)", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : a\r\n\r\n", 400),
    (
        "space before a header name (CVE-2024-27982)",
        b"GET / HTTP/1.1\r\nHost: a\r\n Content-Length: 3\r\n\r\nabc",
        400,
    ),
    ("NUL in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    ("control byte in a value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x0bb\r\n\r\n", 400),
    ("NUL in a name", b"GET / HTTP/1.1\r\nHost: a\r\nX\x00A: b\r\n\r\n", 400),
    (
        "bare CR in a value (CVE-2023-30589)",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    ("missing Host on HTTP/1.1 (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("duplicate Host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("space in the target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad method bytes", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("unknown method token (RFC 9110 §9.1)", b"FROB / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    ("Host with a space (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ("Host as a list (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    ("Host with userinfo (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    ("Host with a path (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with a bad port (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400),
    (
        "absolute-form with userinfo (RFC 9110 §4.2.4)",
        b"GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        400,
    ),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505),
    ("HTTP/0.9 request line with a version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    ("two spaces before the target (RFC 9112 §3)", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("two spaces before the version (RFC 9112 §3)", b"GET /a  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("two spaces on HTTP/1.0", b"GET  /a HTTP/1.0\r\n\r\n", 400),
    ("HTTP/0.9 request", b"GET /\r\n\r\n", 505),
    (
        "unknown Transfer-Encoding (RFC 9112 §6.1)",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
    ),
    ("chunked not last", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    ("xchunked", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
    (
        "stacked chunked (CVE-2024-1135)",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (
        "vertical tab before chunked (gunicorn #3364)",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("authority-form outside CONNECT", b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk-form outside OPTIONS", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("asterisk followed by a path (RFC 9112 §3.2.4)", b"OPTIONS */a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "a second Transfer-Encoding field naming a coding not implemented",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        501,
    ),
    (
        "unsupported expectation (RFC 9110 §10.1.1)",
        b"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n",
        417,
    ),
]


def first_rejection(result: list[object]) -> int | None:
    for item in result:
        if isinstance(item, tuple) and item[0] == "rejected":
            return int(item[1])
    return None


@pytest.mark.parametrize(("name", "data", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
@pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
def test_accepted(name: str, data: bytes, expected: list[object], step: int | None) -> None:
    """Well-formed requests parse into the same events whatever the segmentation."""
    assert feed(data, step=step) == expected


@pytest.mark.parametrize(("name", "data", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_then_garbage(name: str, data: bytes, expected: list[object]) -> None:
    """Garbage after a complete request never changes what came before it; it is rejected on its own."""
    result = feed(data + b"\x01\x02garbage\r\n\r\n")
    assert result[: len(expected)] == expected
    assert result[len(expected) :] == [("rejected", 400)]


@pytest.mark.parametrize(("name", "data", "status"), REJECTED, ids=[c[0] for c in REJECTED])
@pytest.mark.parametrize("step", [None, 1], ids=["whole", "bytewise"])
def test_rejected(name: str, data: bytes, status: int, step: int | None) -> None:
    """Malformed requests become one Rejected event with the status to answer, and nothing after."""
    result = feed(data, step=step)
    assert first_rejection(result) == status, result
    assert result[-1] == ("rejected", status)
    assert not any(isinstance(i, tuple) and i[0] == "request" and i[2] == b"/admin" for i in result)


@pytest.mark.parametrize(("name", "data", "status"), REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected_then_more(name: str, data: bytes, status: int) -> None:
    """Nothing after a framing error is processed (no request smuggled behind it)."""
    result = feed(data + b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
    assert first_rejection(result) == status
    assert result[-1] == ("rejected", status)
    assert all(not (isinstance(i, tuple) and i[0] == "request" and i[2] == b"/admin") for i in result)


def test_h2_preface_detected_whole_and_bytewise() -> None:
    """The HTTP/2 client preface (RFC 9113 §3.4) is recognised on the first bytes, however split."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    assert feed(preface) == ["h2"]
    assert feed(preface, step=1) == ["h2"]


def test_request_head_limit_trips_on_one_big_header() -> None:
    """A head beyond limit_request_head is answered 431 (RFC 6585 §5), also when it never completes."""
    limits = H1Limits(max_head=1024)
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 2000
    assert feed(big + b"\r\n\r\n", limits=limits) == [("rejected", 431)]
    assert feed(big, limits=limits) == [("rejected", 431)]
    assert feed(big, step=100, limits=limits) == [("rejected", 431)]


def test_request_target_limit() -> None:
    """A request target longer than the head limit is answered 431."""
    limits = H1Limits(max_head=1024)
    assert feed(b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", limits=limits) == [
        ("rejected", 431)
    ]


def test_header_count_limit() -> None:
    """More header fields than limit_request_headers is answered 431."""
    limits = H1Limits(max_headers=10)
    head = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10)) + b"\r\n"
    assert feed(head, limits=limits) == [("rejected", 431)]
    ok = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(9)) + b"\r\n"
    assert feed(ok, limits=limits) == [GET, "end"]


def test_body_limit_by_content_length() -> None:
    """A declared Content-Length above limit_request_body is answered 413 before any body is read."""
    limits = H1Limits(max_body=10)
    assert feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits=limits) == [
        ("rejected", 413)
    ]


def test_body_limit_by_chunks() -> None:
    """A chunked body that grows past limit_request_body is cut with 413."""
    limits = H1Limits(max_body=10)
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
    )
    result = feed(data, limits=limits)
    assert result[0] == POST
    assert result[-1] == ("rejected", 413)


def test_eof_mid_request_is_rejected() -> None:
    """The peer closing in the middle of a request is not a complete request."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", 0.0)
    assert summary(conn.receive_data(b"", 0.0)) == [("rejected", 400)]


def test_eof_between_requests() -> None:
    """receive_data(b"") between requests is a clean close."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    assert summary(conn.receive_data(b"", 0.0)) == ["ConnectionClosed"]


def test_headers_are_lowercased_and_ordered() -> None:
    """ASGI header names are lowercased; order and duplicates are kept; trailing OWS is dropped."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    events = conn.receive_data(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-One: 1  \r\nx-two: 2\r\nX-One: 3\r\n\r\n", 0.0
    )
    request = events[0]
    assert isinstance(request, Request)
    assert request.headers == [(b"host", b"a"), (b"x-one", b"1"), (b"x-two", b"2"), (b"x-one", b"3")]


def test_keep_alive_flags() -> None:
    """HTTP/1.0 closes unless keep-alive is asked; HTTP/1.1 keeps alive unless close is asked."""
    cases = [
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", False),
    ]
    for data, keep_alive in cases:
        conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
        request = conn.receive_data(data, 0.0)[0]
        assert isinstance(request, Request)
        assert request.keep_alive is keep_alive, data


@pytest.mark.parametrize(
    "host", [b"a", b"a.example:8080", b"[2001:db8::1]:443", b"127.0.0.1", b"", b"xn--bcher-kva.example"]
)
@pytest.mark.parametrize("step", [None, 1])
def test_valid_host_values_are_accepted(host: bytes, step: int | None) -> None:
    """RFC 9112 §3.2: a Host value is uri-host [":" port]; an empty one is allowed."""
    data = b"GET / HTTP/1.1\r\nHost: %b\r\n\r\n" % host
    assert feed(data, step=step) == [GET, "end"]


@pytest.mark.parametrize("step", [None, 1])
@pytest.mark.parametrize(
    ("head", "authority"),
    [
        (b"GET http://a.example/p?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n", b"a.example"),
        (b"GET http://a.example:8080 HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", b"a.example:8080"),
        (b"GET https://[2001:db8::1]:8443/p HTTP/1.1\r\nHost: x\r\n\r\n", b"[2001:db8::1]:8443"),
    ],
)
def test_absolute_form_authority_is_the_host(head: bytes, authority: bytes, step: int | None) -> None:
    """RFC 9112 §3.2.2: with an absolute-form target the server ignores the Host field and uses
    the target's authority: the one host header the app sees is the authority."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    events: list[object] = []
    chunks = [head] if step is None else [head[i : i + 1] for i in range(len(head))]
    for chunk in chunks:
        events.extend(conn.receive_data(chunk, 0.0))
    (request,) = [e for e in events if isinstance(e, Request)]
    assert [value for name, value in request.headers if name == b"host"] == [authority]


# ---------------------------------------------------------------- minimum body rate

HEAD_100 = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
# (name, head, pieces as (time, bytes), the deadline after the last piece, its verdict). The rate
# is 10 bytes/s over a 1-second window: 10 bytes within a second of the last window's end.
BODY_RATES: list[tuple[str, bytes, list[tuple[float, bytes]], float, str]] = [
    ("kept up", HEAD_100, [(0.5, b"x" * 6), (0.9, b"x" * 6), (1.5, b"x" * 3)], 1.9, "slower"),
    ("trickled", HEAD_100, [(t / 5, b"x") for t in range(1, 5)], 1.0, "slower"),
    ("window restarted", HEAD_100, [(0.1, b"x" * 10), (1.0, b"x" * 10)], 2.0, "slower"),
    ("chunk framing earns nothing", CHUNKED, [(0.2, b"1;" + b"e" * 40), (0.6, b"\r\nx\r\n")], 1.0, "slower"),
    ("one burst", HEAD_100, [(0.5, b"x" * 20)], 1.5, "slower"),
]


@pytest.mark.parametrize(
    ("name", "head", "pieces", "deadline", "verdict"), BODY_RATES, ids=[c[0] for c in BODY_RATES]
)
@pytest.mark.parametrize("step", [None, 1])
def test_min_body_rate_is_kept_over_each_window(
    name: str, head: bytes, pieces: list[tuple[float, bytes]], deadline: float, verdict: str, step: int | None
) -> None:
    """--min-body-rate: a body must bring rate x window bytes within each window (a new one starts
    when it did); past that, 408. Only body bytes count (not chunk framing), fed whole or one
    byte at a time."""
    limits = H1Limits(body_timeout=30.0, min_body_rate=10.0, body_rate_window=1.0)
    conn = H1Connection(limits, DefaultHeaders(), 0.0)
    conn.receive_data(head, 0.0)
    assert conn.deadline == 1.0
    for when, data in pieces:
        for i in range(0, len(data), step or len(data)):
            events = conn.receive_data(data[i : i + (step or len(data))], when)
            assert not any(isinstance(e, Rejected) for e in events)
    assert conn.deadline == pytest.approx(deadline)
    rejected = conn.timed_out()
    assert rejected is not None and rejected.status == 408 and verdict in rejected.detail


def test_without_min_body_rate_only_the_gap_between_pieces_counts() -> None:
    """Off by default: a trickled body meets only timeout_request_body between two pieces."""
    conn = H1Connection(H1Limits(body_timeout=30.0), DefaultHeaders(), 0.0)
    conn.receive_data(HEAD_100, 0.0)
    for tenth in range(1, 50):
        conn.receive_data(b"x", tenth / 10)
    assert conn.deadline == pytest.approx(4.9 + 30.0)
    rejected = conn.timed_out()
    assert rejected is not None and "not received in time" in rejected.detail


def test_field_names_are_lowercased_beyond_the_cache_of_names_seen() -> None:
    """Names are lowered through a bounded cache of the names seen: past its bound (more distinct
    names than it holds, across requests) every name is still lowercased, and a new spelling of a
    name seen before is lowered too."""
    conn = H1Connection(H1Limits(max_headers=200), DefaultHeaders(), 0.0)
    for batch in range(8):
        fields = b"".join(b"X-Name-%d-%d: v\r\n" % (batch, i) for i in range(160))
        events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nHOST-ish: 1\r\n" + fields + b"\r\n", 0.0)
        request = events[0]
        assert isinstance(request, Request)
        names = [name for name, _value in request.headers]
        assert names[:2] == [b"host", b"host-ish"]
        assert names[2:] == [b"x-name-%d-%d" % (batch, i) for i in range(160)]


def test_trailing_whitespace_is_not_part_of_a_value() -> None:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    events = conn.receive_data(b"GET / HTTP/1.1\r\nHost: a \t\r\nX-A: b\t \r\nX-B: \r\nX-C: c d\r\n\r\n", 0.0)
    request = events[0]
    assert isinstance(request, Request)
    assert request.headers == [(b"host", b"a"), (b"x-a", b"b"), (b"x-b", b""), (b"x-c", b"c d")]


def test_a_line_that_is_no_request_line_is_a_400_not_a_501() -> None:
    """RFC 9112 §3: an invalid request line is a 400; an unknown method in a well-formed line is a
    501 (above). Judged on the whole line, when the piece that failed holds it."""
    assert feed(b"THIS IS NOT HTTP AT ALL\r\n\r\n") == [("rejected", 400)]
    assert feed(b"FROB /a HTTP/1.1\r\nHost: a\r\n\r\n") == [("rejected", 501)]
    assert feed(b"FROB /a\r\n\r\n") == [("rejected", 400)]


def test_a_long_request_line_arriving_in_pieces_is_judged() -> None:
    """The line's shape is checked on the first bytes kept of a head that arrives in pieces."""
    target = b"/" + b"a" * 300
    assert feed(b"GET " + target + b"  HTTP/1.1\r\nHost: a\r\n\r\n", step=7) == [("rejected", 400)]
    assert feed(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", step=7)[0] == (
        "request",
        b"GET",
        target,
        b"",
        "1.1",
    )


def test_a_request_line_longer_than_what_is_kept_is_read_as_llhttp_reads_it() -> None:
    """Past the first bytes kept of a head arriving in pieces the line is not judged (limits.md)."""
    target = b"/" + b"a" * 600
    events = feed(b"GET " + target + b"  HTTP/1.1\r\nHost: a\r\n\r\n", step=7)
    assert events == [("request", b"GET", target, b"", "1.1"), "end"]


def test_host_values_are_checked_beyond_the_cache_of_hosts_seen() -> None:
    """Valid Host values are remembered in a bounded set: past its bound (more distinct hosts than
    it holds) a new host is still checked, a valid one served and an invalid one refused."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    for i in range(1100):
        [request, _end] = conn.receive_data(b"GET / HTTP/1.1\r\nHost: cache-%d.example\r\n\r\n" % i, 0.0)
        assert isinstance(request, Request) and request.headers == [(b"host", b"cache-%d.example" % i)]
    assert feed(b"GET / HTTP/1.1\r\nHost: past-the-cache.example\r\n\r\n") == [GET, "end"]
    assert feed(b"GET / HTTP/1.1\r\nHost: past the cache\r\n\r\n") == [("rejected", 400)]


def test_reading_resumed_in_a_head_restarts_its_clock() -> None:
    """A paused connection blames the peer for nothing; resumed while a head is arriving, the head
    has the whole head timeout again from then."""
    conn = H1Connection(H1Limits(head_timeout=10.0), DefaultHeaders(), 0.0)
    assert conn.receive_data(b"GET / HTTP/1.1\r\nHo", 1.0) == []
    assert conn.deadline == 11.0
    conn.pause_reading()
    assert conn.deadline is None
    conn.resume_reading(20.0)
    assert conn.deadline == 30.0
