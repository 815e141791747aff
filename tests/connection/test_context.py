"""What a server's connections share (wherry/connection/context.py), seen from an h11 client over
an in-memory transport: --limit-concurrency answering 503, --header and the server's own
headers, and proxy headers read only from a trusted peer."""

from __future__ import annotations

import functools
import json
import ssl
from pathlib import Path
from typing import Any

import h11

from tests.connection.clients import Gate, H1Client, H2Client, Receive, Responses, Send, respond
from tests.h2util import make_certs
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.alpn import ALPNSwitch
from wherry.connection.lifecycle import _SERVERS_KEPT, _servers, address_pair
from wherry.tls import create_tls_context


def test_past_limit_concurrency_a_request_is_answered_503(runtime: ManualRuntime) -> None:
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"served")

    ctx = server_context(app, runtime, limit_concurrency=1)
    first = H1Client(connect(ctx))
    first.request()
    second = H1Client(connect(ctx))  # a second connection: past the limit of one
    second.request()
    status, headers, body = second.response()
    assert (status, body) == (503, b"Service Unavailable\n")
    assert headers[b"connection"] == b"close"
    gate.open()
    assert first.response()[::2] == (200, b"served")


def test_header_options_replace_and_add_to_the_servers_own(runtime: ManualRuntime) -> None:
    """--header server:... replaces "server: wherry", other --header fields are added; without
    --date-header there is no date field."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, b"ok")

    ctx = server_context(app, runtime, headers=["Server: edge", "x-region: eu"], date_header=False)
    ctx.refresh_date()
    client = H1Client(connect(ctx))
    client.request()
    status, headers, _ = client.response()
    assert (status, headers[b"server"], headers[b"x-region"]) == (200, b"edge", b"eu")
    assert b"date" not in headers


def get(headers: list[tuple[str, str]]) -> h11.Request:
    return h11.Request(method="GET", target="/", headers=[("host", "a"), *headers])


async def scope_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    shown = {"client": scope["client"], "scheme": scope["scheme"], "root_path": scope["root_path"]}
    await respond(send, json.dumps(shown).encode())


def test_proxy_headers_of_a_trusted_peer_shape_the_scope(runtime: ManualRuntime) -> None:
    ctx = server_context(
        scope_app,
        runtime,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        forwarded_trust="prefix",
        root_path="/app",
    )
    assert ctx.trusts(("127.0.0.1", 50000)) and not ctx.trusts(("192.0.2.1", 1)) and not ctx.trusts(None)
    client = H1Client(connect(ctx))
    proxied = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-prefix", "/edge"),
    ]
    client.send(get(proxied), h11.EndOfMessage())
    _, _, body = client.response()
    assert json.loads(body) == {"client": ["203.0.113.7", 0], "scheme": "https", "root_path": "/edge/app"}
    untrusted = H1Client(connect(ctx, peername=("192.0.2.1", 40000)))
    untrusted.send(get(proxied), h11.EndOfMessage())
    _, _, body = untrusted.response()
    assert json.loads(body) == {"client": ["192.0.2.1", 40000], "scheme": "http", "root_path": "/app"}


def test_the_tls_extension_of_a_connection_over_tls(runtime: ManualRuntime, tmp_path: Path) -> None:
    """Over TLS every request's scope carries the ``tls`` extension, made from the connection's
    own TLS session (here a handshake done in memory, with trustme's certificates), over HTTP/1.1
    and over HTTP/2 as ALPN chose."""
    certs = make_certs(tmp_path)
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        seen.append(scope["extensions"]["tls"])
        await respond(send, b"ok")

    ctx = server_context(app, runtime, ssl_certfile=str(certs.server_file))
    tls = ctx.tls = create_tls_context(ctx.config)
    assert tls is not None
    for alpn in ("http/1.1", "h2"):
        server_side = tls_session(tls.context, certs.client_context((alpn,)))
        assert server_side.selected_alpn_protocol() == alpn
        switch = ALPNSwitch(ctx)
        transport = MemoryTransport(runtime, switch)
        transport.extra["ssl_object"] = server_side
        transport.extra["sslcontext"] = tls.context
        runtime.call(functools.partial(switch.connection_made, transport))
        if alpn == "h2":
            client = H2Client(transport)
            client.start()
            sid = client.request()
            assert Responses().add(client.events()).body == {sid: b"ok"}
        else:
            h1 = H1Client(transport)
            h1.request()
            assert h1.response()[::2] == (200, b"ok")
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0]["server_cert"] is not None and seen[0]["tls_version"] in (0x0303, 0x0304)


def tls_session(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """The server's side of a TLS session whose handshake was done in memory (no socket)."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    done = {"server": False, "client": False}
    while not all(done.values()):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
    return server_side


def test_connections_share_their_server_address() -> None:
    """The address a connection arrived on is one tuple per listening address, not one per
    connection; the client's is the connection's own. Past the addresses kept, each connection
    gets a tuple of its own, with the same value."""
    _servers.clear()  # (the addresses of the servers earlier tests started)
    first = address_pair(("10.0.0.1", 40000), ("127.0.0.1", 8000))
    assert first == (("10.0.0.1", 40000), ("127.0.0.1", 8000))
    second = address_pair(("10.0.0.2", 40001), ("".join(["127.0.0.", "1"]), 8000))  # an equal, new str
    third = address_pair(("10.0.0.3", 40002), ("127.0.0.1", 8000))
    assert second[1] is third[1]
    assert second == (("10.0.0.2", 40001), ("127.0.0.1", 8000))
    assert address_pair(None, "/run/wherry.sock") == (None, ("/run/wherry.sock", None))
    assert address_pair(None, None) == (None, None)
    for port in range(_SERVERS_KEPT + 1):  # more listening addresses than are kept
        address_pair(None, ("192.0.2.1", 10000 + port))
    last = ("192.0.2.1", 10000 + _SERVERS_KEPT + 1)
    once, again = address_pair(None, last)[1], address_pair(None, last)[1]
    assert once == again == last
    assert once is not again
    _servers.clear()
