"""Driver turns the other in-memory tests leave out: an HTTP/2 connection chosen by ALPN during
shutdown, a push the client has no room for, and on HTTP/1.1 a response that closes the
connection before the request body is in and trailers on a response framed by Content-Length."""

from __future__ import annotations

from typing import Any

import h2.errors
import h2.events
import h2.settings
import h11
import hyperframe.frame

from tests.connection.clients import H1Client, H2Client, Receive, Send, read_body
from tests.connection.test_http2_more import echo, frames, of_type, started
from tests.connection.test_websocket_paths import echo as ws_echo
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.http2 import H2Driver


def test_an_alpn_h2_connection_during_shutdown_gets_goaway(runtime: ManualRuntime) -> None:
    """ALPN chose h2 (the driver starts the connection itself) while the server shuts down:
    GOAWAY at once, and the connection closes."""
    ctx = server_context(echo, runtime)
    ctx.shutting_down = True
    driver = H2Driver(ctx)
    transport = MemoryTransport(runtime, driver)
    runtime.call(lambda: driver.connection_made(transport))
    goaway = [f for f in frames(transport.take()) if isinstance(f, hyperframe.frame.GoAwayFrame)]
    assert len(goaway) == 1 and goaway[0].error_code == h2.errors.ErrorCodes.NO_ERROR
    assert transport.closing or "write_eof" in transport.log


def test_a_push_the_client_has_no_room_for_is_dropped(runtime: ManualRuntime) -> None:
    """The client takes pushes but allows no stream of ours at a time: the promise is not made,
    and the response goes on."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert "http.response.push" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 0})
    client.events()
    sid = client.request()
    events = client.events()
    assert of_type(events, h2.events.PushedStreamReceived) == []
    [response] = of_type(events, h2.events.ResponseReceived)
    assert response.stream_id == sid
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"page"


def test_a_closing_answer_before_the_body_is_in_half_closes_after_it(runtime: ManualRuntime) -> None:
    """The app answers with "connection: close" before the client sent all of its body: the
    response goes out whole, then the server half-closes (it does not reset what the client is
    still sending)."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-length", b"4"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": b"full"})

    transport = connect(server_context(app, runtime))
    transport.receive(b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhalf")
    status, headers, body = H1Client(transport).response()
    assert (status, body, headers[b"connection"]) == (413, b"full", b"close")
    assert "write_eof" in transport.log and not transport.aborted


def test_trailers_on_a_content_length_response_are_dropped(runtime: ManualRuntime) -> None:
    """A response framed by Content-Length has nowhere to carry trailers: they are dropped and
    the response ends as announced."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"2")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    transport = connect(server_context(app, runtime))
    client = H1Client(transport)
    client.send(
        h11.Request(method="GET", target="/", headers=[("host", "a"), ("te", "trailers")]), h11.EndOfMessage()
    )
    status, _, body = client.response()
    assert (status, body) == (200, b"ok")
    assert transport.take() == b""
    client.request()  # the connection is kept
    assert client.response()[0] == 200


def test_an_h2_websocket_opened_while_the_connection_cannot_write(runtime: ManualRuntime) -> None:
    """RFC 8441 in the first read of a connection whose peer reads nothing: the server's own
    SETTINGS fill the stalled transport, so the WebSocket starts with its writing paused; its
    handshake answer goes out once the peer reads."""
    seen: list[Any] = []
    transport = connect(server_context(ws_echo(seen), runtime))
    transport.stall()
    client = H2Client(transport)
    client.conn.initiate_connection()
    # What the server's SETTINGS will say, told to the client first, so that its preface and an
    # extended CONNECT go out together.
    client.conn.receive_data(hyperframe.frame.SettingsFrame(0, settings={0x8: 1}).serialize())
    headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":path", "/ws")]
    headers += [(":scheme", "http"), (":authority", "example.com"), ("sec-websocket-version", "13")]
    client.conn.send_headers(1, headers)
    client.flush()
    assert transport.writing_paused and transport.take() == b""
    transport.drain()
    [response] = of_type(client.events(), h2.events.ResponseReceived)
    assert response.stream_id == 1 and dict(response.headers)[b":status"] == b"200"
