"""The ASGI extensions on HTTP/1.1 (asgiref docs/extensions.rst): http.response.trailers on chunked
responses when the client sent ``TE: trailers``, http.response.early_hint (103), and
http.response.pathsend (sendfile on plain sockets), plus the message-order rules they add."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, read_response
from tests.h2util import Certs, make_certs

Serve = Callable[..., RunningServer]
WAIT = 5.0


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ext-certs"))


def read_raw_response(sock: socket.socket, end: bytes) -> bytes:
    """Read until the bytes end with ``end`` (the end of a chunked message)."""
    sock.settimeout(WAIT)
    data = b""
    while not data.endswith(end):
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    return data


async def with_trailers(scope: Any, receive: Any, send: Any) -> None:
    assert "http.response.trailers" in scope["extensions"]
    headers = [(b"trailer", b"x-checksum")]
    if scope["path"] == "/length":
        headers.append((b"content-length", b"4"))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    await send({"type": "http.response.body", "body": b"da", "more_body": True})
    await send({"type": "http.response.body", "body": b"ta"})
    await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})


def test_trailers_on_chunked_response_when_client_accepts_them(serve: Serve) -> None:
    """ASGI http.response.trailers, RFC 9112 §7.1.2: the trailer section follows the last chunk
    when the request said TE: trailers."""
    server = serve(with_trailers, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n")
        data = read_raw_response(sock, b"\r\n0\r\nx-checksum: abc\r\n\r\n")
    assert b"transfer-encoding: chunked" in data
    assert data.endswith(b"2\r\nda\r\n2\r\nta\r\n0\r\nx-checksum: abc\r\n\r\n")


def test_trailers_are_dropped_without_te_trailers(serve: Serve) -> None:
    """ASGI: 'The ASGI server will only send the trailing headers in case the client has sent the
    TE: trailers header'; the response still ends properly and the connection is kept."""
    server = serve(with_trailers, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = read_response(sock)
        assert (status, body) == (200, b"data")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_trailers_with_content_length_cannot_be_sent(serve: Serve) -> None:
    """RFC 9112 §6.5: trailers need chunked framing; a Content-Length response ends without them."""
    server = serve(with_trailers, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET /length HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n")
        status, headers, body = read_response(sock)
        assert (status, body, headers["content-length"]) == (200, b"data", "4")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_trailers_without_the_start_flag_is_an_app_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """ASGI: trailers are only sent after a start with trailers: True; otherwise the message is
    out of order and logged as an application error."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": []})

    logged = threading.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Exception in ASGI application" in record.getMessage():
                logged.set()

    handler = Handler()
    logging.getLogger("wherry.error").addHandler(handler)
    try:
        server = serve(app, lifespan="off")
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert read_response(sock)[::2] == (200, b"ok")
        assert logged.wait(WAIT)
    finally:
        logging.getLogger("wherry.error").removeHandler(handler)


def test_early_hint_is_a_103_before_the_response(serve: Serve) -> None:
    """ASGI http.response.early_hint, RFC 8297: 103 Early Hints with the Link fields, then the
    final response on the same connection."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send(
            {"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload", b"</b.js>; rel=preload"]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(WAIT)
        data = b""
        while not data.endswith(b"\r\n\r\nok"):
            piece = sock.recv(65536)
            assert piece, data
            data += piece
    assert data.startswith(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\nlink: </b.js>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n"
    )


def test_early_hint_is_not_sent_to_http10(serve: Serve) -> None:
    """RFC 9110 §15.2: a server must not send a 1xx to an HTTP/1.0 client."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"ok")


def test_push_on_http11_is_ignored(serve: Serve) -> None:
    """ASGI http.response.push: HTTP/1.1 cannot push, the scope does not offer it, and a push
    message is ignored."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.push" not in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.push", "path": "/x.css", "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[::2] == (200, b"ok")


def file_app(path: Path, length: bool = True) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.pathsend" in scope["extensions"]
        size = path.stat().st_size if path.exists() else 0
        headers = [(b"content-length", b"%d" % size)] if length else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "chunked"])
def test_pathsend_sends_the_file(
    serve: Serve, tmp_path: Path, length: bool, monkeypatch: pytest.MonkeyPatch, loop_name: str
) -> None:
    """ASGI http.response.pathsend: the file is the body, with Content-Length or in one chunk;
    on a plain socket under asyncio the kernel copies it (os.sendfile)."""
    path = tmp_path / "file.bin"
    content = os.urandom(1_000_000)
    path.write_bytes(content)
    calls: list[int] = []
    real = os.sendfile

    def counting(*args: Any) -> int:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting)
    server = serve(file_app(path, length), lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = read_response(sock)
        assert (status, body) == (200, content)
        assert ("content-length" in headers) == length
        # HEAD: the head only; the next response follows it at once (no body bytes between).
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 200 OK\r\n") < 2:
            piece = sock.recv(65536)
            assert piece
            data += piece
        head_end = data.index(b"\r\n\r\n") + 4
        assert data[head_end:].startswith(b"HTTP/1.1 200 OK\r\n")
    if loop_name == "asyncio":
        assert calls, "the file was not sent with os.sendfile"


def test_pathsend_over_tls_sends_the_file_in_pieces(serve: Serve, certs: Certs, tmp_path: Path) -> None:
    """pathsend over TLS (no sendfile through encryption): the file arrives whole."""
    path = tmp_path / "tls.bin"
    content = os.urandom(300_000)
    path.write_bytes(content)
    server = serve(file_app(path), lifespan="off", ssl_certfile=str(certs.server_file))
    context = certs.client_context(("http/1.1",))
    with context.wrap_socket(server.connect(), server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = read_response(sock)
    assert (status, body) == (200, content)


@pytest.mark.parametrize("where", ["missing", "relative"])
def test_pathsend_of_a_bad_path_is_a_500(serve: Serve, tmp_path: Path, where: str) -> None:
    """A pathsend whose file does not exist, or whose path is not absolute, is an app error found
    before the head is written: a 500."""
    path = tmp_path / "nope.bin" if where == "missing" else Path("relative.bin")
    server = serve(file_app(path, length=False), lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 500
