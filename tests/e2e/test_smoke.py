"""The basics over real sockets with real clients."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests import apps
from tests.conftest import RunningServer, exchange


def test_get_with_httpx(serve: Callable[..., RunningServer]) -> None:
    """A GET is answered with the app's status, headers and body, plus date and server headers."""
    server = serve(apps.hello)
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["server"] == "wherry"
    assert "date" in response.headers


def test_scope_contents(serve: Callable[..., RunningServer]) -> None:
    """The http scope carries every key of ASGI www spec 2.5."""
    server = serve(apps.echo)
    response = httpx.post(server.url + "/a%20b/c?x=1", content=b"body", headers={"X-Test": "yes"})
    info = json.loads(response.headers["x-scope"])
    assert response.content == b"body"
    assert info["path"] == "/a b/c"
    assert info["raw_path"] == "/a%20b/c"
    assert info["query_string"] == "x=1"
    assert info["method"] == "POST"
    assert info["scheme"] == "http"
    assert info["http_version"] == "1.1"
    assert info["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert info["server"] == ["127.0.0.1", server.port]
    assert info["client"][0] == "127.0.0.1"
    assert ["x-test", "yes"] in info["headers"]


def test_pipelined_requests_answered_in_order(serve: Callable[..., RunningServer]) -> None:
    """Pipelined requests are answered strictly in order (RFC 9112 §9.3.2)."""
    server = serve(apps.echo)
    requests = b"".join(
        b"POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n%d" % (i, i % 10) for i in range(20)
    )
    data = exchange(server, requests + b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    paths = [
        json.loads(line.split(b": ", 1)[1])["path"]
        for line in data.split(b"\r\n")
        if line.startswith(b"x-scope")
    ]
    assert paths == [f"/{i}" for i in range(20)] + ["/last"]
