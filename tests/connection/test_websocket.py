"""The WebSocket driver over an in-memory transport, against the wsproto client: the HTTP/1.1
Upgrade, messages both ways, the closing handshake, backpressure and keepalive deadlines."""

from __future__ import annotations

from typing import Any

from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    TextMessage,
)

from tests.connection.clients import Gate, Receive, Send, WSClient
from tests.helpers.memory import ManualRuntime, connect, server_context


def echo_app(seen: list[dict[str, Any]]) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "websocket.disconnect":
                return
            await send({**message, "type": "websocket.send"})

    return app


def test_upgrade_echo_and_client_close(runtime: ManualRuntime) -> None:
    """Upgrade, text and bytes echoed, and a client Close answered before the server closes TCP."""
    seen: list[dict[str, Any]] = []
    transport = connect(server_context(echo_app(seen), runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    client.send(TextMessage(data="hello"))
    client.send(BytesMessage(data=b"\x00\x01"))
    events = client.events()
    assert [(type(e), e.data) for e in events] == [(TextMessage, "hello"), (BytesMessage, b"\x00\x01")]  # type: ignore[attr-defined]
    client.send(CloseConnection(code=1000, reason="bye"))
    [close] = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert client.conn.state is ConnectionState.CLOSED
    assert transport.lost and not transport.aborted
    assert seen[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": "bye"}


def test_close_from_the_app_reaches_the_client(runtime: ManualRuntime) -> None:
    """The app's websocket.close sends its code; the client's answering Close ends the connection."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "done"})

    transport = connect(server_context(app, runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    [close] = client.events()
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (4001, "done")
    assert not transport.closing
    client.send(close.response())
    assert transport.lost


def test_close_before_accept_is_a_403(runtime: ManualRuntime) -> None:
    """An app that closes before accepting denies the handshake with an HTTP 403."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    transport = connect(server_context(app, runtime))
    answer = WSClient(transport).handshake()
    assert isinstance(answer, RejectConnection) and answer.status_code == 403


def test_send_waits_while_the_transport_pauses_writing(runtime: ManualRuntime) -> None:
    """A message send() waits after pause_writing and goes on after resume_writing."""
    gate = Gate(runtime)
    progress: list[int] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await gate.wait()
        for i in range(3):
            await send({"type": "websocket.send", "bytes": b"%d" % i * 100})
            progress.append(i)
        await send({"type": "websocket.close"})

    transport = connect(server_context(app, runtime))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    transport.stall(high_water=150)
    gate.open()
    assert progress == [0]  # the second message filled the buffer: its send() waits
    assert transport.take() == b""
    transport.drain()
    assert progress == [0, 1, 2]
    events = client.events()
    assert [e.data for e in events if isinstance(e, BytesMessage)] == [b"0" * 100, b"1" * 100, b"2" * 100]


def test_unanswered_keepalive_ping_ends_the_connection(runtime: ManualRuntime) -> None:
    """A ping goes out after --ws-ping-interval of silence; no pong within --ws-ping-timeout
    closes with 1011."""
    seen: list[dict[str, Any]] = []
    transport = connect(server_context(echo_app(seen), runtime, ws_ping_interval=5.0, ws_ping_timeout=3.0))
    client = WSClient(transport)
    assert isinstance(client.handshake(), AcceptConnection)
    runtime.advance(4.9)
    assert client.events() == []
    runtime.advance(0.2)
    [ping] = client.events()
    assert isinstance(ping, Ping)
    client.send(ping.response())  # answered: the connection lives on
    runtime.advance(4.9)
    assert client.events() == [] and not transport.closing
    runtime.advance(0.2)
    [ping] = client.events()
    assert isinstance(ping, Ping)
    runtime.advance(3.1)  # not answered
    close, *_ = client.events()
    assert isinstance(close, CloseConnection) and close.code == 1011
    assert transport.closing
    assert seen[-1]["type"] == "websocket.disconnect" and seen[-1]["code"] == 1011
