"""HTTP semantics of responses and of the scope, seen on the wire (RFC 9110, RFC 9112, ASGI www
spec).

Response framing (Content-Length, chunked, close-delimited), bodiless responses, connection
persistence, header injection from the app, the default headers, and the scope the app is given.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer, read_response

Serve = Callable[..., RunningServer]

WAIT = 5.0


def request(
    method: str = "GET",
    path: str = "/",
    version: str = "1.1",
    headers: bytes = b"",
    body: bytes = b"",
) -> bytes:
    host = b"Host: t\r\n"
    return b"%s %s HTTP/%s\r\n%b%b\r\n%b" % (
        method.encode(),
        path.encode(),
        version.encode(),
        host,
        headers,
        body,
    )


def read_until_close(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes; fails unless it closes within ``timeout``."""
    sock.settimeout(timeout)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def split_response(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def responder(
    status: int = 200, headers: Any = (), body: bytes = b"", pieces: list[bytes] | None = None
) -> Callable[..., Any]:
    """An app answering with fixed status and headers; the body in one message or in ``pieces``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await apps.read_body(receive)
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        if pieces is None:
            await send({"type": "http.response.body", "body": body})
            return
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


# ---------------------------------------------------------------- bodiless responses


def test_head_keeps_the_headers_and_drops_the_body(serve: Serve) -> None:
    """A response to HEAD carries the Content-Length a GET would, and no body (RFC 9110 §9.3.2)."""
    server = serve(responder(headers=[(b"content-length", b"5")], body=b"hello"))
    with server.connect() as sock:
        sock.sendall(request("HEAD") + request("GET"))
        sock.settimeout(WAIT)
        data = b""
        while data.count(b"hello") < 1:
            data += sock.recv(65536)
    first, _, rest = data.partition(b"\r\n\r\n")
    assert b"content-length: 5" in first
    assert rest.startswith(b"HTTP/1.1 200 "), "the HEAD response has no body"
    assert rest.endswith(b"\r\n\r\nhello")


def test_head_of_a_streamed_response_has_no_body(serve: Serve) -> None:
    """HEAD of a response streamed without a length: no chunk is written."""
    server = serve(responder(pieces=[b"abc", b"def"]))
    with server.connect() as sock:
        sock.sendall(request("HEAD") + request("GET", headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    _, _, rest = data.partition(b"\r\n\r\n")
    assert rest.startswith(b"HTTP/1.1 200 ")
    assert rest.endswith(b"\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(serve: Serve, status: int) -> None:
    """204 and 304 responses end at their head even when the app sends a body (RFC 9110 §15.3.5,
    §15.4.5); the next response on the connection is intact."""
    server = serve(responder(status=status, body=b"not sent"))
    with server.connect() as sock:
        sock.sendall(request() + request(headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    assert b"not sent" not in data
    assert data.count(b"HTTP/1.1 %d " % status) == 2
    assert b"transfer-encoding" not in data.lower()
    first = data.split(b"\r\n\r\n")[0].lower()
    assert b"content-length" not in first


def test_304_keeps_the_content_length_it_was_given(serve: Serve) -> None:
    """A 304 may carry the Content-Length of the selected representation (RFC 9110 §8.6)."""
    server = serve(responder(status=304, headers=[(b"content-length", b"42"), (b"etag", b'"a"')]))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    status, headers, body = split_response(data)
    assert status.startswith(b"HTTP/1.1 304")
    assert headers[b"content-length"] == b"42"
    assert body == b""


@pytest.mark.parametrize("status", [100, 101, 103, 199])
def test_informational_status_is_not_a_final_response(serve: Serve, status: int) -> None:
    """http.response.start carries the final response; a 1xx status there is an app error (500)."""
    server = serve(responder(status=status))
    with server.connect() as sock:
        sock.sendall(request())
        assert read_response(sock)[0] == 500


# ---------------------------------------------------------------- framing


def test_content_length_is_used_when_given(serve: Serve) -> None:
    """A response with Content-Length is sent with it and without chunking (RFC 9112 §6.3)."""
    server = serve(responder(headers=[(b"content-length", b"6")], pieces=[b"abc", b"def"]))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        _, headers, body = split_response(read_until_close(sock))
    assert headers[b"content-length"] == b"6"
    assert b"transfer-encoding" not in headers
    assert body == b"abcdef"


# What an app may give as http.response.start's headers: an iterable of [name, value] pairs (ASGI
# www spec), or nothing. Each is a function, so a generator is made fresh for each request.
HEADER_SHAPES: dict[str, Callable[[], Any] | None] = {
    "absent": None,
    "list of tuples": lambda: [(b"x-shape", b"1"), (b"content-length", b"2")],
    "tuple of tuples": lambda: ((b"x-shape", b"1"), (b"content-length", b"2")),
    "list of lists": lambda: [[b"x-shape", b"1"], [b"content-length", b"2"]],
    "generator": lambda: (pair for pair in [(b"x-shape", b"1"), (b"content-length", b"2")]),
}


def shaped_headers_app(shape: Callable[[], Any] | None) -> Callable[..., Any]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        start: dict[str, Any] = {"type": "http.response.start", "status": 200}
        if shape is not None:
            start["headers"] = shape()
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("shape", list(HEADER_SHAPES))
def test_response_headers_may_be_any_iterable_of_pairs(serve: Serve, shape: str) -> None:
    """ASGI www spec, http.response.start: 'headers' is an iterable of [name, value] pairs, lists or
    tuples, and may be left out; the compiled build takes what the interpreted one takes."""
    server = serve(shaped_headers_app(HEADER_SHAPES[shape]))
    for _ in range(2):  # the second time, the server knows the fields (its caches)
        with server.connect() as sock:
            sock.sendall(request(headers=b"Connection: close\r\n"))
            data = read_until_close(sock)
        _, headers, body = split_response(data)
        assert data.startswith(b"HTTP/1.1 200 ")
        assert headers.get(b"x-shape") == (None if shape == "absent" else b"1")
        assert body == (b"2\r\nok\r\n0\r\n\r\n" if shape == "absent" else b"ok")


def test_streaming_without_length_is_chunked_on_http11(serve: Serve) -> None:
    """Without Content-Length an HTTP/1.1 response is chunked (RFC 9112 §7.1); empty pieces are
    not written (a zero-size chunk would end the body)."""
    server = serve(responder(pieces=[b"abc", b"", b"defg"]))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        _, headers, body = split_response(read_until_close(sock))
    assert headers[b"transfer-encoding"] == b"chunked"
    assert body == b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"


def test_app_transfer_encoding_header_is_replaced_by_the_servers_framing(serve: Serve) -> None:
    """The server owns the framing: a Transfer-Encoding header from the app is not sent twice."""
    server = serve(responder(headers=[(b"transfer-encoding", b"chunked")], pieces=[b"ab"]))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    assert data.lower().count(b"transfer-encoding") == 1
    assert data.endswith(b"\r\n\r\n2\r\nab\r\n0\r\n\r\n")


def test_http10_response_without_length_is_close_delimited(serve: Serve) -> None:
    """HTTP/1.0 has no chunking: a response without length ends when the server closes
    (RFC 9112 §6.3 rule 8)."""
    server = serve(responder(pieces=[b"abc", b"def"]))
    with server.connect() as sock:
        sock.sendall(request(version="1.0", headers=b"Connection: keep-alive\r\n"))
        data = read_until_close(sock)
    status, headers, body = split_response(data)
    assert status.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in headers
    assert b"content-length" not in headers
    assert headers[b"connection"] == b"close"
    assert body == b"abcdef"


def test_http10_closes_unless_keep_alive(serve: Serve) -> None:
    """HTTP/1.0 connections close after one response unless the client asked for keep-alive
    (RFC 9112 §9.3)."""
    server = serve(apps.hello)
    with server.connect() as sock:
        sock.sendall(request(version="1.0"))
        _, headers, body = split_response(read_until_close(sock))
    assert body == b"Hello, world!"
    assert headers.get(b"connection") == b"close"
    with server.connect() as sock:
        sock.sendall(request(version="1.0", headers=b"Connection: keep-alive\r\n"))
        _, response_headers, _ = read_response(sock)
        assert response_headers["connection"] == "keep-alive"
        sock.sendall(request(version="1.0", headers=b"Connection: keep-alive\r\n"))
        assert read_response(sock)[::2] == (200, b"Hello, world!")


def test_connection_close_from_the_client_closes_after_the_response(serve: Serve) -> None:
    """'Connection: close' in a request: the response says so and the server closes (RFC 9112
    §9.6)."""
    server = serve(apps.hello)
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n") + request())
        data = read_until_close(sock)
    assert data.count(b"HTTP/1.1 200") == 1
    assert b"connection: close\r\n" in data


def test_connection_close_from_the_app_closes_after_the_response(serve: Serve) -> None:
    """An app that answers with 'Connection: close' ends the connection after that response."""
    app = responder(headers=[(b"connection", b"close"), (b"content-length", b"2")], body=b"hi")
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(request() + request())
        data = read_until_close(sock)
    assert data.count(b"HTTP/1.1 200") == 1
    assert data.lower().count(b"connection: close") == 1
    assert data.endswith(b"\r\n\r\nhi")


@pytest.mark.parametrize(
    ("declared", "pieces"),
    [
        (b"10", [b"0123456789", b"!"]),  # longer, in a later message
        (b"4", [b"01", b"234"]),  # longer, crossing the limit
        (b"10", [b"0123"]),  # shorter
    ],
)
def test_body_not_matching_content_length_is_an_app_error_and_closes(
    serve: Serve, caplog: pytest.LogCaptureFixture, declared: bytes, pieces: list[bytes]
) -> None:
    """A streamed body longer or shorter than its Content-Length is logged as an app error and the
    connection is closed: no byte beyond the declared length is written, and no further response
    follows on the connection."""
    server = serve(responder(headers=[(b"content-length", declared)], pieces=pieces))
    with server.connect() as sock:
        sock.sendall(request() + request())
        data = read_until_close(sock)
    _, _, body = split_response(data)
    sent = b"".join(pieces)
    assert len(body) <= int(declared)
    assert body == sent[: len(body)]
    assert data.count(b"HTTP/1.1") == 1
    assert any(r.name == "wherry.error" and r.levelno >= logging.ERROR for r in caplog.records)


@pytest.mark.parametrize(("declared", "body"), [(b"3", b"toolong"), (b"30", b"short")])
def test_single_message_body_not_matching_content_length_is_a_500(
    serve: Serve, declared: bytes, body: bytes
) -> None:
    """When nothing has been written yet, a body not matching its Content-Length becomes a 500."""
    server = serve(responder(headers=[(b"content-length", declared)], body=body))
    with server.connect() as sock:
        sock.sendall(request())
        status, _, received = read_response(sock)
    assert status == 500
    assert received == b"Internal Server Error\n"


# ---------------------------------------------------------------- header injection


@pytest.mark.parametrize(
    "header",
    [
        (b"x-ok", b"a\r\nset-cookie: injected=1"),
        (b"x-ok", b"a\nset-cookie: injected=1"),
        (b"x-ok", b"a\rset-cookie: injected=1"),
        (b"x-ok", b"a\x00b"),
        (b"x-bad\r\nset-cookie", b"injected=1"),
        (b"x-bad\n", b"v"),
        (b"x-bad\x00", b"v"),
        (b"x bad", b"v"),
        (b"", b"v"),
        (b"x-ok", b"a\x7fb"),
    ],
)
def test_response_headers_with_control_characters_are_a_500(
    serve: Serve, header: tuple[bytes, bytes]
) -> None:
    """CR, LF or NUL in a response header name or value never reach the wire: the app's response is
    replaced by a 500 (response splitting, CVE-2020-7695)."""
    server = serve(responder(headers=[header], body=b"body"))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"injected" not in data
    assert b"body" not in data


def test_header_values_may_hold_tabs_and_obs_text(serve: Serve) -> None:
    """HTAB and bytes 0x80-0xFF are allowed in field values (RFC 9110 §5.5)."""
    server = serve(responder(headers=[(b"x-value", b"a\tb \xe9")], body=b"ok"))
    with server.connect() as sock:
        sock.sendall(request(headers=b"Connection: close\r\n"))
        data = read_until_close(sock)
    assert b"\r\nx-value: a\tb \xe9\r\n" in data


# ---------------------------------------------------------------- the scope


def scope_of(server: RunningServer, raw: bytes) -> dict[str, Any]:
    with server.connect() as sock:
        sock.sendall(raw)
        status, headers, _ = read_response(sock)
    assert status == 200
    return json.loads(headers["x-scope"])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("target", "path", "raw_path", "query"),
    [
        ("/plain", "/plain", "/plain", ""),
        ("/caf%C3%A9/x%20y?q=%20", "/café/x y", "/caf%C3%A9/x%20y", "q=%20"),
        ("/a%2Fb", "/a/b", "/a%2Fb", ""),
        ("/bad%FFutf8", "/bad\ufffdutf8", "/bad%FFutf8", ""),
        ("/%1b%5b31m", "/\x1b[31m", "/%1b%5b31m", ""),
        ("http://example.com/abs%20path?x=1", "/abs path", "/abs%20path", "x=1"),
        ("http://example.com", "/", "/", ""),
    ],
)
def test_path_is_percent_decoded_utf8_and_raw_path_is_as_sent(
    serve: Serve, target: str, path: str, raw_path: str, query: str
) -> None:
    """scope['path'] is the percent-decoded UTF-8 path, raw_path the bytes sent, query_string
    undecoded (www spec 2.5); absolute-form targets give their path (RFC 9112 §3.2.2)."""
    server = serve(apps.echo)
    info = scope_of(server, request(path=target))
    assert (info["path"], info["raw_path"], info["query_string"]) == (path, raw_path, query)


def test_root_path_is_prefixed_to_path_and_raw_path(serve: Serve) -> None:
    """With root_path, path and raw_path include the prefix and root_path names it (as uvicorn does
    since 0.26, following the www spec's definition of root_path)."""
    server = serve(apps.echo, root_path="/api")
    info = scope_of(server, request(path="/items/a%20b?x=1"))
    assert info["root_path"] == "/api"
    assert info["path"] == "/api/items/a b"
    assert info["raw_path"] == "/api/items/a%20b"
    assert info["query_string"] == "x=1"


def test_headers_are_lowercased_and_kept_in_order_with_repeats(serve: Serve) -> None:
    """scope['headers'] keeps every field line, names lowercased, in the order received."""
    server = serve(apps.echo)
    info = scope_of(
        server,
        request(headers=b"X-B: 1\r\nAccept: a\r\nX-B: 2\r\nCookie: c=1\r\nCOOKIE: d=2\r\n"),
    )
    assert info["headers"] == [
        ["host", "t"],
        ["x-b", "1"],
        ["accept", "a"],
        ["x-b", "2"],
        ["cookie", "c=1"],
        ["cookie", "d=2"],
    ]


def test_client_and_server_are_the_socket_addresses(serve: Serve) -> None:
    """scope['client'] and scope['server'] are the peer's and the listening socket's addresses."""
    server = serve(apps.echo)
    with server.connect() as sock:
        local = sock.getsockname()
        sock.sendall(request())
        info = json.loads(read_response(sock)[1]["x-scope"])
    assert info["client"] == [local[0], local[1]]
    assert info["server"] == [server.host, server.port]
    assert info["scheme"] == "http"
    assert info["http_version"] == "1.1"


def test_http10_scope_version(serve: Serve) -> None:
    """An HTTP/1.0 request has http_version '1.0' in its scope."""
    server = serve(apps.echo)
    assert scope_of(server, request(version="1.0"))["http_version"] == "1.0"


# ---------------------------------------------------------------- default headers


def test_date_and_server_headers_are_added(serve: Serve) -> None:
    """Every response carries 'server: wherry' and a date within a second of now (RFC 9110
    §6.6.1)."""
    server = serve(apps.hello)
    with httpx.Client(base_url=server.url) as client:
        before = time.time()
        dates = [client.get("/").headers["date"] for _ in range(5)]
        after = time.time()
        response = client.get("/")
    assert response.headers["server"] == "wherry"
    for date in dates:
        stamp = parsedate_to_datetime(date).timestamp()
        assert int(before) - 1 <= stamp <= after + 1
    assert len(set(dates)) <= 2 + int(after - before), "one value per second"


def test_date_header_is_refreshed(serve: Serve) -> None:
    """The date header follows the clock (it is refreshed once a second, not frozen at start)."""
    server = serve(apps.hello)
    first = httpx.get(server.url).headers["date"]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        latest = httpx.get(server.url).headers["date"]
        if latest != first:
            break
        time.sleep(0.1)
    assert parsedate_to_datetime(latest) > parsedate_to_datetime(first)


@pytest.mark.parametrize(
    ("options", "present", "absent"),
    [
        ({}, {"server": "wherry"}, []),
        ({"server_header": False}, {}, ["server"]),
        ({"date_header": False}, {"server": "wherry"}, ["date"]),
        ({"server_header": False, "date_header": False}, {}, ["server", "date"]),
        (
            {"headers": ["x-frame-options: DENY", "x-team:blue"]},
            {"x-frame-options": "DENY", "x-team": "blue", "server": "wherry"},
            [],
        ),
        ({"headers": ["Server: edge"]}, {"server": "edge"}, []),
    ],
)
def test_default_headers_options(
    serve: Serve, options: dict[str, Any], present: dict[str, str], absent: list[str]
) -> None:
    """--header adds default headers; --no-server-header and --no-date-header remove theirs; a
    --header named server replaces the default one."""
    server = serve(apps.hello, **options)
    response = httpx.get(server.url)
    for name, value in present.items():
        assert response.headers.get_list(name) == [value]
    for name in absent:
        assert name not in response.headers
    if options.get("date_header", True):
        assert "date" in response.headers
