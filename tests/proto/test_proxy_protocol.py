"""The PROXY protocol parser (HAProxy's proxy-protocol.txt, versions 1 and 2), byte by byte.

Every case is fed whole, one byte at a time, and followed by the bytes of the next protocol (what
comes after a header is never part of it). Malformed headers raise ``ProxyProtocolError``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wherry.proto.proxy_protocol import (
    PP2_CLIENT_SSL,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_SSL,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    v1_header,
    v2_header,
)

TRAILING = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([command, family]) + len(body).to_bytes(2, "big") + body


def feed_whole(data: bytes) -> tuple[ProxyHeader | None, bytes]:
    parser = ProxyHeaderParser()
    header = parser.feed(data)
    return header, parser.rest


def feed_bytes(data: bytes) -> tuple[ProxyHeader | None, bytes]:
    parser = ProxyHeaderParser()
    for index in range(len(data)):
        header = parser.feed(data[index : index + 1])
        if header is not None:
            return header, parser.rest + data[index + 1 :]
    return None, b""


FEEDERS = {"whole": feed_whole, "byte_by_byte": feed_bytes}


@pytest.fixture(params=sorted(FEEDERS))
def feed(request: pytest.FixtureRequest) -> Iterator[object]:
    yield FEEDERS[request.param]


VALID = [
    # (case, bytes, version, command, family, source, destination)
    (
        "v1 tcp4",
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        1,
        "PROXY",
        "TCP4",
        ("192.0.2.1", 56324),
        ("198.51.100.2", 443),
    ),
    (
        "v1 tcp6",
        b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n",
        1,
        "PROXY",
        "TCP6",
        ("2001:db8::1", 65535),
        ("2001:db8::2", 0),
    ),
    (
        "v1 tcp6 longest line (107 bytes)",
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        b" 65535 65535\r\n",
        1,
        "PROXY",
        "TCP6",
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
    ),
    ("v1 unknown", b"PROXY UNKNOWN\r\n", 1, "PROXY", "UNKNOWN", None, None),
    (
        "v1 unknown with addresses ignored",
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        1,
        "PROXY",
        "UNKNOWN",
        None,
        None,
    ),
    (
        "v2 tcp4",
        v2_header(("192.0.2.1", 56324), ("198.51.100.2", 443)),
        2,
        "PROXY",
        "TCP4",
        ("192.0.2.1", 56324),
        ("198.51.100.2", 443),
    ),
    (
        "v2 tcp6",
        v2_header(("2001:db8::1", 1), ("2001:db8::2", 2)),
        2,
        "PROXY",
        "TCP6",
        ("2001:db8::1", 1),
        ("2001:db8::2", 2),
    ),
    (
        "v2 with TLVs",
        v2_header(("192.0.2.1", 1), ("192.0.2.2", 2), [(PP2_TYPE_AUTHORITY, b"example.com")]),
        2,
        "PROXY",
        "TCP4",
        ("192.0.2.1", 1),
        ("192.0.2.2", 2),
    ),
    ("v2 local (health check)", v2_header(None, None, local=True), 2, "LOCAL", "UNSPEC", None, None),
    (
        "v2 local ignores its addresses",
        v2(0x20, 0x11, bytes(12)),
        2,
        "LOCAL",
        "TCP4",
        None,
        None,
    ),
    ("v2 proxy unspec", v2(0x21, 0x00, b""), 2, "PROXY", "UNSPEC", None, None),
    (
        "v2 unix",
        v2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")),
        2,
        "PROXY",
        "UNIX",
        ("/run/a.sock", None),
        ("/run/b.sock", None),
    ),
]


@pytest.mark.parametrize(
    ("case", "data", "version", "command", "family", "source", "destination"),
    VALID,
    ids=[v[0] for v in VALID],
)
def test_valid_headers(
    feed: object,
    case: str,
    data: bytes,
    version: int,
    command: str,
    family: str,
    source: object,
    destination: object,
) -> None:
    """A complete header gives its addresses; the bytes after it are left for HTTP (spec §2.1, §2.2)."""
    header, rest = feed(data + TRAILING)  # type: ignore[operator]
    assert header is not None
    assert (header.version, header.command, header.family) == (version, command, family)
    assert (header.source, header.destination) == (source, destination)
    assert rest == TRAILING


def test_incomplete_header_waits_for_more() -> None:
    """Until the header is whole the parser returns None and consumes nothing it cannot use."""
    for data in (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r",
        v2_header(("192.0.2.1", 1), ("192.0.2.2", 2))[:-1],
    ):
        parser = ProxyHeaderParser()
        assert parser.feed(data) is None


def test_tlvs_are_kept_and_ssl_is_read() -> None:
    """Version 2 TLVs are returned; PP2_TYPE_SSL with PP2_CLIENT_SSL says the client used TLS."""
    ssl_tlv = (PP2_TYPE_SSL, bytes([PP2_CLIENT_SSL]) + bytes(4))
    header, _ = feed_whole(
        v2_header(("192.0.2.1", 1), ("192.0.2.2", 2), [(PP2_TYPE_AUTHORITY, b"a.example"), ssl_tlv])
    )
    assert header is not None
    assert header.tlvs == [(PP2_TYPE_AUTHORITY, b"a.example"), ssl_tlv]
    assert header.ssl
    plain, _ = feed_whole(v2_header(("192.0.2.1", 1), ("192.0.2.2", 2)))
    assert plain is not None and not plain.ssl


def test_v1_builder_round_trips() -> None:
    """The sender's helper writes what the parser reads."""
    header, rest = feed_whole(v1_header(("192.0.2.1", 5), ("192.0.2.2", 6)))
    assert header is not None and header.source == ("192.0.2.1", 5) and rest == b""


MALFORMED = [
    ("plain HTTP", b"GET / HTTP/1.1\r\n\r\n"),
    ("lowercase proxy", b"proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n"),
    ("no space after PROXY", b"PROXYTCP4 192.0.2.1 192.0.2.2 1 2\r\n"),
    ("unknown family", b"PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n"),
    ("missing port", b"PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n"),
    ("extra field", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n"),
    ("double space", b"PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n"),
    ("ipv6 in tcp4", b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"),
    ("ipv4 in tcp6", b"PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n"),
    ("leading zero in address", b"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n"),
    ("host name", b"PROXY TCP4 example.com 192.0.2.2 1 2\r\n"),
    ("port too large", b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n"),
    ("port with leading zero", b"PROXY TCP4 192.0.2.1 192.0.2.2 080 2\r\n"),
    ("signed port", b"PROXY TCP4 192.0.2.1 192.0.2.2 +80 2\r\n"),
    ("non-ascii digit", "PROXY TCP4 192.0.2.1 192.0.2.2 ٣ 2\r\n".encode()),
    ("bare LF", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n"),
    ("bare CR inside", b"PROXY TCP4 192.0.2.1\r192.0.2.2 1 2\r\n"),
    ("longer than 107 bytes", b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n"),
    ("no CRLF within 107 bytes", b"PROXY TCP4 " + b"1" * 200),
    ("v2 bad signature", b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + bytes(12)),
    ("v2 version 1", v2(0x11, 0x11, bytes(12))),
    ("v2 version 3", v2(0x31, 0x11, bytes(12))),
    ("v2 unknown command", v2(0x22, 0x11, bytes(12))),
    ("v2 udp", v2(0x21, 0x12, bytes(12))),
    ("v2 unknown family", v2(0x21, 0x41, bytes(12))),
    ("v2 tcp4 short address block", v2(0x21, 0x11, bytes(11))),
    ("v2 tcp6 short address block", v2(0x21, 0x21, bytes(12))),
    ("v2 truncated TLV header", v2(0x21, 0x11, bytes(12) + b"\x02\x00")),
    ("v2 TLV longer than the header", v2(0x21, 0x11, bytes(12) + b"\x02\x00\x09abc")),
]


@pytest.mark.parametrize(("case", "data"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_headers_are_errors(feed: object, case: str, data: bytes) -> None:
    """Anything but an exact header is refused (the connection is then closed, spec §2)."""
    with pytest.raises(ProxyProtocolError):
        feed(data + TRAILING)  # type: ignore[operator]


def test_end_of_input_before_the_header_is_an_error() -> None:
    """``feed(b"")`` is the end of input: before a whole header it is an error."""
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 ") is None
    with pytest.raises(ProxyProtocolError, match="closed"):
        parser.feed(b"")


def test_nothing_is_read_after_the_header() -> None:
    """Once the header is read the parser takes no more bytes: they belong to HTTP."""
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"PROXY UNKNOWN\r\n")


def test_error_is_raised_as_soon_as_the_first_bytes_cannot_match() -> None:
    """A client speaking plain HTTP to a PROXY listener is refused on its first bytes, without
    waiting for 107 of them."""
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        parser.feed(b"G")


def test_a_header_shows_its_version_command_family_and_endpoints() -> None:
    header, _ = feed_whole(v1_header(("192.0.2.1", 5000), ("192.0.2.2", 443)))
    assert repr(header) == "ProxyHeader(v1, PROXY, TCP4, ('192.0.2.1', 5000) -> ('192.0.2.2', 443))"
    local, _ = feed_whole(v2_header(None, None, local=True))
    assert repr(local) == "ProxyHeader(v2, LOCAL, UNSPEC, None -> None)"
