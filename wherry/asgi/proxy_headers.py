"""Proxy headers: which peers are believed, and what their X-Forwarded-* or RFC 7239 ``Forwarded``
headers change in the scope.

Rules of this module:

1. Proxy headers are read only from a peer in ``--forwarded-allow-ips`` (``TrustedHosts``), and
   only when ``--proxy-headers`` is on; from any other peer they are the client's own words and
   change nothing.
2. One style is read (``--proxy-headers-style``): X-Forwarded-* or RFC 7239 ``Forwarded``, never
   both: a proxy that writes one kind passes the other from the client untouched.
3. The client address is found by walking the list from the right, past the trusted proxies; the
   scheme is the chosen element's. Nothing else is trusted by default: Host and the path prefix
   only when ``--forwarded-trust`` names them (most proxies pass a client's X-Forwarded-Host and
   X-Forwarded-Prefix through untouched).
4. A value that is not plainly an address, a host or an absolute path is ignored, never guessed at.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Final

from ..proto.events import Headers

logger: Final = logging.getLogger("wherry.error")

# X-Forwarded-Proto values honoured, and the http scope scheme each stands for.
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_TRUST_CACHE_SIZE: Final = 1024  # addresses remembered by TrustedHosts; cleared when full


class TrustedHosts:
    """``--forwarded-allow-ips``: addresses, CIDR networks, ``*`` and ``unix`` (Unix-socket peers).

    Membership is asked with the text of an address (a peer's, or one read from X-Forwarded-For).
    IPv6 text is compared in its normalised form, and an IPv4-mapped IPv6 address
    (``::ffff:10.0.0.1``) matches the IPv4 address it carries. Items that are neither an address, a
    network, ``*`` nor ``unix`` are ignored with a warning: they could never match a peer.
    """

    __slots__ = ("_always", "_cache", "_hosts", "_networks")

    def __init__(self, spec: str | list[str] | None) -> None:
        if isinstance(spec, str):
            items = [s.strip() for s in spec.split(",")]
        else:
            items = [s.strip() for s in (spec or [])]
        self._always = "*" in items
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._cache: dict[str, bool] = {}
        for item in items:
            if not item or item == "*":
                continue
            if item.lower() == "unix":
                self._hosts.add("unix")
                continue
            try:
                if "/" in item:
                    self._networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                else:
                    self._hosts.add(str(ipaddress.ip_address(item.strip("[]"))))
            except ValueError:
                logger.warning(
                    "forwarded_allow_ips: %r is not an address, a network, '*' or 'unix'; ignored",
                    item,
                )

    def __contains__(self, host: object) -> bool:
        if self._always:
            return True
        if not isinstance(host, str):
            return False
        if host in self._hosts:
            return True
        cache = self._cache
        known = cache.get(host)
        if known is None:
            known = self._match(host)
            if len(cache) >= _TRUST_CACHE_SIZE:
                cache.clear()
            cache[host] = known
        return known

    def _match(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            str(candidate) in self._hosts or any(candidate in net for net in self._networks)
            for candidate in candidates
        )


def parse_forwarded_node(text: str) -> tuple[str, int] | None:
    """One X-Forwarded-For element as ``(address, port)``, or None when it names no IP address.

    Accepted: ``192.0.2.1``, ``192.0.2.1:8080``, ``2001:db8::1``, ``[2001:db8::1]`` and
    ``[2001:db8::1]:8080`` (the port is 0 when absent). Anything else (``unknown``, obfuscated
    identifiers, host names, IPv6 zone ids) is None: it cannot be checked against the trusted
    proxies and must never reach a scope or a log line.
    """
    port = 0
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        if rest:
            digits = rest[1:]
            if rest[0] != ":" or not (digits.isascii() and digits.isdigit()):
                return None
            port = int(digits)
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not (digits.isascii() and digits.isdigit()):
            return None
        port = int(digits)
    else:
        host = text
    if "%" in host or port > 65535:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return str(address), port


# Optional whitespace (RFC 9110 §5.6.3): the only bytes stripped around list elements and
# parameters. str.strip() would also strip \x1c-\x1f, \x85 and \xa0 (whitespace to Python), so
# that ``1.2.3.4\x85`` would pass for an address.
OWS: Final = " \t"


def _list_elements(lines: list[bytes]) -> list[str]:
    """The elements of a list-valued field sent on one or more lines, without the optional
    whitespace around them; empty elements are dropped (RFC 9110 §5.6.1)."""
    joined = lines[0] if len(lines) == 1 else b",".join(lines)
    return [e for e in (s.strip(OWS) for s in joined.decode("latin-1").split(",")) if e]


def apply_proxy_headers(
    headers: Headers,
    client: tuple[str, int] | None,
    scheme: str,
    trusted: TrustedHosts,
) -> tuple[tuple[str, int] | None, str]:
    """The client address and scheme the first untrusted hop used, for a trusted peer's request.

    The caller checks that the direct peer is trusted. X-Forwarded-For is read from the right
    (each proxy appends the address it received from): the client is the right-most address that
    is not itself a trusted proxy, or the left-most address when every one is trusted. Several
    lines are one list, in order (RFC 9110 §5.3). An element that is not an address stops the
    walk, because nothing left of it can be checked: the client is then the last address walked,
    or the peer itself.

    X-Forwarded-Proto is honoured when it is http, https, ws or wss (ws/wss read as http/https).
    When it has as many elements as X-Forwarded-For, the element paired with the chosen client
    is used; otherwise the right-most one, which the trusted peer wrote.
    """
    forwarded_for: list[bytes] = []
    forwarded_proto: list[bytes] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            forwarded_proto.append(value)
    elements: list[str] = []
    chosen_at = -1
    if forwarded_for:
        elements = _list_elements(forwarded_for)
        for position in range(len(elements) - 1, -1, -1):
            node = parse_forwarded_node(elements[position])
            if node is None:
                break
            client = node
            chosen_at = position
            if node[0] not in trusted:
                break
    if forwarded_proto:
        protos = _list_elements(forwarded_proto)
        if protos:
            paired = chosen_at >= 0 and len(protos) == len(elements)
            proto = protos[chosen_at] if paired else protos[-1]
            scheme = _SCHEMES.get(proto.lower(), scheme)
    return client, scheme


_HOST_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]")
_PREFIX_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-._~%!$&'()*+,;=:@"
)


def _valid_host(text: str) -> bool:
    """A host[:port] as a Host header may carry it: no spaces, slashes or control characters."""
    return 0 < len(text) <= 255 and all(c in _HOST_CHARS for c in text)


def _valid_prefix(text: str) -> bool:
    """A path prefix: absolute, path characters only, no dot segments (it becomes root_path)."""
    if not text.startswith("/") or len(text) > 1024 or not all(c in _PREFIX_CHARS for c in text):
        return False
    return not any(part in (".", "..") for part in text.split("/"))


def _split_quoted(text: str, separator: str) -> list[str] | None:
    """Split on ``separator`` outside quoted strings; None when a quote is left open."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        return None
    parts.append("".join(current))
    return parts


def _unescape(quoted: str) -> str:
    """The text of a quoted-string's inside (RFC 9110 §5.6.4): ``\\x`` stands for ``x``."""
    out: list[str] = []
    escaped = False
    for char in quoted:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out)


def parse_forwarded(lines: list[bytes]) -> list[dict[str, str]] | None:
    """RFC 7239 ``Forwarded`` field lines as one list of elements (parameter -> value, names
    lowercased, quoted values unquoted), left to right. None when the field is malformed: a pair
    without ``=``, a parameter given twice in one element, an open quote (§4)."""
    text = b",".join(lines).decode("latin-1")
    raw_elements = _split_quoted(text, ",")
    if raw_elements is None:
        return None
    elements: list[dict[str, str]] = []
    for raw in raw_elements:
        if not raw.strip(OWS):
            continue  # empty list elements are ignored (RFC 9110 §5.6.1.2)
        pairs = _split_quoted(raw, ";")
        # ``raw`` was cut from the field outside quoted strings, so its quotes are balanced too.
        assert pairs is not None
        element: dict[str, str] = {}
        for pair in pairs:
            pair = pair.strip(OWS)
            if not pair:
                continue
            name, sep, value = pair.partition("=")
            name = name.strip(OWS).lower()
            if not sep or not name or name in element:
                return None
            value = value.strip(OWS)
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = _unescape(value[1:-1])
            elif '"' in value:
                return None
            element[name] = value
        elements.append(element)
    return elements


class ProxyView:
    """What a trusted peer's proxy headers say: client, scheme, and (when trusted) Host and root_path.

    ``style`` "x-forwarded" reads X-Forwarded-For and -Proto (as ``apply_proxy_headers``).
    ``style`` "forwarded" reads RFC 7239 ``Forwarded`` instead: the client is chosen by the same
    walk from the right over the ``for=`` parameters, and ``proto=`` comes from the element of the
    chosen client. Only one style is read, because a proxy that writes one kind passes the other
    kind from the client untouched, and reading both would let a client choose its own address.

    The client address and scheme are all that is trusted by default: most proxies append to
    X-Forwarded-For and set X-Forwarded-Proto, but pass a client's X-Forwarded-Host and
    X-Forwarded-Prefix through untouched. ``trust`` (``--forwarded-trust``) adds ``"host"``:
    X-Forwarded-Host, or ``host=`` of the chosen Forwarded element, replaces the Host header the
    app sees; and ``"prefix"``: X-Forwarded-Prefix (read in both styles, RFC 7239 has no
    counterpart) is put before ``--root-path``. Hosts and prefixes that are not plainly a host or
    an absolute path are ignored.
    """

    __slots__ = ("root_path", "style", "trust_host", "trust_prefix", "trusted")

    def __init__(self, trusted: TrustedHosts, style: str, root_path: str, trust: Iterable[str] = ()) -> None:
        self.trusted = trusted
        self.style = style
        self.root_path = root_path
        names = set(trust)
        self.trust_host = "host" in names
        self.trust_prefix = "prefix" in names

    def __call__(
        self, headers: Headers, client: tuple[str, int] | None, scheme: str
    ) -> tuple[tuple[str, int] | None, str, Headers, str]:
        hosts: list[bytes] = []
        prefixes: list[bytes] = []
        forwarded: list[bytes] = []
        for name, value in headers:
            if name == b"x-forwarded-host":
                hosts.append(value)
            elif name == b"x-forwarded-prefix":
                prefixes.append(value)
            elif name == b"forwarded":
                forwarded.append(value)
        host: str | None = None
        if self.style == "forwarded":
            if forwarded:
                client, scheme, host = self._rfc7239(forwarded, client, scheme)
        else:
            client, scheme = apply_proxy_headers(headers, client, scheme, self.trusted)
            if hosts:
                elements = _list_elements(hosts)
                host = elements[-1] if elements else None
        if not self.trust_host:
            host = None
        root_path = self.root_path
        if prefixes and self.trust_prefix:
            elements = _list_elements(prefixes)
            if elements and _valid_prefix(elements[-1]):
                root_path = elements[-1].rstrip("/") + root_path
        if host is not None and _valid_host(host):
            encoded = host.encode("ascii")
            headers = [(n, encoded if n == b"host" else v) for n, v in headers]
        return client, scheme, headers, root_path

    def _rfc7239(
        self, lines: list[bytes], client: tuple[str, int] | None, scheme: str
    ) -> tuple[tuple[str, int] | None, str, str | None]:
        elements = parse_forwarded(lines)
        if not elements:
            return client, scheme, None
        chosen: dict[str, str] | None = None
        for element in reversed(elements):
            node = parse_forwarded_node(element.get("for", ""))
            if node is None:
                break
            client = node
            chosen = element
            if node[0] not in self.trusted:
                break
        if chosen is None:
            return client, scheme, None
        proto = chosen.get("proto")
        if proto is not None:
            scheme = _SCHEMES.get(proto.lower(), scheme)
        return client, scheme, chosen.get("host")
