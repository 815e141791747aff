"""The HTTP/2 driver over an in-memory transport, against the h2 client: the hand-over from
HTTP/1.1 (prior knowledge and Upgrade), concurrent streams, flow control both ways, deadlines."""

from __future__ import annotations

from typing import Any

import h2.errors
import h2.events
import h2.settings

from tests.connection.clients import Gate, H2Client, Receive, Responses, Send, read_body, respond
from tests.helpers.memory import ManualRuntime, connect, server_context
from wherry.connection.lifecycle import LINGER


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await respond(send, f"{scope['http_version']} {scope['path']}:".encode() + body)


def test_prior_knowledge_preface_hands_the_connection_to_http2(runtime: ManualRuntime) -> None:
    """A plain connection that opens with the client preface is served as HTTP/2."""
    transport = connect(server_context(echo, runtime))
    client = H2Client(transport)
    client.start()
    sid = client.request("/hello", "POST", b"abc")
    events = client.events()
    assert any(isinstance(event, h2.events.RemoteSettingsChanged) for event in events)
    responses = Responses().add(events)
    assert responses.status == {sid: 200}
    assert responses.body == {sid: b"2 /hello:abc"}
    assert responses.ended == [sid]


def test_streams_are_answered_independently(runtime: ManualRuntime) -> None:
    """A stream whose app waits does not hold back a later stream's answer."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await gate.wait()
        await respond(send, scope["path"].encode())

    transport = connect(server_context(app, runtime))
    client = H2Client(transport)
    client.start()
    slow = client.request("/slow")
    fast = client.request("/fast")
    responses = Responses().add(client.events())
    assert responses.ended == [fast] and responses.body == {fast: b"/fast"}
    gate.open()
    responses.add(client.events())
    assert responses.ended == [fast, slow] and responses.body[slow] == b"/slow"


def test_request_body_beyond_the_window_waits_for_the_app(runtime: ManualRuntime) -> None:
    """The server opens the window only as its app reads: the client can send no more meanwhile."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"%d" % len(await read_body(receive)))

    transport = connect(server_context(app, runtime, h2_initial_window_size=1000))
    client = H2Client(transport)
    client.start()
    client.events()  # the server's SETTINGS: a 1000-byte window per stream
    body = b"z" * 3000
    sid = client.conn.get_next_available_stream_id()
    headers = [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "x")]
    client.conn.send_headers(sid, [*headers, ("content-length", "3000")])
    sent = client.conn.local_flow_control_window(sid)
    assert sent == 1000
    client.conn.send_data(sid, body[:sent])
    client.flush()
    assert client.conn.local_flow_control_window(sid) == 0
    assert not any(isinstance(event, h2.events.WindowUpdated) for event in client.events())
    gate.open()
    while sent < len(body):
        updates = [
            e for e in client.events() if isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid
        ]
        assert updates, f"no WINDOW_UPDATE after {sent} bytes"
        size = min(client.conn.local_flow_control_window(sid), len(body) - sent)
        client.conn.send_data(sid, body[sent : sent + size], end_stream=sent + size == len(body))
        client.flush()
        sent += size
    responses = Responses().add(client.events())
    assert responses.body == {sid: b"3000"}


def test_response_beyond_the_client_window_waits_for_window_update(runtime: ManualRuntime) -> None:
    """The app's send() waits while the client's window is shut; a WINDOW_UPDATE lets it finish."""
    progress: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a" * 2500, "more_body": True})
        progress.append("sent")
        await send({"type": "http.response.body", "body": b"b" * 500})
        progress.append("done")

    transport = connect(server_context(app, runtime))
    client = H2Client(transport)
    client.start({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.request()
    responses = Responses().add(client.events())
    assert responses.body == {sid: b"a" * 1000} and progress == []
    client.conn.increment_flow_control_window(1000, stream_id=sid)
    client.flush()
    responses.add(client.events())
    assert len(responses.body[sid]) == 2000 and progress == []
    client.conn.increment_flow_control_window(5000, stream_id=sid)
    client.flush()
    responses.add(client.events())
    assert progress == ["sent", "done"]
    assert responses.body[sid] == b"a" * 2500 + b"b" * 500 and responses.ended == [sid]


def test_h2c_upgrade_answers_101_then_serves_stream_1(runtime: ManualRuntime) -> None:
    """An HTTP/1.1 request with Upgrade: h2c is switched (101) and answered as HTTP/2 stream 1."""
    transport = connect(server_context(echo, runtime))
    client = H2Client(transport)
    settings = client.conn.initiate_upgrade_connection()
    assert settings is not None
    transport.receive(
        b"GET /up HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: h2c\r\nhttp2-settings: %b\r\n\r\n" % settings
    )
    head, _, rest = transport.take().partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 101 Switching Protocols"
    events = client.conn.receive_data(rest)  # HTTP/2 from the byte after the 101
    client.flush()  # the client preface
    responses = Responses().add([*events, *client.events()])
    assert responses.status == {1: 200} and responses.body == {1: b"2 /up:"}


def test_idle_connection_gets_goaway_after_keep_alive_timeout(runtime: ManualRuntime) -> None:
    """An HTTP/2 connection idle for --timeout-keep-alive gets GOAWAY (NO_ERROR), then closes."""
    transport = connect(server_context(echo, runtime, timeout_keep_alive=3.0))
    client = H2Client(transport)
    client.start()
    client.request()
    assert Responses().add(client.events()).ended == [1]
    runtime.advance(2.9)
    assert client.events() == []
    runtime.advance(0.2)
    [goaway] = [e for e in client.events() if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR and goaway.last_stream_id == 1
    assert "write_eof" in transport.log and not transport.lost
    runtime.advance(LINGER)
    assert transport.lost


def test_client_that_stops_reading_is_cut_after_timeout_send(runtime: ManualRuntime) -> None:
    """While the transport pauses writing, the connection stops reading and is cut after
    --timeout-send."""
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(20):
                await send({"type": "http.response.body", "body": b"x" * 10000, "more_body": True})
        except OSError:
            outcome.append("send failed")
            return
        outcome.append("all sent")

    transport = connect(server_context(app, runtime, timeout_send=5.0))
    client = H2Client(transport)
    client.start({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.conn.increment_flow_control_window(1 << 20)  # the windows do not stop the app: the peer does
    client.flush()
    client.events()
    transport.stall(high_water=1000)
    client.request()
    assert not transport.reading
    runtime.advance(4.9)
    assert not transport.closing and outcome == []
    runtime.advance(0.2)
    assert transport.aborted and outcome == ["send failed"]
