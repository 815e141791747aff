"""Proxy headers (wherry/asgi/proxy_headers.py) without a server: the bounded cache of trusted
addresses, and RFC 7239 ``Forwarded`` elements at the edges of the grammar. The tables of the
rules and the headers over the wire are in tests/e2e/test_proxy_headers.py."""

from __future__ import annotations

import pytest

from wherry.asgi.proxy_headers import (
    ProxyView,
    TrustedHosts,
    apply_proxy_headers,
    parse_forwarded,
    parse_forwarded_node,
)


def test_the_cache_of_trusted_addresses_stays_bounded_and_right() -> None:
    """Addresses matched against networks are remembered, up to 1024: then the cache starts
    over, and every answer stays the network's."""
    trusted = TrustedHosts("10.0.0.0/8, 2001:db8::/32")
    inside = [f"10.0.{i // 256}.{i % 256}" for i in range(1100)]
    assert all(host in trusted for host in inside)
    assert len(trusted._cache) <= 1024
    assert "192.0.2.1" not in trusted
    assert "::ffff:10.1.2.3" in trusted  # IPv4-mapped: the IPv4 address it carries
    assert all(host in trusted for host in inside[:10])  # asked again after the cache started over


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"for=192.0.2.1;;proto=https;"], [{"for": "192.0.2.1", "proto": "https"}]),
        ([b", for=192.0.2.1,"], [{"for": "192.0.2.1"}]),
        ([b'for="[2001:db8::1]:80";by="a;b"'], [{"for": "[2001:db8::1]:80", "by": "a;b"}]),
        ([b'for="a\\"b"'], [{"for": 'a"b'}]),
        ([b'for=192.0.2.1;proto=h"tt"p'], None),  # quotes inside a token
        ([b'for="192.0.2.1'], None),  # a quote left open
        ([b"for=192.0.2.1;for=192.0.2.2"], None),  # a parameter twice in one element
        ([b"for"], None),  # a parameter without a value
    ],
    ids=[
        "empty-pairs",
        "empty-elements",
        "quoted-separators",
        "escaped-quote",
        "quote-in-token",
        "open-quote",
        "twice",
        "no-value",
    ],
)
def test_forwarded_elements_at_the_edges_of_the_grammar(
    lines: list[bytes], expected: list[dict[str, str]] | None
) -> None:
    assert parse_forwarded(lines) == expected


def test_forwarded_through_trusted_proxies_only_gives_the_leftmost() -> None:
    """Every ``for=`` is a trusted proxy: the client is the left-most, with its element's proto
    and host (RFC 7239 §5.2, as for X-Forwarded-For)."""
    view = ProxyView(TrustedHosts("10.0.0.0/8"), "forwarded", "", trust=("host",))
    headers = [
        (b"host", b"internal"),
        (b"forwarded", b"for=10.0.0.3;proto=https;host=example.com, for=10.0.0.2;proto=http;host=x"),
    ]
    client, scheme, seen, root_path = view(headers, ("10.0.0.1", 4000), "http")
    assert (client, scheme, root_path) == (("10.0.0.3", 0), "https", "")
    assert seen == [(b"host", b"example.com"), headers[1]]


# ---------------------------------------------------------------- the rules, without a server


def test_trusted_hosts_read_addresses_networks_unix_and_the_wildcard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trusted = TrustedHosts("10.0.0.1, [::1], 192.168.0.0/16, UNIX, , not-an-address")
    assert "10.0.0.1" in trusted and "::1" in trusted and "unix" in trusted
    assert "192.168.4.5" in trusted and "0:0:0:0:0:0:0:1" in trusted
    assert "10.0.0.2" not in trusted and "example.com" not in trusted and None not in trusted
    assert [r.getMessage() for r in caplog.records] == [
        "forwarded_allow_ips: 'not-an-address' is not an address, a network, '*' or 'unix'; ignored"
    ]
    assert "203.0.113.9" in TrustedHosts(["*"]) and None in TrustedHosts("*")
    assert "127.0.0.1" not in TrustedHosts(None)


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("192.0.2.1", ("192.0.2.1", 0)),
        ("192.0.2.1:8080", ("192.0.2.1", 8080)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1", None),
        ("[2001:db8::1]443", None),
        ("[2001:db8::1]:x", None),
        ("192.0.2.1:http", None),
        ("192.0.2.1:70000", None),
        ("[fe80::1%eth0]", None),
        ("unknown", None),
        ("_hidden", None),
    ],
)
def test_a_forwarded_node_is_an_address_and_maybe_a_port(text: str, node: tuple[str, int] | None) -> None:
    assert parse_forwarded_node(text) == node


TRUSTED = TrustedHosts("10.0.0.0/8")


@pytest.mark.parametrize(
    ("headers", "client", "scheme"),
    [
        ([(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2")], ("203.0.113.7", 0), "http"),
        ([(b"x-forwarded-for", b"10.0.0.3, 10.0.0.2")], ("10.0.0.3", 0), "http"),
        ([(b"x-forwarded-for", b"garbage, 10.0.0.2")], ("10.0.0.2", 0), "http"),
        ([(b"x-forwarded-for", b"garbage")], ("10.0.0.1", 1234), "http"),
        (
            [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.2")],
            ("203.0.113.7", 0),
            "http",
        ),
        ([(b"x-forwarded-for", b",,")], ("10.0.0.1", 1234), "http"),
        ([(b"x-forwarded-proto", b"wss")], ("10.0.0.1", 1234), "https"),
        ([(b"x-forwarded-proto", b"ftp")], ("10.0.0.1", 1234), "http"),
        ([(b"x-forwarded-proto", b" , ")], ("10.0.0.1", 1234), "http"),
        (
            [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"), (b"x-forwarded-proto", b"https, http")],
            ("203.0.113.7", 0),
            "https",
        ),
        (
            [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.2"), (b"x-forwarded-proto", b"https")],
            ("203.0.113.7", 0),
            "https",
        ),
    ],
)
def test_x_forwarded_for_is_walked_from_the_right_past_trusted_proxies(
    headers: list[tuple[bytes, bytes]], client: tuple[str, int], scheme: str
) -> None:
    assert apply_proxy_headers(headers, ("10.0.0.1", 1234), "http", TRUSTED) == (client, scheme)


@pytest.mark.parametrize(
    ("style", "headers", "client", "scheme", "host", "root_path"),
    [
        (
            "x-forwarded",
            [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-host", b"a.example, b.example:8443")],
            ("203.0.113.7", 0),
            "http",
            b"b.example:8443",
            "/prefix/root",
        ),
        ("x-forwarded", [(b"x-forwarded-host", b" , ")], ("10.0.0.1", 1234), "http", b"internal", "/root"),
        ("x-forwarded", [(b"x-forwarded-host", b"a b")], ("10.0.0.1", 1234), "http", b"internal", "/root"),
        (
            "x-forwarded",
            [(b"x-forwarded-prefix", b"/a/../b")],
            ("10.0.0.1", 1234),
            "http",
            b"internal",
            "/root",
        ),
        (
            "x-forwarded",
            [(b"x-forwarded-prefix", b"relative")],
            ("10.0.0.1", 1234),
            "http",
            b"internal",
            "/root",
        ),
        (
            "x-forwarded",
            [(b"x-forwarded-prefix", b"/sp ace")],
            ("10.0.0.1", 1234),
            "http",
            b"internal",
            "/root",
        ),
        ("forwarded", [], ("10.0.0.1", 1234), "http", b"internal", "/root"),
        ("forwarded", [(b"forwarded", b"for=unknown")], ("10.0.0.1", 1234), "http", b"internal", "/root"),
        ("forwarded", [(b"forwarded", b'for="')], ("10.0.0.1", 1234), "http", b"internal", "/root"),
        (
            "forwarded",
            [(b"forwarded", b"for=203.0.113.7;proto=https;host=a.example, for=10.0.0.2")],
            ("203.0.113.7", 0),
            "https",
            b"a.example",
            "/root",
        ),
        ("forwarded", [(b"forwarded", b"for=203.0.113.7")], ("203.0.113.7", 0), "http", b"internal", "/root"),
        (
            "forwarded",
            [(b"forwarded", b"for=203.0.113.7, for=garbage")],
            ("10.0.0.1", 1234),
            "http",
            b"internal",
            "/root",
        ),
    ],
)
def test_a_proxy_view_reads_one_style_and_what_it_is_trusted_with(
    style: str,
    headers: list[tuple[bytes, bytes]],
    client: tuple[str, int],
    scheme: str,
    host: bytes,
    root_path: str,
) -> None:
    view = ProxyView(TRUSTED, style, "/root", trust=("host", "prefix"))
    prefixed = [(b"host", b"internal"), *headers]
    if style == "x-forwarded" and root_path == "/prefix/root":
        prefixed.append((b"x-forwarded-prefix", b"/prefix/"))
    seen_client, seen_scheme, seen, seen_root = view(prefixed, ("10.0.0.1", 1234), "http")
    assert (seen_client, seen_scheme, seen_root) == (client, scheme, root_path)
    assert seen[0] == (b"host", host)


def test_without_forwarded_trust_host_and_prefix_are_not_read() -> None:
    view = ProxyView(TRUSTED, "x-forwarded", "", trust=())
    headers = [
        (b"host", b"internal"),
        (b"x-forwarded-host", b"evil.example"),
        (b"x-forwarded-prefix", b"/evil"),
    ]
    assert view(headers, ("10.0.0.1", 1234), "http") == (("10.0.0.1", 1234), "http", headers, "")
