"""The HTTP version of a request, which the HTTP/1.1 core reads from the request line's bytes when
the line is exactly ``METHOD SP target SP HTTP/1.1 CRLF`` at the start of the piece it arrived
in, and asks httptools otherwise: whatever the pieces, the empty lines before a request or the
requests before it, the version must be the one llhttp parsed.

The property runs a bounded number of examples (300: a quick run in the suite); set
WHERRY_FUZZ_EXAMPLES for a longer one."""

from __future__ import annotations

import os

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wherry.proto.events import Rejected, Request
from wherry.proto.http1 import DefaultHeaders, H1Connection, H1Limits

FUZZ = settings(
    max_examples=int(os.environ.get("WHERRY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class Versions:
    """llhttp's own reading, through httptools with nothing of Wherry around it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.seen: list[str] = []

    def on_headers_complete(self) -> None:
        self.seen.append(self.parser.get_http_version())


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"OPTIONS"]))
    target = draw(st.sampled_from([b"/", b"/a", b"/HTTP/1.1", b"/a?HTTP/1.1"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.1"]))
    before = draw(st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"]))
    length = draw(st.sampled_from([b"", b"Content-Length: 3\r\n"]))
    body = b"abc" if length else b""
    return before + method + b" " + target + b" " + version + b"\r\nHost: a\r\n" + length + b"\r\n" + body


@FUZZ
@given(st.lists(requests(), min_size=1, max_size=5), st.lists(st.integers(1, 400), max_size=4))
def test_version_is_the_one_llhttp_parsed(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    points = sorted({c % len(data) for c in cuts} - {0})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    reference = Versions()
    ours: list[str] = []
    for chunk in chunks:
        for event in conn.receive_data(chunk, 0.0):
            if isinstance(event, Request):
                ours.append(event.http_version)
            assert not isinstance(event, Rejected) or event.status != 505
        try:
            reference.parser.feed_data(chunk)
        except httptools.HttpParserError:
            break
    assert ours == reference.seen[: len(ours)]
    assert ours  # the first request always parses


def test_request_after_a_declined_upgrade_has_its_own_version() -> None:
    """A declined upgrade's head and the next request share a piece and a request line but for the
    version: the second is read as the HTTP/1.0 it is."""
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    events = conn.receive_data(
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n"
        b"GET /x HTTP/1.0\r\nHost: a\r\n\r\n",
        0.0,
    )
    versions = [e.http_version for e in events if isinstance(e, Request)]
    assert versions == ["1.1", "1.0"]


def test_each_pipelined_request_has_its_own_version() -> None:
    conn = H1Connection(H1Limits(), DefaultHeaders(), 0.0)
    events = conn.receive_data(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET / HTTP/1.0\r\n\r\n",
        0.0,
    )
    assert [e.http_version for e in events if isinstance(e, Request)] == ["1.0", "1.1", "1.0"]
