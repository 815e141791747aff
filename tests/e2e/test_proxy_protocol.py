"""--proxy-protocol over real sockets: the header of a trusted peer names the client and server in
the scope; untrusted peers get plain HTTP; malformed, missing or late headers close the connection
with nothing written. Behind the header a connection can still change protocol (WebSocket, h2c by
Upgrade or by prior knowledge) and send files with the kernel's sendfile, and every protocol it
changes to keeps the addresses the header named."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import apps
from tests.conftest import RunningServer, exchange, read_response, recv_all
from tests.h2util import H2Client, h2c_upgrade
from tests.wsframes import TEXT, close_frame, frame, handshake, open_websocket, parse_frames
from wherry.proto.proxy_protocol import v1_header, v2_header

Serve = Callable[..., RunningServer]
REQUEST = b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n"


def scope_from(sock: socket.socket) -> dict[str, Any]:
    status, headers, _body = read_response(sock)
    assert status == 200
    info: dict[str, Any] = json.loads(headers["x-scope"])
    return info


def test_v1_header_sets_client_and_server(serve: Serve) -> None:
    """A PROXY v1 line from a trusted peer: the scope's client and server are the ones it names."""
    server = serve(apps.echo, proxy_protocol=True)
    with server.connect() as sock:
        sock.sendall(v1_header(("203.0.113.7", 41000), ("198.51.100.1", 443)) + REQUEST)
        info = scope_from(sock)
        assert info["client"] == ["203.0.113.7", 41000]
        assert info["server"] == ["198.51.100.1", 443]
        sock.sendall(REQUEST)  # the next request on the connection keeps them
        assert scope_from(sock)["client"] == ["203.0.113.7", 41000]


def test_v2_header_in_pieces_then_pipelined_requests(serve: Serve) -> None:
    """A PROXY v2 header sent in pieces, followed in the same packet by two requests."""
    server = serve(apps.echo, proxy_protocol=True)
    header = v2_header(("2001:db8::7", 5555), ("2001:db8::1", 8443))
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(header[:5])
        sock.sendall(header[5:20])
        sock.sendall(header[20:] + REQUEST + b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        replies = recv_all(sock)
    assert replies.count(b"HTTP/1.1 200 OK") == 2
    assert replies.count(b'"client": ["2001:db8::7", 5555]') == 2
    assert replies.count(b'"server": ["2001:db8::1", 8443]') == 2


def test_v2_local_keeps_the_real_peer(serve: Serve) -> None:
    """LOCAL (a proxy's own health check) leaves the connection's own addresses."""
    server = serve(apps.echo, proxy_protocol=True)
    with server.connect() as sock:
        sock.sendall(v2_header(None, None, local=True) + REQUEST)
        info = scope_from(sock)
        assert info["client"][0] == "127.0.0.1"
        assert info["client"][1] == sock.getsockname()[1]


def test_forwarded_headers_of_the_proxied_client_are_not_trusted(serve: Serve) -> None:
    """Behind the PROXY header the client is the one it names: its own X-Forwarded-For is
    believed only if that client is trusted."""
    server = serve(apps.echo, proxy_protocol=True)
    spoof = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.99\r\n\r\n"
    with server.connect() as sock:
        sock.sendall(v1_header(("203.0.113.7", 41000), ("198.51.100.1", 80)) + spoof)
        assert scope_from(sock)["client"] == ["203.0.113.7", 41000]


def test_untrusted_peer_is_plain_http(serve: Serve) -> None:
    """A peer outside --forwarded-allow-ips speaks plain HTTP; a PROXY line from it is a bad
    request, never a client address."""
    server = serve(apps.echo, proxy_protocol=True, forwarded_allow_ips="192.0.2.1")
    with server.connect() as sock:
        sock.sendall(REQUEST)
        assert scope_from(sock)["client"][0] == "127.0.0.1"
    reply = exchange(server, v1_header(("203.0.113.7", 1), ("198.51.100.1", 2)) + REQUEST)
    assert reply.split(b" ")[1] in (b"400", b"501")
    assert b"203.0.113.7" not in reply


def test_trusted_peer_without_a_header_is_closed(serve: Serve) -> None:
    """From a trusted peer the header is required: plain HTTP is closed with nothing written."""
    server = serve(apps.echo, proxy_protocol=True)
    assert exchange(server, REQUEST) == b""


def test_malformed_header_closes_with_nothing_written(serve: Serve) -> None:
    """A malformed header is never answered in HTTP (there is no protocol to answer in yet)."""
    server = serve(apps.echo, proxy_protocol=True)
    assert exchange(server, b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 1\r\n" + REQUEST) == b""
    assert exchange(server, b"PROXY TCP4 " + b"1" * 200) == b""


def test_header_must_arrive_within_the_head_deadline(serve: Serve) -> None:
    """A header still incomplete after --timeout-request-head closes the connection (slowloris)."""
    server = serve(apps.echo, proxy_protocol=True, timeout_request_head=0.3)
    with server.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"PROXY TCP4 ")
        assert recv_all(sock, timeout=5) == b""
        assert 0.25 < time.monotonic() - started < 3


def test_close_before_the_header_is_complete(serve: Serve) -> None:
    """A peer that half-closes mid-header gets a close, and the server goes on."""
    server = serve(apps.echo, proxy_protocol=True)
    with server.connect() as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""
    with server.connect() as sock:
        sock.sendall(v1_header(("203.0.113.7", 1), ("198.51.100.1", 2)) + REQUEST)
        assert scope_from(sock)["client"] == ["203.0.113.7", 1]


def test_shutdown_closes_connections_waiting_for_their_header(serve: Serve) -> None:
    """A graceful shutdown does not wait for a header that may never come."""
    server = serve(apps.echo, proxy_protocol=True)
    sock = server.connect()
    sock.sendall(b"PROXY ")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert recv_all(sock) == b""
    sock.close()


# ------------------------------------------------------------------ protocol changes behind the header

CLIENT_V4, SERVER_V4 = ("203.0.113.7", 41000), ("198.51.100.1", 80)
CLIENT_V6, SERVER_V6 = ("2001:db8::7", 5555), ("2001:db8::1", 8080)
HEADERS = {
    "v1": (v1_header(CLIENT_V4, SERVER_V4), CLIENT_V4),
    "v2": (v2_header(CLIENT_V6, SERVER_V6), CLIENT_V6),
}


async def ws_scope(scope: Any, receive: Any, send: Any) -> None:
    """WebSocket: accept, then answer each text message with the scope's client, server and scheme
    as JSON; HTTP: the echo app."""
    if scope["type"] == "http":
        await apps.echo(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        info = {"client": scope["client"], "server": scope["server"], "scheme": scope["scheme"]}
        await send({"type": "websocket.send", "text": json.dumps(info)})


def read_frames(sock: socket.socket, data: bytes, count: int) -> list[tuple[int, bytes]]:
    """The first ``count`` frames the server sent, ``data`` being what already arrived."""
    sock.settimeout(5)
    while len(parse_frames(data)) < count:
        piece = sock.recv(65536)
        assert piece, f"closed after {data!r}"
        data += piece
    return parse_frames(data)[:count]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_websocket_upgrade_behind_the_header(serve: Serve, version: str) -> None:
    """A PROXY header then a WebSocket handshake: 101, messages both ways with the client and
    server the header named, and a clean close."""
    header, client = HEADERS[version]
    server = serve(ws_scope, proxy_protocol=True, lifespan="off")
    with server.connect() as sock:
        sock.sendall(header)
        _head, rest = open_websocket(sock, "/ws")
        for _ in range(2):
            sock.sendall(frame(TEXT, b"who"))
            ((opcode, payload),) = read_frames(sock, rest, 1)
            rest = b""
            assert opcode == TEXT
            info = json.loads(payload)
            assert info["client"] == list(client)
            assert info["server"] == list(SERVER_V4 if version == "v1" else SERVER_V6)
            assert info["scheme"] == "ws"
        sock.sendall(close_frame(1000))
        ((opcode, _payload),) = read_frames(sock, b"", 1)
        assert opcode == 0x8
        assert recv_all(sock) == b""


def test_websocket_handshake_in_the_header_packet(serve: Serve) -> None:
    """Header and handshake in one packet, the first frame right behind them: nothing is lost
    across the two hand-overs."""
    server = serve(ws_scope, proxy_protocol=True, lifespan="off")
    with server.connect() as sock:
        sock.sendall(HEADERS["v1"][0] + handshake("/ws") + frame(TEXT, b"who"))
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            assert piece, data
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        ((_opcode, payload),) = read_frames(sock, rest, 1)
        assert json.loads(payload)["client"] == list(CLIENT_V4)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_h2c_upgrade_behind_the_header(serve: Serve, version: str) -> None:
    """A PROXY header then an h2c Upgrade with a body: 101, the answer on stream 1 over HTTP/2
    with the body read, and the scope names the header's client and server."""
    header, client = HEADERS[version]
    server = serve(apps.echo, proxy_protocol=True, lifespan="off")
    with server.connect() as sock:
        sock.sendall(header)
        _head, headers, body = h2c_upgrade(sock, "/up", b"hello")
    assert body == b"hello"
    info = json.loads(headers[b"x-scope"])
    assert info["http_version"] == "2"
    assert info["client"] == list(client)
    assert info["server"] == list(SERVER_V4 if version == "v1" else SERVER_V6)


def test_h2c_prior_knowledge_behind_the_header(serve: Serve) -> None:
    """A PROXY header then the HTTP/2 client preface: HTTP/2 serves the connection, and the scope
    names the header's client."""
    server = serve(apps.echo, proxy_protocol=True, lifespan="off")
    with H2Client(server.host, server.port, preface=False) as h2c:
        h2c.send_raw(HEADERS["v2"][0])
        h2c.conn.initiate_connection()
        h2c.flush()
        response = h2c.response(h2c.request("/pk", scheme=b"http"))
    scope = response.header(b"x-scope")
    assert response.status == 200 and scope is not None
    info = json.loads(scope)
    assert (info["http_version"], info["client"]) == ("2", list(CLIENT_V6))


def test_pathsend_behind_the_header(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_name: str
) -> None:
    """http.response.pathsend behind a PROXY header: the file is the body, and under asyncio the
    kernel still copies it (os.sendfile), as without the header."""
    path = tmp_path / "file.bin"
    content = os.urandom(1_000_000)
    path.write_bytes(content)
    calls: list[int] = []
    real = os.sendfile

    def counting(*args: Any) -> int:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(os, "sendfile", counting)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        size = b"%d" % len(content)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", size)]})
        await send({"type": "http.response.pathsend", "path": str(path)})

    server = serve(app, proxy_protocol=True, lifespan="off")
    with server.connect() as sock:
        sock.sendall(HEADERS["v1"][0] + REQUEST)
        status, _headers, body = read_response(sock)
        assert (status, body) == (200, content)
    if loop_name == "asyncio":
        assert calls, "the file was not sent with os.sendfile"
