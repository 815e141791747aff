"""The HTTP/2 driver's less travelled paths over an in-memory transport, against the h2 client:
ALPN, the ASGI extensions (trailers, early hints, push, pathsend), resets, and shutdown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h2.events
import pytest

from tests.connection.clients import Gate, H1Client, H2Client, Receive, Responses, Send, read_body, respond
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.alpn import ALPNSwitch
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver
from wherry.connection.http2 import H2Driver


class ChosenProtocol:
    """The part of an SSL object the ALPN switch reads."""

    def __init__(self, protocol: str | None) -> None:
        self.protocol = protocol

    def selected_alpn_protocol(self) -> str | None:
        return self.protocol


def over_tls(ctx: ServerContext, alpn: str | None) -> MemoryTransport:
    """A TLS connection whose handshake chose ``alpn``, as the asyncio backend makes one."""
    runtime = ctx.runtime
    assert isinstance(runtime, ManualRuntime)
    switch = ALPNSwitch(ctx)
    transport = MemoryTransport(runtime, switch)
    transport.extra["ssl_object"] = ChosenProtocol(alpn)
    transport.extra["sslcontext"] = object()
    runtime.call(lambda: switch.connection_made(transport))
    return transport


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await respond(send, f"{scope['scheme']} {scope['http_version']}:".encode() + body)


def started(transport: MemoryTransport) -> H2Client:
    client = H2Client(transport)
    client.start()
    return client


def driver(transport: MemoryTransport) -> H2Driver:
    protocol = transport.protocol
    assert isinstance(protocol, H2Driver)
    return protocol


# ---------------------------------------------------------------------- ALPN


def test_alpn_h2_installs_the_http2_driver(runtime: ManualRuntime) -> None:
    """When ALPN chose h2 the connection is served as HTTP/2 over https."""
    transport = over_tls(server_context(echo, runtime), "h2")
    assert isinstance(transport.protocol, H2Driver)
    client = started(transport)
    sid = client.request("/", "POST", b"x")
    responses = Responses().add(client.events())
    assert responses.body == {sid: b"https 2:x"}


def test_alpn_http11_installs_the_http11_driver(runtime: ManualRuntime) -> None:
    """When ALPN chose http/1.1 the connection is served as HTTP/1.1 over https."""
    transport = over_tls(server_context(echo, runtime), "http/1.1")
    assert isinstance(transport.protocol, H1Driver)
    client = H1Client(transport)
    client.request("POST", "/", b"y")
    assert client.response()[2] == b"https 1.1:y"


def test_alpn_h2_with_http2_off_falls_back_to_http11(runtime: ManualRuntime) -> None:
    """With HTTP/2 disabled an h2 choice still gets the HTTP/1.1 driver."""
    transport = over_tls(server_context(echo, runtime, http2=False), "h2")
    assert isinstance(transport.protocol, H1Driver)


def test_alpn_without_ssl_object_is_http11(runtime: ManualRuntime) -> None:
    """A transport with no SSL object gets the HTTP/1.1 driver; a lost connection before it is ignored."""
    ctx = server_context(echo, runtime)
    switch = ALPNSwitch(ctx)
    switch.connection_lost(None)
    transport = MemoryTransport(runtime, switch)
    runtime.call(lambda: switch.connection_made(transport))
    assert isinstance(transport.protocol, H1Driver)
    client = H1Client(transport)
    client.request("POST", "/", b"z")
    assert client.response()[2] == b"http 1.1:z"


# ---------------------------------------------------------------------- ASGI extensions


def test_trailers_end_an_http2_response(runtime: ManualRuntime) -> None:
    """The app's trailers arrive as a trailing HEADERS frame that ends the stream."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")]})

    client = started(connect(server_context(app, runtime)))
    sid = client.request()
    events = client.events()
    trailers = [e for e in events if isinstance(e, h2.events.TrailersReceived)]
    assert len(trailers) == 1 and trailers[0].headers == [(b"x-sum", b"42")]
    assert Responses().add(events).body == {sid: b"data"}


def test_early_hint_and_push(runtime: ManualRuntime) -> None:
    """An early hint is a 103 on the stream, and a push promises the path and answers it too."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/style.css":
            await respond(send, b"css")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    client = started(connect(server_context(app, runtime)))
    sid = client.request("/")
    events = client.events()
    informational = [e for e in events if isinstance(e, h2.events.InformationalResponseReceived)]
    assert informational and dict(informational[0].headers or [])[b":status"] == b"103"
    promised = [e for e in events if isinstance(e, h2.events.PushedStreamReceived)]
    assert len(promised) == 1 and dict(promised[0].headers or [])[b":path"] == b"/style.css"
    responses = Responses().add(events)
    assert responses.body == {sid: b"page", promised[0].pushed_stream_id: b"css"}


def pathsend(path: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": str(path)})

    return app


def test_pathsend_over_http2_follows_the_window(runtime: ManualRuntime, tmp_path: Path) -> None:
    """A file larger than the stream's window is sent as the client opens it, all of it in order."""
    content = bytes(range(256)) * 400  # 100 KiB: beyond the default 64 KiB window
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    client = started(connect(server_context(pathsend(path), runtime)))
    sid = client.request()
    responses = Responses()
    for _ in range(10):
        events = client.events()
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                assert event.stream_id is not None
                client.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        client.flush()
        responses.add(events)
        if responses.ended:
            break
    assert responses.ended == [sid] and responses.body[sid] == content


def test_pathsend_of_an_empty_file_over_http2(runtime: ManualRuntime, tmp_path: Path) -> None:
    """An empty file ends the stream with no data."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    client = started(connect(server_context(pathsend(path), runtime)))
    sid = client.request()
    responses = Responses().add(client.events())
    assert responses.ended == [sid] and responses.body.get(sid, b"") == b""


def test_pathsend_to_head_reads_no_file(runtime: ManualRuntime, tmp_path: Path) -> None:
    """A HEAD request's pathsend ends the stream without a body."""
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")
    client = started(connect(server_context(pathsend(path), runtime)))
    sid = client.request("/", "HEAD")
    responses = Responses().add(client.events())
    assert responses.status == {sid: 200} and responses.ended == [sid] and sid not in responses.body


# ---------------------------------------------------------------------- resets and closing


def test_stream_reset_by_the_client_disconnects_its_app(runtime: ManualRuntime) -> None:
    """An app whose stream the client resets receives http.disconnect; other streams go on."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/wait":
            seen.append(await receive())
            seen.append(await receive())
            return
        await respond(send, b"ok")

    client = started(connect(server_context(app, runtime)))
    waiting = client.request("/wait", "POST", b"a", end=False)
    client.events()
    client.conn.reset_stream(waiting)
    client.flush()
    assert seen[-1] == {"type": "http.disconnect"}
    sid = client.request("/other")
    assert Responses().add(client.events()).body == {sid: b"ok"}


def test_shutdown_sends_goaway_and_lets_streams_finish(runtime: ManualRuntime) -> None:
    """Graceful shutdown sends GOAWAY; the stream in flight is still answered, then the connection closes."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"last")

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = started(transport)
    sid = client.request()
    client.events()
    ctx.shutting_down = True
    runtime.call(driver(transport).shutdown)
    goaway = [e for e in client.events() if isinstance(e, h2.events.ConnectionTerminated)]
    assert len(goaway) == 1 and goaway[0].last_stream_id == sid
    assert not transport.closing
    gate.open()
    assert b"last" in transport.take()  # (the h2 client reads nothing after a GOAWAY)
    runtime.advance(60.0)
    assert transport.closing


def test_abort_all_disconnects_running_apps(runtime: ManualRuntime) -> None:
    """At the end of the graceful period the connection is aborted and its apps see a disconnect."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    client = started(transport)
    client.request()
    runtime.call(driver(transport).abort_all)
    assert transport.aborted and seen == [{"type": "http.disconnect"}]


def test_peer_eof_closes_an_idle_connection(runtime: ManualRuntime) -> None:
    """A client that half-closes an HTTP/2 connection with nothing in flight has it closed."""
    transport = connect(server_context(echo, runtime))
    client = started(transport)
    client.events()
    transport.receive_eof()
    assert transport.closing


def test_access_line_of_an_http2_request(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """With the access log on, an HTTP/2 request has its line with HTTP/2."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    client = started(connect(server_context(echo, runtime, access_log=True)))
    client.request("/logged")
    client.events()
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    assert len(lines) == 1 and '"GET /logged HTTP/2" 200' in lines[0]
