"""--proxy-protocol over real sockets: the header of a trusted peer names the client and server in
the scope; untrusted peers get plain HTTP; malformed, missing or late headers close the connection
with nothing written."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from tests import apps
from tests.conftest import RunningServer, exchange, read_response, recv_all
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
