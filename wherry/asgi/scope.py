"""Building the ASGI connection scope from a parsed request."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import unquote

from ..proto.events import Headers

ASGI_VERSION = "3.0"
HTTP_SPEC_VERSION = "2.5"


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path as UTF-8 (invalid sequences become U+FFFD)."""
    text = raw_path.decode("utf-8", "replace")
    return unquote(text) if "%" in text else text


class TrustedHosts:
    """``--forwarded-allow-ips``: literal addresses, CIDR networks, ``*``, and ``unix`` for UDS peers."""

    __slots__ = ("_always", "_hosts", "_networks")

    def __init__(self, spec: str | list[str] | None) -> None:
        if isinstance(spec, str):
            items = [s.strip() for s in spec.split(",")]
        else:
            items = [s.strip() for s in (spec or [])]
        self._always = "*" in items
        self._hosts: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in items:
            if not item or item == "*":
                continue
            try:
                if "/" in item:
                    self._networks.append(ipaddress.ip_network(item, strict=False))
                else:
                    self._hosts.add(str(ipaddress.ip_address(item)))
            except ValueError:
                self._hosts.add(item)  # a literal such as "unix" for Unix-socket peers

    def __contains__(self, host: object) -> bool:
        if self._always:
            return True
        if not isinstance(host, str):
            return False
        if host in self._hosts:
            return True
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def apply_proxy_headers(
    headers: Headers,
    client: tuple[str, int] | None,
    scheme: str,
    trusted: TrustedHosts,
) -> tuple[tuple[str, int] | None, str]:
    """Read X-Forwarded-For / X-Forwarded-Proto when the direct peer is trusted.

    The client is the right-most address in X-Forwarded-For that is not itself a trusted proxy.
    Several X-Forwarded-For lines are read as one list (in order), as RFC 9110 §5.3 allows.
    """
    forwarded_for: list[bytes] = []
    proto: bytes | None = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            forwarded_for.append(value)
        elif name == b"x-forwarded-proto":
            proto = value
    if proto is not None:
        candidate = proto.decode("latin-1").strip().lower().rsplit(",", 1)[-1].strip()
        if candidate in ("http", "https", "ws", "wss"):
            scheme = "https" if candidate in ("https", "wss") else "http"
    if forwarded_for:
        hosts = [h.strip() for h in b",".join(forwarded_for).decode("latin-1").split(",")]
        chosen: str | None = None
        for host in reversed(hosts):
            if host and host not in trusted:
                chosen = host
                break
        if chosen is None:
            chosen = hosts[0] if hosts and hosts[0] else None
        if chosen:
            if chosen.startswith("["):
                chosen = chosen[1:].partition("]")[0]
            elif chosen.count(":") == 1:
                chosen = chosen.partition(":")[0]
            client = (chosen, 0)
    return client, scheme


def http_scope(
    *,
    method: bytes,
    http_version: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any],
) -> dict[str, Any]:
    path = decode_path(raw_path)
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": ASGI_VERSION, "spec_version": HTTP_SPEC_VERSION},
        "http_version": http_version,
        "server": server,
        "client": client,
        "scheme": scheme,
        "method": method.decode("ascii"),
        "root_path": root_path,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "headers": headers,
        "extensions": extensions,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope
