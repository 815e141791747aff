"""Proxy headers: X-Forwarded-For and X-Forwarded-Proto are believed only from trusted peers.

The first half checks ``TrustedHosts`` and ``apply_proxy_headers`` from tables; the second half
sends the headers over real sockets (TCP from 127.0.0.1 and ::1, and a Unix socket) and reads the
scope back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer, exchange
from wherry.asgi.proxy_headers import (
    ProxyView,
    TrustedHosts,
    apply_proxy_headers,
    parse_forwarded,
    parse_forwarded_node,
)

Serve = Callable[..., RunningServer]
PEER = ("127.0.0.1", 50000)

# ----------------------------------------------------------------------------------- TrustedHosts

TRUST_TABLE = [
    # (forwarded_allow_ips, host asked about, trusted?)
    ("127.0.0.1", "127.0.0.1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("127.0.0.1, 10.0.0.1", "10.0.0.1", True),
    (" 10.0.0.1 ,127.0.0.1 ", "127.0.0.1", True),
    ("127.0.0.0/8", "127.200.0.9", True),
    ("127.0.0.0/8", "128.0.0.1", False),
    ("10.1.2.3/8", "10.9.9.9", True),  # host bits set in the network are accepted
    ("*", "127.0.0.1", True),
    ("*", "203.0.113.9", True),
    ("*", "unix", True),
    ("::1", "::1", True),
    ("::1", "0:0:0:0:0:0:0:1", True),  # IPv6 text is compared normalised
    ("[::1]", "::1", True),
    ("2001:DB8::1", "2001:db8::1", True),
    ("2001:db8::/32", "2001:db8:ffff::1", True),
    ("2001:db8::/32", "2001:db9::1", False),
    ("127.0.0.1", "::ffff:127.0.0.1", True),  # IPv4-mapped peers of a dual-stack socket
    ("127.0.0.0/8", "::ffff:127.0.0.5", True),
    ("::ffff:0:0/96", "::ffff:127.0.0.5", True),
    ("::ffff:127.0.0.1", "::ffff:127.0.0.1", True),
    ("::1", "127.0.0.1", False),
    ("unix", "unix", True),
    ("UNIX", "unix", True),
    ("127.0.0.1", "unix", False),
    ("unix", "127.0.0.1", False),
    ("", "127.0.0.1", False),
    ("127.0.0.1", "", False),
    ("127.0.0.1", "not-an-address", False),
    ("127.0.0.1", "127.0.0.1:80", False),
]


@pytest.mark.parametrize(("spec", "host", "expected"), TRUST_TABLE)
def test_trusted_hosts_table(spec: str, host: str, expected: bool) -> None:
    """--forwarded-allow-ips holds addresses, CIDR networks, '*' and 'unix' (uvicorn-compatible)."""
    trusted = TrustedHosts(spec)
    assert (host in trusted) is expected
    assert (host in trusted) is expected  # the second answer comes from the cache


def test_trusted_hosts_from_list_and_none() -> None:
    """The option may be given as a list, and None trusts nobody."""
    assert "10.0.0.1" in TrustedHosts(["10.0.0.1", "127.0.0.1"])
    assert "127.0.0.1" not in TrustedHosts(None)
    assert None not in TrustedHosts("127.0.0.1")


def test_trusted_hosts_warns_about_items_that_never_match(caplog: pytest.LogCaptureFixture) -> None:
    """A host name or a typo in --forwarded-allow-ips is reported, not silently kept."""
    with caplog.at_level(logging.WARNING, logger="wherry.error"):
        trusted = TrustedHosts("localhost, 10.0.0.300, 127.0.0.1")
    assert "localhost" not in trusted
    assert "127.0.0.1" in trusted
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'localhost'" in warned and "'10.0.0.300'" in warned


# --------------------------------------------------------------------------- parse_forwarded_node

NODE_TABLE = [
    ("192.0.2.1", ("192.0.2.1", 0)),
    ("192.0.2.1:8080", ("192.0.2.1", 8080)),
    ("2001:DB8::1", ("2001:db8::1", 0)),
    ("[2001:db8::1]", ("2001:db8::1", 0)),
    ("[::1]:80", ("::1", 80)),
    ("unknown", None),
    ("_hidden", None),  # RFC 7239 §6.3 obfuscated identifier
    ("example.com", None),
    ("192.0.2.1:", None),
    ("192.0.2.1:http", None),
    ("192.0.2.1:99999", None),
    ("192.0.2.1:٣", None),  # a non-ASCII digit is not a port
    ("[::1", None),
    ("[::1]80", None),
    ("[::1]:", None),
    ("010.0.0.1", None),  # leading zeros are ambiguous (octal in some parsers)
    ("fe80::1%eth0", None),  # a zone id names an interface of the proxy, not the client
    ("fe80::1%\x9b31m", None),
    ("1.2.3.4\x9b", None),
    ("1.2.3.4.5", None),
]


@pytest.mark.parametrize(("text", "expected"), NODE_TABLE)
def test_forwarded_node_table(text: str, expected: tuple[str, int] | None) -> None:
    """An X-Forwarded-For element is an IP address with an optional port, or nothing usable."""
    assert parse_forwarded_node(text) == expected


# ---------------------------------------------------------------------------- apply_proxy_headers

H = list[tuple[bytes, bytes]]


def xff(*values: str) -> H:
    return [(b"x-forwarded-for", v.encode("latin-1")) for v in values]


def xfp(*values: str) -> H:
    return [(b"x-forwarded-proto", v.encode("latin-1")) for v in values]


APPLY_TABLE: list[tuple[str, str, H, tuple[str, int] | None, str]] = [
    # (case, forwarded_allow_ips, headers, client, scheme)
    ("no headers", "127.0.0.1", [], PEER, "http"),
    ("one address", "127.0.0.1", xff("203.0.113.7"), ("203.0.113.7", 0), "http"),
    ("right-most untrusted", "127.0.0.1", xff("198.51.100.1, 203.0.113.7"), ("203.0.113.7", 0), "http"),
    (
        "trusted hops are skipped",
        "127.0.0.1, 10.0.0.0/8",
        xff("203.0.113.7, 10.0.0.2, 10.0.0.3"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "a spoofed left part is ignored",
        "127.0.0.1, 10.0.0.0/8",
        xff("192.0.2.66, 203.0.113.7, 10.0.0.2"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "several lines are one list",
        "127.0.0.1, 10.0.0.0/8",
        xff("203.0.113.7", "10.0.0.2"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "several lines keep their order",
        "127.0.0.1, 10.0.0.0/8",
        xff("10.0.0.2", "203.0.113.7"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "lines and commas mixed",
        "127.0.0.1, 10.0.0.0/8",
        xff("192.0.2.66, 203.0.113.7", "10.0.0.2"),
        ("203.0.113.7", 0),
        "http",
    ),
    ("all trusted: left-most", "127.0.0.1, 10.0.0.0/8", xff("10.0.0.9, 10.0.0.2"), ("10.0.0.9", 0), "http"),
    ("'*': left-most", "*", xff("203.0.113.7, 198.51.100.1"), ("203.0.113.7", 0), "http"),
    ("IPv6 element", "127.0.0.1", xff("2001:DB8::7"), ("2001:db8::7", 0), "http"),
    (
        "IPv6 trusted hop",
        "127.0.0.1, 2001:db8::/32",
        xff("203.0.113.7, 2001:db8::1"),
        ("203.0.113.7", 0),
        "http",
    ),
    ("port kept", "127.0.0.1", xff("203.0.113.7:5678"), ("203.0.113.7", 5678), "http"),
    ("bracketed IPv6 with port", "127.0.0.1", xff("[::1]:80"), ("::1", 80), "http"),
    (
        "trust is checked without the port",
        "127.0.0.1, 10.0.0.0/8",
        xff("203.0.113.7, 10.0.0.2:4444"),
        ("203.0.113.7", 0),
        "http",
    ),
    ("unknown: the peer stays", "127.0.0.1", xff("unknown"), PEER, "http"),
    ("garbage at the right stops the walk", "127.0.0.1", xff("203.0.113.7, unknown"), PEER, "http"),
    (
        "garbage left of the client is not reached",
        "127.0.0.1",
        xff("unknown, 203.0.113.7"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "garbage left of trusted hops: the last address walked",
        "127.0.0.1, 10.0.0.0/8",
        xff("unknown, 10.0.0.2"),
        ("10.0.0.2", 0),
        "http",
    ),
    ("'*' and garbage on the left", "*", xff("unknown, 203.0.113.7"), ("203.0.113.7", 0), "http"),
    ("empty value", "127.0.0.1", xff(""), PEER, "http"),
    (
        "empty elements are ignored (RFC 9110 §5.6.1.2)",
        "127.0.0.1",
        xff(" , ,203.0.113.7, "),
        ("203.0.113.7", 0),
        "http",
    ),
    ("an empty line is ignored", "127.0.0.1", xff("203.0.113.7", ""), ("203.0.113.7", 0), "http"),
    ("obs-text never becomes a client", "127.0.0.1", xff("203.0.113.7\x9b[31m"), PEER, "http"),
    ("host name", "127.0.0.1", xff("evil.example"), PEER, "http"),
    ("bad port", "127.0.0.1", xff("203.0.113.7:99999"), PEER, "http"),
    # X-Forwarded-Proto
    ("https", "127.0.0.1", xfp("https"), PEER, "https"),
    ("case and spaces", "127.0.0.1", xfp(" HTTPS "), PEER, "https"),
    ("wss is https", "127.0.0.1", xfp("wss"), PEER, "https"),
    ("ws is http", "127.0.0.1", xfp("ws"), PEER, "http"),
    ("unknown proto ignored", "127.0.0.1", xfp("ftp"), PEER, "http"),
    ("empty proto ignored", "127.0.0.1", xfp(""), PEER, "http"),
    ("list: the right-most, written by the peer", "127.0.0.1", xfp("https, http"), PEER, "http"),
    ("lines: the right-most", "127.0.0.1", xfp("http", "https"), PEER, "https"),
    (
        "paired with the chosen client",
        "127.0.0.1, 10.0.0.0/8",
        xff("203.0.113.7, 10.0.0.2") + xfp("https, http"),
        ("203.0.113.7", 0),
        "https",
    ),
    (
        "paired: a spoofed proto left of the client is not used",
        "127.0.0.1",
        xff("192.0.2.66, 203.0.113.7") + xfp("https, http"),
        ("203.0.113.7", 0),
        "http",
    ),
    (
        "counts differ: the right-most",
        "127.0.0.1, 10.0.0.0/8",
        xff("203.0.113.7, 10.0.0.2") + xfp("https"),
        ("203.0.113.7", 0),
        "https",
    ),
    ("both headers", "127.0.0.1", xff("203.0.113.7") + xfp("https"), ("203.0.113.7", 0), "https"),
    (
        "tab and space are OWS",
        "127.0.0.1, 10.0.0.0/8",
        xff("\t203.0.113.7 \t,\t10.0.0.2 ") + xfp("\thttps "),
        ("203.0.113.7", 0),
        "https",
    ),
]

# Bytes that str.strip() takes for whitespace but RFC 9110 §5.6.3 does not: optional whitespace is
# SP and HTAB only, so an element carrying one of these is not an address, a scheme, a host or a
# prefix. HTTP/1.1 (llhttp) refuses the C0 ones in a field value; \x85 and \xa0 are obs-text and
# pass, and HTTP/2 lets all of them through.
NOT_OWS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0"]
TRUST_HOPS = "127.0.0.1, 10.0.0.0/8"


def _not_ows_applies(c: str) -> list[tuple[str, str, H, tuple[str, int] | None, str]]:
    name = repr(c)[1:-1]
    return [
        (f"{name} after an address", TRUST_HOPS, xff(f"203.0.113.7{c}"), PEER, "http"),
        (f"{name} before an address", TRUST_HOPS, xff(f"{c}203.0.113.7"), PEER, "http"),
        (f"{name} after a port", TRUST_HOPS, xff(f"203.0.113.7:80{c}"), PEER, "http"),
        (f"{name} after a trusted hop", TRUST_HOPS, xff(f"203.0.113.7, 10.0.0.2{c}"), PEER, "http"),
        (f"{name} after a proto", TRUST_HOPS, xfp(f"https{c}"), PEER, "http"),
    ]


APPLY_TABLE += [case for c in NOT_OWS for case in _not_ows_applies(c)]


@pytest.mark.parametrize(
    ("spec", "headers", "client", "scheme"),
    [case[1:] for case in APPLY_TABLE],
    ids=[case[0] for case in APPLY_TABLE],
)
def test_apply_proxy_headers_table(
    spec: str, headers: H, client: tuple[str, int] | None, scheme: str
) -> None:
    """The client is the right-most X-Forwarded-For address that is not a trusted proxy."""
    assert apply_proxy_headers(headers, PEER, "http", TrustedHosts(spec)) == (client, scheme)


def test_unknown_proto_keeps_https() -> None:
    """An unusable X-Forwarded-Proto leaves the connection's own scheme."""
    assert apply_proxy_headers(xfp("gopher"), PEER, "https", TrustedHosts("*")) == (PEER, "https")


def test_unix_peer_without_client() -> None:
    """A Unix-socket peer has no client address until X-Forwarded-For names one."""
    trusted = TrustedHosts("unix")
    assert apply_proxy_headers([], None, "http", trusted) == (None, "http")
    assert apply_proxy_headers(xff("unknown"), None, "http", trusted) == (None, "http")
    client = ("203.0.113.7", 0)
    assert apply_proxy_headers(xff("203.0.113.7"), None, "http", trusted) == (client, "http")


# ---------------------------------------------------------------------------- over real sockets


def scope_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200
    info: dict[str, Any] = json.loads(response.headers["x-scope"])
    return info


def get_scope(server: RunningServer, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return scope_of(httpx.get(server.url + "/", headers=headers))


SPOOF = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def test_trusted_peer_sets_client_and_scheme(serve: Serve) -> None:
    """The default --forwarded-allow-ips (127.0.0.1) trusts a local proxy's X-Forwarded-*."""
    info = get_scope(serve(apps.echo), SPOOF)
    assert info["client"] == ["203.0.113.7", 0]
    assert info["scheme"] == "https"


def test_untrusted_peer_headers_ignored(serve: Serve) -> None:
    """X-Forwarded-* from a peer outside --forwarded-allow-ips cannot spoof the client or scheme."""
    info = get_scope(serve(apps.echo, forwarded_allow_ips="10.0.0.1"), SPOOF)
    assert info["client"][0] == "127.0.0.1"
    assert info["client"][1] != 0
    assert info["scheme"] == "http"
    # The headers themselves still reach the application untouched.
    assert ["x-forwarded-for", "203.0.113.7"] in info["headers"]


def test_proxy_headers_disabled(serve: Serve) -> None:
    """--no-proxy-headers ignores X-Forwarded-* even from a trusted peer."""
    info = get_scope(serve(apps.echo, proxy_headers=False, forwarded_allow_ips="*"), SPOOF)
    assert info["client"][0] == "127.0.0.1"
    assert info["scheme"] == "http"


@pytest.mark.parametrize("spec", ["127.0.0.0/8", "*", "10.0.0.1,127.0.0.1"])
def test_trusted_by_network_or_wildcard(serve: Serve, spec: str) -> None:
    """A CIDR network, '*' or a list item trusts the peer."""
    info = get_scope(serve(apps.echo, forwarded_allow_ips=spec), SPOOF)
    assert info["client"] == ["203.0.113.7", 0]
    assert info["scheme"] == "https"


def test_several_lines_and_lists_over_the_wire(serve: Serve) -> None:
    """Several X-Forwarded-For lines are one list (RFC 9110 §5.3); trusted hops are skipped."""
    server = serve(apps.echo, forwarded_allow_ips="127.0.0.1, 10.0.0.0/8")
    headers = [
        ("X-Forwarded-For", "192.0.2.66, 203.0.113.7"),
        ("X-Forwarded-For", "10.0.0.2"),
        ("X-Forwarded-For", "10.0.0.3"),
    ]
    assert get_scope(server, headers)["client"] == ["203.0.113.7", 0]
    all_trusted = [("X-Forwarded-For", "10.0.0.9, 10.0.0.2")]
    assert get_scope(server, all_trusted)["client"] == ["10.0.0.9", 0]


@pytest.mark.parametrize(
    ("value", "client"),
    [
        (b"unknown", None),
        (b"", None),
        (b"203.0.113.7:5678", ["203.0.113.7", 5678]),
        (b"[::1]:80", ["::1", 80]),
        (b"203.0.113.7, unknown", None),
        (b"203.0.113.7\x9b[31m", None),
    ],
)
def test_garbage_forwarded_for_over_the_wire(serve: Serve, value: bytes, client: Any) -> None:
    """An X-Forwarded-For element that is no address never becomes the client; the peer stays."""
    server = serve(apps.echo)
    raw = exchange(
        server,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: " + value + b"\r\nConnection: close\r\n\r\n",
    )
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200 ")
    line = next(x for x in head.split("\r\n") if x.startswith("x-scope:"))
    info = json.loads(line.partition(":")[2])
    if client is None:
        assert info["client"][0] == "127.0.0.1" and info["client"][1] != 0
    else:
        assert info["client"] == client


@pytest.mark.parametrize("proto", ["ftp", "https-ish", "", "javascript"])
def test_other_forwarded_proto_ignored(serve: Serve, proto: str) -> None:
    """Only http, https, ws and wss are schemes X-Forwarded-Proto may set."""
    info = get_scope(serve(apps.echo), [("X-Forwarded-Proto", proto)])
    assert info["scheme"] == "http"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


@needs_ipv6
@pytest.mark.parametrize(("spec", "honoured"), [("::1", True), ("::/0", True), ("127.0.0.1", False)])
def test_ipv6_peer(serve: Serve, spec: str, honoured: bool) -> None:
    """An IPv6 peer is trusted by its literal address or a network that holds it."""
    server = serve(apps.echo, host="::1", forwarded_allow_ips=spec)
    info = get_scope(server, SPOOF)
    if honoured:
        assert info["client"] == ["203.0.113.7", 0]
        assert info["scheme"] == "https"
    else:
        assert info["client"][0] == "::1"
        assert info["scheme"] == "http"


@pytest.fixture
def uds_path() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory:
        yield os.path.join(directory, "wherry.sock")


def uds_scope(path: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=path)) as client:
        return scope_of(client.get("http://localhost/", headers=headers))


def test_unix_socket_scope(serve: Serve, uds_path: str) -> None:
    """Over a Unix socket the scope has no client and the server is (path, None) (ASGI www spec)."""
    serve(apps.echo, uds=uds_path)
    info = uds_scope(uds_path, [])
    assert info["client"] is None
    assert info["server"] == [uds_path, None]
    assert info["scheme"] == "http"


def test_unix_socket_peer_untrusted_by_default(serve: Serve, uds_path: str) -> None:
    """A Unix-socket peer is not trusted unless 'unix' is in --forwarded-allow-ips."""
    serve(apps.echo, uds=uds_path)
    info = uds_scope(uds_path, SPOOF)
    assert info["client"] is None
    assert info["scheme"] == "http"


@pytest.mark.parametrize("spec", ["unix", "127.0.0.1,unix", "*"])
def test_unix_socket_peer_trusted(serve: Serve, uds_path: str, spec: str) -> None:
    """With 'unix' (or '*') trusted, a proxy on a Unix socket sets the client and scheme."""
    serve(apps.echo, uds=uds_path, forwarded_allow_ips=spec)
    info = uds_scope(uds_path, SPOOF)
    assert info["client"] == ["203.0.113.7", 0]
    assert info["scheme"] == "https"


# ------------------------------------------------------- RFC 7239 Forwarded, X-Forwarded-Host/-Prefix


def fwd(*values: str) -> H:
    return [(b"forwarded", v.encode("latin-1")) for v in values]


PARSE_FORWARDED_TABLE: list[tuple[str, list[str], list[dict[str, str]] | None]] = [
    ("one pair", ["for=192.0.2.60"], [{"for": "192.0.2.60"}]),
    (
        "RFC 7239 §4 example",
        ["for=192.0.2.60;proto=http;by=203.0.113.43"],
        [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}],
    ),
    ("names are case-insensitive", ["For=192.0.2.1;PROTO=https"], [{"for": "192.0.2.1", "proto": "https"}]),
    ("quoted IPv6 with port", ['for="[2001:db8:cafe::17]:4711"'], [{"for": "[2001:db8:cafe::17]:4711"}]),
    ("list", ["for=192.0.2.43, for=198.51.100.17"], [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
    (
        "lines are one list",
        ["for=192.0.2.43", "for=198.51.100.17"],
        [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}],
    ),
    ("comma inside quotes", ['for="a,b";host=x'], [{"for": "a,b", "host": "x"}]),
    ("escaped quote", ['for="a\\"b"'], [{"for": 'a"b'}]),
    ("empty elements ignored", [" , for=192.0.2.1 ,"], [{"for": "192.0.2.1"}]),
    ("pair without '='", ["for"], None),
    ("duplicate parameter", ["for=192.0.2.1;for=192.0.2.2"], None),
    ("open quote", ['for="192.0.2.1'], None),
    ("quote inside a token", ['for=192"0.2.1'], None),
    (
        "tab and space are OWS",
        ["\tfor = 192.0.2.1 ;\tproto=https ,"],
        [{"for": "192.0.2.1", "proto": "https"}],
    ),
    *(
        (f"{repr(c)[1:-1]} is not OWS", [f"{c}for{c}=192.0.2.1{c}"], [{f"{c}for{c}": f"192.0.2.1{c}"}])
        for c in NOT_OWS
    ),
]


@pytest.mark.parametrize(
    ("lines", "expected"), [c[1:] for c in PARSE_FORWARDED_TABLE], ids=[c[0] for c in PARSE_FORWARDED_TABLE]
)
def test_parse_forwarded_table(lines: list[str], expected: list[dict[str, str]] | None) -> None:
    """RFC 7239 §4: elements of ';'-separated pairs, values tokens or quoted strings."""
    assert parse_forwarded([line.encode("latin-1") for line in lines]) == expected


VIEW_TABLE: list[tuple[str, str, str, H, tuple[str, int] | None, str, str | None, str]] = [
    # (case, style, forwarded_allow_ips, headers, client, scheme, host header, root_path)
    (
        "forwarded: for and proto",
        "forwarded",
        "127.0.0.1",
        fwd("for=203.0.113.7;proto=https"),
        ("203.0.113.7", 0),
        "https",
        None,
        "",
    ),
    (
        "forwarded: right-most untrusted",
        "forwarded",
        "127.0.0.1, 10.0.0.0/8",
        fwd("for=192.0.2.66;proto=http, for=203.0.113.7;proto=https, for=10.0.0.2;proto=http"),
        ("203.0.113.7", 0),
        "https",
        None,
        "",
    ),
    (
        "forwarded: host",
        "forwarded",
        "127.0.0.1",
        fwd('for=203.0.113.7;host="shop.example:8443"'),
        ("203.0.113.7", 0),
        "http",
        "shop.example:8443",
        "",
    ),
    (
        "forwarded: quoted v6 with port",
        "forwarded",
        "127.0.0.1",
        fwd('for="[2001:db8::7]:4711"'),
        ("2001:db8::7", 4711),
        "http",
        None,
        "",
    ),
    ("forwarded: obfuscated stops", "forwarded", "127.0.0.1", fwd("for=_hidden"), PEER, "http", None, ""),
    (
        "forwarded: malformed ignored",
        "forwarded",
        "127.0.0.1",
        fwd("for=203.0.113.7;for=1.2.3.4"),
        PEER,
        "http",
        None,
        "",
    ),
    (
        "forwarded style ignores X-Forwarded-For",
        "forwarded",
        "127.0.0.1",
        xff("203.0.113.7"),
        PEER,
        "http",
        None,
        "",
    ),
    (
        "x-forwarded style ignores Forwarded",
        "x-forwarded",
        "127.0.0.1",
        fwd("for=203.0.113.7"),
        PEER,
        "http",
        None,
        "",
    ),
    (
        "x-forwarded-host",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-host", b"shop.example")],
        PEER,
        "http",
        "shop.example",
        "",
    ),
    (
        "x-forwarded-host right-most",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-host", b"evil.example, shop.example")],
        PEER,
        "http",
        "shop.example",
        "",
    ),
    (
        "bad host ignored",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-host", b"a b/c")],
        PEER,
        "http",
        None,
        "",
    ),
    ("prefix", "x-forwarded", "127.0.0.1", [(b"x-forwarded-prefix", b"/api/")], PEER, "http", None, "/api"),
    (
        "prefix in forwarded style",
        "forwarded",
        "127.0.0.1",
        [(b"x-forwarded-prefix", b"/api")],
        PEER,
        "http",
        None,
        "/api",
    ),
    (
        "relative prefix ignored",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-prefix", b"api")],
        PEER,
        "http",
        None,
        "",
    ),
    (
        "dot segments ignored",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-prefix", b"/a/../b")],
        PEER,
        "http",
        None,
        "",
    ),
    (
        "control characters ignored",
        "x-forwarded",
        "127.0.0.1",
        [(b"x-forwarded-prefix", b"/a\x1b[31m")],
        PEER,
        "http",
        None,
        "",
    ),
]


def _not_ows_views(c: str) -> list[tuple[str, str, str, H, tuple[str, int] | None, str, str | None, str]]:
    name, b = repr(c)[1:-1], c.encode("latin-1")
    client = ("203.0.113.7", 0)
    return [
        (
            f"{name} after a host",
            "x-forwarded",
            "127.0.0.1",
            [(b"x-forwarded-host", b"shop.example" + b)],
            PEER,
            "http",
            None,
            "",
        ),
        (
            f"{name} after a prefix",
            "x-forwarded",
            "127.0.0.1",
            [(b"x-forwarded-prefix", b"/api" + b)],
            PEER,
            "http",
            None,
            "",
        ),
        (
            f"{name} after for=",
            "forwarded",
            "127.0.0.1",
            fwd(f"for=203.0.113.7{c};proto=https"),
            PEER,
            "http",
            None,
            "",
        ),
        (
            f"{name} before 'for'",
            "forwarded",
            "127.0.0.1",
            fwd(f"{c}for=203.0.113.7"),
            PEER,
            "http",
            None,
            "",
        ),
        (
            f"{name} after proto=",
            "forwarded",
            "127.0.0.1",
            fwd(f"for=203.0.113.7;proto=https{c}"),
            client,
            "http",
            None,
            "",
        ),
        (
            f"{name} after host=",
            "forwarded",
            "127.0.0.1",
            fwd(f"for=203.0.113.7;host=shop.example{c}"),
            client,
            "http",
            None,
            "",
        ),
    ]


VIEW_TABLE += [case for c in NOT_OWS for case in _not_ows_views(c)]


@pytest.mark.parametrize(
    ("style", "spec", "headers", "client", "scheme", "host", "root_path"),
    [c[1:] for c in VIEW_TABLE],
    ids=[c[0] for c in VIEW_TABLE],
)
def test_proxy_view_table(
    style: str,
    spec: str,
    headers: H,
    client: tuple[str, int] | None,
    scheme: str,
    host: str | None,
    root_path: str,
) -> None:
    """RFC 7239 Forwarded or X-Forwarded-For/-Proto/-Host, never both; with --forwarded-trust
    host,prefix, X-Forwarded-Prefix is put before --root-path; a value that is not plainly a host or
    an absolute path is ignored."""
    view = ProxyView(TrustedHosts(spec), style, "", ("host", "prefix"))
    got_client, got_scheme, got_headers, got_root = view([(b"host", b"backend:8000"), *headers], PEER, "http")
    assert (got_client, got_scheme, got_root) == (client, scheme, root_path)
    assert dict(got_headers)[b"host"] == (host or "backend:8000").encode()


def test_prefix_goes_before_the_root_path() -> None:
    """--root-path names where the app is mounted behind the proxy's prefix."""
    view = ProxyView(TrustedHosts("*"), "x-forwarded", "/app", ["prefix"])
    assert view([(b"x-forwarded-prefix", b"/api")], PEER, "http")[3] == "/api/app"


def test_forwarded_host_and_prefix_over_the_wire(serve: Serve) -> None:
    """A trusted proxy's X-Forwarded-Host reaches the app as Host, its prefix as root_path (and
    path, which includes root_path), once --forwarded-trust names them."""
    server = serve(apps.echo, forwarded_trust="host,prefix")
    info = get_scope(server, [("X-Forwarded-Host", "shop.example"), ("X-Forwarded-Prefix", "/api")])
    assert ["host", "shop.example"] in info["headers"]
    assert info["root_path"] == "/api"
    assert info["path"] == "/api/"


def test_rfc7239_over_the_wire(serve: Serve) -> None:
    """--proxy-headers-style forwarded reads RFC 7239 Forwarded from a trusted peer."""
    server = serve(apps.echo, proxy_headers_style="forwarded", forwarded_trust=["host"])
    info = get_scope(server, [("Forwarded", 'for="[2001:db8::7]:4711";proto=https;host=shop.example')])
    assert info["client"] == ["2001:db8::7", 4711]
    assert info["scheme"] == "https"
    assert ["host", "shop.example"] in info["headers"]


def test_spoofed_host_and_prefix_from_an_untrusted_peer_are_ignored(serve: Serve) -> None:
    """An untrusted peer's Forwarded, X-Forwarded-Host and -Prefix change nothing."""
    server = serve(apps.echo, forwarded_allow_ips="192.0.2.1", proxy_headers_style="forwarded")
    info = get_scope(
        server,
        [
            ("Forwarded", "for=203.0.113.7;proto=https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Prefix", "/x"),
        ],
    )
    assert info["client"][0] == "127.0.0.1" and info["scheme"] == "http"
    assert info["root_path"] == "" and ["host", "evil.example"] not in info["headers"]


@pytest.mark.parametrize("char", [b"\x85", b"\xa0"], ids=["x85", "xa0"])
def test_obs_text_beside_proxy_header_values_over_http1(serve: Serve, char: bytes) -> None:
    """RFC 9110 §5.6.3: only SP and HTAB are optional whitespace. \\x85 and \\xa0 are obs-text
    that HTTP/1.1 carries (and str.strip() strips): after an address, a scheme, a host or a prefix
    they leave the scope as the peer made it, in either proxy-headers style."""
    x_style = serve(apps.echo, forwarded_trust="host,prefix")
    head = (
        b"X-Forwarded-For: 203.0.113.7%b\r\nX-Forwarded-Proto: https%b\r\n"
        b"X-Forwarded-Host: shop.example%b\r\nX-Forwarded-Prefix: /api%b\r\n" % (char, char, char, char)
    )
    info = raw_scope(x_style, head)
    assert info["client"][0] == "127.0.0.1" and info["client"][1] != 0
    assert info["scheme"] == "http"
    assert ["host", "a"] in info["headers"]
    assert info["root_path"] == ""
    rfc = serve(apps.echo, proxy_headers_style="forwarded", forwarded_trust="host")
    info = raw_scope(rfc, b"Forwarded: for=203.0.113.7%b;proto=https\r\n" % char)
    assert info["client"][0] == "127.0.0.1" and info["scheme"] == "http"
    info = raw_scope(rfc, b"Forwarded: for=203.0.113.7;proto=https%b;host=shop.example%b\r\n" % (char, char))
    assert info["client"] == ["203.0.113.7", 0] and info["scheme"] == "http"
    assert ["host", "a"] in info["headers"]


def raw_scope(server: RunningServer, headers: bytes) -> dict[str, Any]:
    raw = exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"Connection: close\r\n\r\n")
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200 "), head
    line = next(x for x in head.split("\r\n") if x.startswith("x-scope:"))
    info: dict[str, Any] = json.loads(line.partition(":")[2])
    return info


def test_control_bytes_beside_proxy_header_values_over_http2(serve: Serve) -> None:
    """RFC 9110 §5.6.3: HTTP/2 carries \\x0b, \\x0c and \\x1c-\\x1f in field values (RFC 9113 §8.2.1
    forbids only NUL, CR and LF); beside an address or a scheme they are not whitespace to strip,
    and the scope keeps the peer's address and scheme."""
    from tests.h2util import H2Client

    server = serve(apps.echo)
    with H2Client(server.host, server.port) as client:
        client.conn.config.normalize_outbound_headers = False  # h2 would strip \x0b and \x0c itself
        streams = {}
        for char in NOT_OWS:
            b = char.encode("latin-1")
            headers = [(b"x-forwarded-for", b"203.0.113.7" + b), (b"x-forwarded-proto", b"https" + b)]
            streams[char] = client.request(headers=headers, scheme=b"http")
        while not all(client.responses[sid].ended for sid in streams.values()):
            assert client.events(), "no answer"
    for char, sid in streams.items():
        response = client.responses[sid]
        assert response.status == 200, char
        info = json.loads(response.header(b"x-scope") or b"{}")
        assert info["client"][0] == "127.0.0.1" and info["scheme"] == "http", (char, info)


def h2_scopes(server: RunningServer, requests: list[list[tuple[bytes, bytes]]]) -> list[dict[str, Any]]:
    """The scopes of requests sent on one HTTP/2 connection (h2c prior knowledge)."""
    from tests.h2util import H2Client

    with H2Client(server.host, server.port) as client:
        sids = [client.request(headers=headers, scheme=b"http") for headers in requests]
        while not all(client.responses[sid].ended for sid in sids):
            assert client.events(), "no answer"
    infos = []
    for sid in sids:
        response = client.responses[sid]
        assert response.status == 200
        infos.append(json.loads(response.header(b"x-scope") or b"{}"))
    return infos


def test_proxy_view_over_http2(serve: Serve) -> None:
    """Over HTTP/2 a trusted proxy's X-Forwarded-Host and -Prefix, and RFC 7239 Forwarded in that
    style, reach the scope as over HTTP/1.1, alone or beside X-Forwarded-For (with
    --forwarded-trust host,prefix)."""
    x_style = serve(apps.echo, root_path="/app", forwarded_trust="host,prefix")
    host_only, prefix_only, both = h2_scopes(
        x_style,
        [
            [(b"x-forwarded-host", b"shop.example")],
            [(b"x-forwarded-prefix", b"/api")],
            [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-host", b"shop.example")],
        ],
    )
    assert ["host", "shop.example"] in host_only["headers"] and host_only["root_path"] == "/app"
    assert prefix_only["root_path"] == "/api/app" and prefix_only["path"].startswith("/api/app")
    assert both["client"][0] == "203.0.113.7" and ["host", "shop.example"] in both["headers"]
    rfc = serve(apps.echo, proxy_headers_style="forwarded", forwarded_trust="host")
    (info,) = h2_scopes(rfc, [[(b"forwarded", b"for=203.0.113.9;proto=https;host=shop.example")]])
    assert info["client"] == ["203.0.113.9", 0] and info["scheme"] == "https"
    assert ["host", "shop.example"] in info["headers"]


def test_spoofed_proxy_view_over_http2_is_ignored(serve: Serve) -> None:
    server = serve(apps.echo, forwarded_allow_ips="192.0.2.1")
    (info,) = h2_scopes(server, [[(b"x-forwarded-host", b"evil.example"), (b"x-forwarded-prefix", b"/x")]])
    assert info["root_path"] == "" and ["host", "evil.example"] not in info["headers"]


# ------------------------------------------------ host and prefix are trusted only when asked for

POISON_X = [(b"x-forwarded-host", b"evil.example"), (b"x-forwarded-prefix", b"/evilprefix")]
POISON_RFC = [(b"forwarded", b"for=203.0.113.7;proto=https;host=evil.example"), POISON_X[1]]


@pytest.mark.parametrize(
    ("style", "headers", "client", "scheme"),
    [
        (
            "x-forwarded",
            [*xff("203.0.113.7"), (b"x-forwarded-proto", b"https"), *POISON_X],
            "203.0.113.7",
            "https",
        ),
        ("forwarded", POISON_RFC, "203.0.113.7", "https"),
    ],
)
def test_host_and_prefix_need_forwarded_trust(style: str, headers: H, client: str, scheme: str) -> None:
    """Proxies append X-Forwarded-For and set -Proto, but pass a client's X-Forwarded-Host,
    X-Forwarded-Prefix and Forwarded host= through: without --forwarded-trust a trusted peer
    changes only the client address and scheme."""
    view = ProxyView(TrustedHosts("127.0.0.1"), style, "")
    got_client, got_scheme, got_headers, got_root = view([(b"host", b"backend:8000"), *headers], PEER, "http")
    assert got_client == (client, 0) and got_scheme == scheme
    assert dict(got_headers)[b"host"] == b"backend:8000" and got_root == ""
    only_host = ProxyView(TrustedHosts("127.0.0.1"), style, "", ["host"])
    _, _, got_headers, got_root = only_host([(b"host", b"backend:8000"), *headers], PEER, "http")
    assert dict(got_headers)[b"host"] == b"evil.example" and got_root == ""
    only_prefix = ProxyView(TrustedHosts("127.0.0.1"), style, "", ["prefix"])
    _, _, got_headers, got_root = only_prefix([(b"host", b"backend:8000"), *headers], PEER, "http")
    assert dict(got_headers)[b"host"] == b"backend:8000" and got_root == "/evilprefix"


def test_defaults_trust_loopback_and_not_host_or_prefix() -> None:
    """The default --forwarded-allow-ips holds both loopback addresses, and --forwarded-trust is empty."""
    from wherry.config import Config, ConfigError

    config = Config()
    assert "::1" in TrustedHosts(config.forwarded_allow_ips)
    assert "127.0.0.1" in TrustedHosts(config.forwarded_allow_ips)
    assert config.forwarded_trust == []
    assert Config(forwarded_trust="host, prefix").forwarded_trust == ["host", "prefix"]
    assert Config.from_sources({}, environ={"WHERRY_FORWARDED_TRUST": "prefix"}).forwarded_trust == ["prefix"]
    with pytest.raises(ConfigError, match="forwarded-trust"):
        Config(forwarded_trust="port")


def test_poisoned_host_and_prefix_over_http1_by_default(serve: Serve) -> None:
    """With the defaults, a client's X-Forwarded-Host and -Prefix passed on by a local proxy reach
    neither the Host header, root_path nor path; X-Forwarded-For and -Proto still do."""
    server = serve(apps.echo)
    info = get_scope(
        server,
        [*SPOOF, ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Prefix", "/evilprefix")],
    )
    assert info["client"] == ["203.0.113.7", 0] and info["scheme"] == "https"
    assert ["host", "evil.example"] not in info["headers"]
    assert info["root_path"] == "" and info["path"] == "/"
    rfc = serve(apps.echo, proxy_headers_style="forwarded")
    info = get_scope(rfc, [("Forwarded", "for=203.0.113.7;proto=https;host=evil.example")])
    assert info["client"] == ["203.0.113.7", 0] and info["scheme"] == "https"
    assert ["host", "evil.example"] not in info["headers"]


def test_poisoned_host_and_prefix_over_http2_by_default(serve: Serve) -> None:
    """As over HTTP/1.1: over HTTP/2 the defaults take the address and scheme, not host or prefix."""
    server = serve(apps.echo)
    (info,) = h2_scopes(server, [[*xff("203.0.113.7"), (b"x-forwarded-proto", b"https"), *POISON_X]])
    assert info["client"] == ["203.0.113.7", 0] and info["scheme"] == "https"
    assert ["host", "evil.example"] not in info["headers"]
    assert info["root_path"] == ""


async def _ws_scope(scope: Any, receive: Any, send: Any) -> None:
    """WebSocket: accept and send the scope's client, scheme, Host and root_path as JSON."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    hosts = [v.decode("latin-1") for n, v in scope["headers"] if n == b"host"]
    info = {
        "client": scope["client"],
        "scheme": scope["scheme"],
        "host": hosts,
        "root_path": scope["root_path"],
    }
    await send({"type": "websocket.send", "text": json.dumps(info)})
    await send({"type": "websocket.close"})


@pytest.mark.parametrize(
    ("trust", "host", "root_path"), [("", "example.com", ""), ("host,prefix", "evil.example", "/p")]
)
def test_host_and_prefix_over_websocket(serve: Serve, trust: str, host: str, root_path: str) -> None:
    """A WebSocket handshake's proxy headers are read as an HTTP request's: host and prefix only
    with --forwarded-trust."""
    from tests.wsframes import TEXT, open_websocket, parse_frames

    server = serve(_ws_scope, forwarded_trust=trust) if trust else serve(_ws_scope)
    extra = b"X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n"
    extra += b"X-Forwarded-Host: evil.example\r\nX-Forwarded-Prefix: /p\r\n"
    with server.connect() as sock:
        _, data = open_websocket(sock, "/", extra)
        sock.settimeout(5)
        while not any(opcode == TEXT for opcode, _ in parse_frames(data)):
            more = sock.recv(65536)
            assert more, data
            data += more
    text = next(payload for opcode, payload in parse_frames(data) if opcode == TEXT)
    info = json.loads(text)
    assert info["client"] == ["203.0.113.7", 0] and info["scheme"] == "wss"
    assert info["host"] == [host] and info["root_path"] == root_path
