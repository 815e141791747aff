"""The HTTP/1.1 driver's rarer turns over an in-memory transport: bodies that break framing,
timeouts and upgrades behind pipelined requests, half-closes, files that fail while being sent,
responses longer than announced, metrics and access-line atoms, and transports that cannot
half-close."""

from __future__ import annotations

from typing import Any

from tests.connection.clients import Gate, Receive, Send, parse_responses, read_body, respond
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver


def raw(method: str = "GET", target: str = "/", *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "host: example.com", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect_with(ctx: ServerContext, kind: type[MemoryTransport]) -> MemoryTransport:
    """``connect`` with a transport of another class."""
    runtime = ctx.runtime
    assert isinstance(runtime, ManualRuntime)
    driver = H1Driver(ctx)
    transport = kind(runtime, driver)
    runtime.call(lambda: driver.connection_made(transport))
    return transport


async def hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await read_body(receive)
    await respond(send, b"hello")


def recorder(seen: list[dict[str, Any]], gate: Gate | None = None, start_first: bool = False) -> Any:
    """An app that records every message it receives until the body ends or the peer is gone,
    then answers with what it read (or with a started, unfinished response)."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if gate is not None and scope["path"] == "/slow":
            await gate.wait()
            await respond(send, b"slow")
            return
        if start_first:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        body = b""
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await respond(send, body)

    return app


# ---------------------------------------------------------------------- bodies that break framing


def test_bad_chunk_size_while_the_app_reads(runtime: ManualRuntime) -> None:
    """A chunk size that is not hex mid-body: the app reads a disconnect and the peer gets a 400."""
    seen: list[dict[str, Any]] = []
    transport = connect(server_context(recorder(seen), runtime))
    transport.receive(raw("POST", "/", "transfer-encoding: chunked") + b"5\r\nhello\r\n")
    assert seen == [{"type": "http.request", "body": b"hello", "more_body": True}]
    transport.receive(b"zz\r\n")
    assert seen[-1] == {"type": "http.disconnect"}
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 400 ") and b"connection: close" in data.lower()
    assert transport.eof_written or transport.closing


def test_bad_chunk_size_after_the_response_started(runtime: ManualRuntime) -> None:
    """A body breaking framing after the app started its response: no 400, the connection closes."""
    seen: list[dict[str, Any]] = []
    transport = connect(server_context(recorder(seen, start_first=True), runtime))
    transport.receive(raw("POST", "/", "transfer-encoding: chunked") + b"2\r\nhi\r\n")
    transport.receive(b"xyz\r\n")
    assert seen[-1] == {"type": "http.disconnect"}
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"4\r\npart\r\n")
    assert b" 400 " not in data and transport.closing


def test_bad_chunk_size_before_the_app_was_called(runtime: ManualRuntime) -> None:
    """A pipelined request whose body breaks framing never reaches its app; the request before
    it is answered, then the 400."""
    seen: list[dict[str, Any]] = []
    gate = Gate(runtime)
    transport = connect(server_context(recorder(seen, gate), runtime))
    transport.receive(raw("GET", "/slow") + raw("POST", "/b", "transfer-encoding: chunked") + b"q\r\n")
    assert transport.take() == b""
    gate.open()
    responses = parse_responses(transport.take(), ["GET", "GET"])
    assert responses[0] == (200, b"slow") and responses[1][0] == 400
    assert seen == [] and (transport.eof_written or transport.closing)


# ---------------------------------------------------------------------- behind pipelined requests


def test_request_timeout_behind_a_request_in_flight(runtime: ManualRuntime) -> None:
    """A request head left unfinished behind one in flight: that one is answered first, then 408."""
    gate = Gate(runtime)
    seen: list[dict[str, Any]] = []
    ctx = server_context(recorder(seen, gate), runtime, timeout_request_head=5.0, timeout_keep_alive=5.0)
    transport = connect(ctx)
    transport.receive(raw("GET", "/slow") + b"GET /next HTTP/1.1\r\nhost: exa")
    runtime.advance(30.0)
    assert transport.take() == b""
    gate.open()
    data = transport.take()
    responses = parse_responses(data, ["GET", "GET"])
    assert responses[0] == (200, b"slow") and responses[1][0] == 408
    assert transport.eof_written or transport.closing


def test_request_timeout_of_a_pipelined_body(runtime: ManualRuntime) -> None:
    """A pipelined body that stops coming: its app is never called; the request before it is
    answered, then 408."""
    gate = Gate(runtime)
    seen: list[dict[str, Any]] = []
    ctx = server_context(recorder(seen, gate), runtime, timeout_request_body=5.0)
    transport = connect(ctx)
    transport.receive(raw("GET", "/slow") + raw("POST", "/b", "content-length: 10") + b"abc")
    runtime.advance(30.0)
    gate.open()
    responses = parse_responses(transport.take(), ["GET", "GET"])
    assert responses[0] == (200, b"slow") and responses[1][0] == 408
    assert seen == []


def test_websocket_upgrade_waits_behind_a_pipelined_request(runtime: ManualRuntime) -> None:
    """A WebSocket handshake pipelined behind a request is accepted once that request is answered."""
    gate = Gate(runtime)
    scopes: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        scopes.append(scope["type"])
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await gate.wait()
        await respond(send, b"first")

    transport = connect(server_context(app, runtime))
    handshake = raw(
        "GET",
        "/ws",
        "connection: upgrade",
        "upgrade: websocket",
        "sec-websocket-version: 13",
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    transport.receive(raw("GET", "/") + handshake)
    assert transport.take() == b"" and scopes == ["http"]
    gate.open()
    data = transport.take()
    first, _, rest = data.partition(b"HTTP/1.1 101 ")
    assert parse_responses(first, ["GET"]) == [(200, b"first")]
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in rest
    assert scopes == ["http", "websocket"]


def test_h2c_upgrade_with_a_body_behind_another_request_is_refused(runtime: ManualRuntime) -> None:
    """An h2c Upgrade with a body, pipelined behind a request, gets a 400 after that request's answer."""
    gate = Gate(runtime)
    seen: list[dict[str, Any]] = []
    transport = connect(server_context(recorder(seen, gate), runtime))
    upgrade = raw(
        "POST",
        "/up",
        "connection: upgrade, http2-settings",
        "upgrade: h2c",
        "http2-settings: AAMAAABkAAQAAP__",
        "content-length: 0",
    )
    transport.receive(raw("GET", "/slow") + upgrade)
    gate.open()
    responses = parse_responses(transport.take(), ["GET", "GET"])
    assert responses[0] == (200, b"slow") and responses[1][0] == 400
    assert seen == []


def test_half_close_with_pipelined_requests(runtime: ManualRuntime) -> None:
    """The peer half-closes after pipelining requests: each is still answered, its app having
    learnt the peer is gone, and then the connection closes."""
    gate = Gate(runtime)
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        if scope["path"] == "/slow":
            await gate.wait()
        await respond(send, scope["path"].encode())
        events.append((await receive())["type"])

    transport = connect(server_context(app, runtime))
    transport.receive(raw("GET", "/slow") + raw("GET", "/second"))
    transport.receive_eof()
    assert transport.take() == b"" and not transport.closing
    gate.open()
    assert parse_responses(transport.take(), ["GET", "GET"]) == [(200, b"/slow"), (200, b"/second")]
    assert events == ["http.disconnect", "http.disconnect"] and transport.closing


def test_peer_gone_while_a_pipelined_body_is_read(runtime: ManualRuntime) -> None:
    """The connection is lost while a pipelined body is half read: the app in flight learns it."""
    gate = Gate(runtime)
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        seen.append(await receive())
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    transport.receive(raw("GET", "/slow") + raw("POST", "/b", "content-length: 10") + b"abc")
    runtime.call(transport.abort)
    gate.open()
    assert seen == [{"type": "http.disconnect"}, {"type": "http.disconnect"}]
    assert transport.take() == b""
