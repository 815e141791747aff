"""Proxy headers (wherry/asgi/proxy_headers.py) without a server: the bounded cache of trusted
addresses, and RFC 7239 ``Forwarded`` elements at the edges of the grammar. The tables of the
rules and the headers over the wire are in tests/e2e/test_proxy_headers.py."""

from __future__ import annotations

import pytest

from wherry.asgi.proxy_headers import ProxyView, TrustedHosts, parse_forwarded


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
        ([b'for="[2001:db8::1]:80";by="a;b"'], [{"for": "[2001:db8::1]:80", "by": "a;b"}]),
        ([b'for="a\\"b"'], [{"for": 'a"b'}]),
        ([b'for=192.0.2.1;proto=h"tt"p'], None),  # quotes inside a token
        ([b'for="192.0.2.1'], None),  # a quote left open
        ([b"for=192.0.2.1;for=192.0.2.2"], None),  # a parameter twice in one element
        ([b"for"], None),  # a parameter without a value
    ],
    ids=[
        "empty-pairs",
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
