"""Building the ASGI connection scope from a parsed request (what a trusted proxy's headers change
in it is ``proxy_headers.py``'s)."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote

from ..proto.events import Headers

ASGI_VERSION: Final = "3.0"
HTTP_SPEC_VERSION: Final = "2.5"


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a request path as UTF-8 (invalid sequences become U+FFFD)."""
    text = raw_path.decode("utf-8", "replace")
    return unquote(text) if "%" in text else text


_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


# The keys of an http scope, in order; http_scope() fills in a copy.
_HTTP_SCOPE: Final[dict[str, Any]] = dict.fromkeys(
    (
        "type",
        "asgi",
        "http_version",
        "server",
        "client",
        "scheme",
        "method",
        "root_path",
        "path",
        "raw_path",
        "query_string",
        "headers",
        "extensions",
    )
)
_HTTP_SCOPE["type"] = "http"
_ASGI: Final[dict[str, Any]] = {"version": ASGI_VERSION, "spec_version": HTTP_SPEC_VERSION}


def http_scope(
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
    """The ``http`` connection scope (www spec 2.5). ``path`` and ``raw_path`` include
    ``root_path``, as the spec asks of servers mounted under a prefix."""
    text = raw_path.decode("utf-8", "replace")
    path = unquote(text) if "%" in text else text
    if root_path:
        path = root_path + path
        raw_path = root_path.encode("utf-8") + raw_path
    # A copy of a dict with these keys, then the values: cheaper than building it key by key.
    scope = _HTTP_SCOPE.copy()
    scope["asgi"] = _ASGI.copy()
    scope["http_version"] = http_version
    scope["server"] = server
    scope["client"] = client
    scope["scheme"] = scheme
    scope["method"] = _METHODS.get(method) or method.decode("ascii")
    scope["root_path"] = root_path
    scope["path"] = path
    scope["raw_path"] = raw_path
    scope["query_string"] = query_string
    scope["headers"] = headers
    scope["extensions"] = extensions
    if state is not None:
        scope["state"] = state.copy()
    return scope


WEBSOCKET_EXTENSIONS: Final[dict[str, Any]] = {"websocket.http.response": {}}
_WS_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def websocket_scope(
    http_version: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    scheme: str,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    root_path: str,
    state: dict[str, Any] | None,
    subprotocols: list[str],
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``websocket`` connection scope (www spec 2.5); ``scheme`` is the HTTP one (http/https),
    given as ws/wss. The denial-response extension is advertised, beside ``extensions`` (tls)."""
    scope = http_scope(
        b"GET",
        http_version,
        raw_path,
        query_string,
        headers,
        scheme,
        client,
        server,
        root_path,
        state,
        {**(extensions or {}), **{name: dict(value) for name, value in WEBSOCKET_EXTENSIONS.items()}},
    )
    scope["type"] = "websocket"
    scope["scheme"] = _WS_SCHEMES.get(scheme, "ws")
    del scope["method"]
    scope["subprotocols"] = subprotocols
    return scope
