"""h2c Upgrade for a request that carries a body (RFC 7540 §3.2, RFC 9110 §7.8 and §10.1.1), with
curl and with raw bytes: the 101 is sent only once the whole body is in, because a client takes the
101 as the switch of both directions (curl stops uploading at it); and a body held behind
``Expect: 100-continue`` is served over HTTP/1.1, because its client waits for an HTTP/1.1 100 that
cannot follow a 101."""

from __future__ import annotations

import select
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.conftest import RunningServer, read_response
from tests.h2util import WAIT

Serve = Callable[..., RunningServer]
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

UPGRADE = b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"


class Counter:
    """Reads the whole body and answers with what carried it: the HTTP version, whether the request
    said Expect, and the body's size. ``first`` is set once the first piece of body was read."""

    def __init__(self) -> None:
        self.first = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if size:
                self.first.set()
            if not message.get("more_body"):
                break
        expect = "expect" if any(name == b"expect" for name, _ in scope["headers"]) else "-"
        body = f"{scope['http_version']} {expect} {size}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def curl(url: str, *args: str) -> bytes:
    result = subprocess.run(
        ["curl", "-sS", "--http2", "--max-time", "20", *args, url], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


@needs_curl
def test_curl_upload_of_a_large_file_completes(serve: Serve, tmp_path: Path) -> None:
    """curl --http2 -d @file (plain http): curl offers h2c and, for a body over 1 MB, adds Expect:
    100-continue. Such a request is served over HTTP/1.1 with its 100 (RFC 9110 §7.8 lets the
    server decline the upgrade), so the upload completes instead of both sides waiting."""
    server = serve(Counter(), lifespan="off")
    data = tmp_path / "big.bin"
    data.write_bytes(b"b" * 2_500_000)
    version, expect, size = curl(server.url + "/up", "--data-binary", f"@{data}").split()
    assert size == b"2500000"
    assert version == (b"1.1" if expect == b"expect" else b"2")


@needs_curl
def test_curl_upload_with_an_explicit_expect_is_served_over_http11(serve: Serve) -> None:
    """RFC 9110 §10.1.1: with Expect: 100-continue the body waits for a 100 on HTTP/1.1; the
    upgrade is declined and the small body arrives whole."""
    server = serve(Counter(), lifespan="off")
    assert curl(server.url + "/up", "-H", "Expect: 100-continue", "-d", "x" * 5000) == b"1.1 expect 5000"


@needs_curl
def test_curl_upload_without_expect_is_upgraded_once_the_body_is_in(serve: Serve, tmp_path: Path) -> None:
    """RFC 7540 §3.2: without Expect the whole body is sent in HTTP/1.1 framing; the 101 comes
    after it, so curl (which switches at the 101) has sent every byte; the answer is HTTP/2."""
    server = serve(Counter(), lifespan="off")
    data = tmp_path / "big.bin"
    data.write_bytes(b"b" * 3_000_000)
    assert curl(server.url + "/up", "-H", "Expect:", "--data-binary", f"@{data}") == b"2 - 3000000"


def test_expect_100_continue_with_h2c_gets_an_http11_100_and_no_101(serve: Serve) -> None:
    """RFC 9110 §7.8, §10.1.1, raw bytes: Upgrade: h2c with Expect: 100-continue and a body is
    answered HTTP/1.1 100 Continue when the app reads, then HTTP/1.1 200; never 101."""
    server = serve(Counter(), lifespan="off")
    with server.connect() as sock:
        sock.sendall(
            UPGRADE + b"HTTP2-Settings: AAMAAABkAAQAAP__\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        status, _, _ = read_response(sock)
        assert status == 100
        sock.sendall(b"hello")
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"1.1 expect 5")


def h2_client() -> tuple[h2.connection.H2Connection, bytes]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings_header = conn.initiate_upgrade_connection()
    assert settings_header is not None
    return conn, settings_header


def read_upgraded(sock: Any, conn: h2.connection.H2Connection) -> tuple[bytes, bytes]:
    """After the body: the 101 head, then the response on stream 1 over HTTP/2."""
    sock.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, data
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    sock.sendall(conn.data_to_send())
    body = b""
    ended = False
    while not ended:
        for event in conn.receive_data(rest):
            if isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        sock.sendall(conn.data_to_send())
        if not ended:
            rest = sock.recv(65536)
            assert rest
    return head, body


def test_the_101_waits_for_the_whole_body(serve: Serve) -> None:
    """RFC 7540 §3.2: the body comes before anything HTTP/2. While it is arriving (the app has read
    its first half) the server has written nothing; once the rest is in, the 101 comes, then the
    answer on stream 1 with the whole body read."""
    app = Counter()
    server = serve(app, lifespan="off")
    conn, settings = h2_client()
    with server.connect() as sock:
        sock.sendall(UPGRADE + b"HTTP2-Settings: " + settings + b"\r\nContent-Length: 10\r\n\r\nhello")
        assert app.first.wait(WAIT)
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, sock.recv(65536)  # no 101 yet
        sock.sendall(b"world")
        head, body = read_upgraded(sock, conn)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert body == b"2 - 10"


def test_an_app_that_answers_without_reading_the_body_still_gets_its_101(serve: Serve) -> None:
    """An app that answers before reading the upgrade body (which is bigger than the server buffers
    for it, so reading paused): the rest of the body is read and dropped, then the 101 and the
    answer go; the connection does not wait for ever."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"too big"})

    server = serve(app, lifespan="off")
    conn, settings = h2_client()
    size = 2_000_000
    with server.connect() as sock:
        sock.sendall(UPGRADE + b"HTTP2-Settings: " + settings + b"\r\nContent-Length: %d\r\n\r\n" % size)
        sock.sendall(b"b" * size)
        head, body = read_upgraded(sock, conn)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert body == b"too big"
