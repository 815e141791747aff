"""The ``http`` and ``websocket`` connection scopes built from a parsed request (www spec 2.5)."""

from __future__ import annotations

from typing import Any

import pytest

from wherry.asgi.scope import decode_path, http_scope, websocket_scope


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/plain", "/plain"),
        (b"/a%20b/%C3%A9", "/a b/é"),
        (b"/bad%FF", "/bad\ufffd"),
        (b"/raw\xff", "/raw\ufffd"),
    ],
    ids=["plain", "escaped", "escaped-invalid", "raw-invalid"],
)
def test_decode_path_percent_decodes_utf8(raw: bytes, path: str) -> None:
    """decode_path() percent-decodes as UTF-8, invalid sequences becoming U+FFFD."""
    assert decode_path(raw) == path


def http(raw_path: bytes, root_path: str = "", state: dict[str, Any] | None = None) -> dict[str, Any]:
    return http_scope(
        b"PROPFIND",
        "1.1",
        raw_path,
        b"q=1",
        [(b"host", b"t")],
        "https",
        ("10.0.0.1", 5000),
        ("10.0.0.2", 443),
        root_path,
        state,
        {},
    )


def test_the_root_path_prefixes_path_and_raw_path() -> None:
    """With a root_path, path and raw_path both begin with it (www spec 2.5)."""
    scope = http(b"/a%20b", root_path="/mnt")
    assert (scope["root_path"], scope["path"], scope["raw_path"]) == ("/mnt", "/mnt/a b", b"/mnt/a%20b")


def test_an_uncommon_method_is_decoded_and_state_is_a_copy() -> None:
    """A method outside the common ones is given as its text; the scope's state is a shallow copy
    of the lifespan state, so an app's change to it stays in its request."""
    state = {"db": "pool"}
    scope = http(b"/", state=state)
    assert scope["method"] == "PROPFIND"
    scope["state"]["db"] = "other"
    assert state == {"db": "pool"}
    assert "state" not in http(b"/")


@pytest.mark.parametrize(
    ("scheme", "ws_scheme"), [("http", "ws"), ("https", "wss"), ("wss", "wss"), ("odd", "ws")]
)
def test_a_websocket_scope_has_a_ws_scheme_and_the_denial_extension(scheme: str, ws_scheme: str) -> None:
    """The websocket scope gives the scheme as ws/wss, no method, the subprotocols, and advertises
    websocket.http.response beside the connection's own extensions."""
    tls = {"server_cert": None}
    scope = websocket_scope(
        "1.1", b"/chat", b"", [], scheme, None, None, "", None, ["v1", "v2"], {"tls": tls}
    )
    assert (scope["type"], scope["scheme"], scope["subprotocols"]) == ("websocket", ws_scheme, ["v1", "v2"])
    assert "method" not in scope
    assert scope["extensions"] == {"tls": tls, "websocket.http.response": {}}


def test_each_websocket_scope_has_its_own_extension_dicts() -> None:
    """Two websocket scopes do not share the denial extension's dict, so an app cannot change another's."""
    first = websocket_scope("1.1", b"/", b"", [], "http", None, None, "", None, [])
    second = websocket_scope("1.1", b"/", b"", [], "http", None, None, "", None, [])
    first["extensions"]["websocket.http.response"]["x"] = 1
    assert second["extensions"] == {"websocket.http.response": {}}
