"""The HTTP/2 driver at its edges over an in-memory transport, against the h2 client: an app that
sends from several tasks at once behind a shut window, frames for streams the driver no longer
serves, push at its limits, and a connection ending while it waits."""

from __future__ import annotations

import asyncio
from typing import Any

import h2.errors
import h2.events
import h2.settings
import hyperframe.frame

from tests.connection.clients import Gate, H2Client, Receive, Responses, Send, respond
from tests.connection.test_http2_more import frames, of_type, started, upgrade_head
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.http2 import H2Driver


def driver(transport: MemoryTransport) -> H2Driver:
    protocol = transport.protocol
    assert isinstance(protocol, H2Driver)
    return protocol


def test_sends_from_several_tasks_wait_together_behind_a_shut_window(runtime: ManualRuntime) -> None:
    """An app sends the rest of a body, its end and its trailers from three tasks at once while
    the client's window is shut: the later ones queue behind the first (its bytes first), all
    wait for the same window, and the trailers follow the body once the window opens."""
    done: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await asyncio.gather(
            send({"type": "http.response.body", "body": b"a" * 1500, "more_body": True}),
            send({"type": "http.response.body", "body": b"b"}),
            send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]}),
        )
        done.append("sent")

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.request()
    events = client.events()
    assert Responses().add(events).body == {sid: b"a" * 1000}
    assert of_type(events, h2.events.TrailersReceived) == [] and done == []
    client.conn.increment_flow_control_window(1000, stream_id=sid)
    client.flush()
    events = client.events()
    [trailers] = of_type(events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-sum", b"1")]
    assert Responses().add(events).body == {sid: b"a" * 500 + b"b"}
    assert done == ["sent"]


def test_an_h2c_upgrade_while_draining_is_answered_503(runtime: ManualRuntime) -> None:
    """A worker draining for its replacement still reads its idle connections: an h2c Upgrade
    arriving then switches nothing and is answered 503 over HTTP/1.1, as a WebSocket handshake."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        calls.append(scope["path"])

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    ctx.shutting_down = True  # (draining: idle connections are left to their deadline)
    client = H2Client(transport)
    transport.receive(upgrade_head(client, 0))
    assert transport.take().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert transport.eof_written and calls == []  # (closing in stages: the peer reads it first)


def test_a_stream_error_on_a_stream_whose_app_is_done_reaches_nobody(runtime: ManualRuntime) -> None:
    """A stream answered before its body ended stays open in the core after its app returned; a
    stream error on it (a PRIORITY frame naming the stream itself) resets it, and no app hears."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, b"early")

    transport = connect(server_context(app, runtime))
    client = started(transport)
    client.events()
    sid: int = client.conn.get_next_available_stream_id()
    client.conn.send_headers(
        sid, [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "a")]
    )
    client.flush()
    assert Responses().add(client.events()).body == {sid: b"early"}
    assert driver(transport).streams == {}
    priority = b"\x00\x00\x05\x02\x00" + sid.to_bytes(4, "big") + sid.to_bytes(4, "big") + b"\x10"
    transport.receive(priority)
    [reset] = [f for f in frames(transport.take()) if isinstance(f, hyperframe.frame.RstStreamFrame)]
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert not transport.closing


def test_the_408_of_a_stalled_upgrade_body_can_meet_a_stalled_reader(runtime: ManualRuntime) -> None:
    """The 408 for an h2c Upgrade body that stopped arriving is written to a client that reads
    nothing either: the transport pauses writing after the connection ended, which changes
    nothing, and it closes once the client reads."""
    transport = connect(server_context(lambda *args: asyncio.sleep(0), runtime, timeout_request_body=5.0))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, 10) + b"abc")
    transport.stall(high_water=0)
    runtime.advance(5.1)
    assert transport.writing_paused and transport.closing and not transport.lost
    transport.drain()
    assert transport.take().startswith(b"HTTP/1.1 408 ") and transport.lost


def test_without_push_the_scope_offers_no_push(runtime: ManualRuntime) -> None:
    """A client that disabled push (SETTINGS_ENABLE_PUSH 0) gets no http.response.push extension."""
    offered: list[bool] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        offered.append("http.response.push" in scope["extensions"])
        await respond(send, b"ok")

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.ENABLE_PUSH: 0})
    client.events()
    client.request()
    client.events()
    client.request()
    client.events()
    assert offered == [False, False]


async def pusher(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["path"] == "/pushed":
        await respond(send, b"pushed")
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.push", "path": "/pushed", "headers": []})
    await send({"type": "http.response.body", "body": b"page"})


def test_a_push_names_the_host_wherever_the_request_had_it(runtime: ManualRuntime) -> None:
    """The promised request's authority is the parent's Host, found among its fields (a request
    without :authority may send it after others); a parent with an empty :authority and no Host
    promises an empty one."""
    transport = connect(server_context(pusher, runtime))
    client = started(transport)
    client.events()
    client.conn.config.validate_outbound_headers = False
    base = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http")]
    authorities = []
    for fields in ([*base, (b"x-first", b"1"), (b"host", b"late.example")], [*base, (b":authority", b"")]):
        client.conn.send_headers(client.conn.get_next_available_stream_id(), fields, end_stream=True)
        client.flush()
        [promise] = of_type(client.events(), h2.events.PushedStreamReceived)
        authorities.append(dict(promise.headers)[b":authority"])
    assert authorities == [b"late.example", b""]


def test_a_push_past_the_stream_limit_is_refused(runtime: ManualRuntime) -> None:
    """With --h2-max-concurrent-streams 1 the parent's own stream fills the limit: the promised
    stream is reset REFUSED_STREAM and its app never runs; the parent's response goes on."""
    transport = connect(server_context(pusher, runtime, h2_max_concurrent_streams=1))
    client = started(transport)
    client.events()
    sid = client.request()
    events = client.events()
    [promise] = of_type(events, h2.events.PushedStreamReceived)
    [reset] = of_type(events, h2.events.StreamReset)
    assert reset.stream_id == promise.pushed_stream_id
    assert reset.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    assert Responses().add(events).body == {sid: b"page"}


def test_shutdown_and_abort_leave_a_closed_connection_to_flush(runtime: ManualRuntime) -> None:
    """The client ended the connection while its last response waits in the transport (it does
    not read): the connection is closed already, so shutdown sends no GOAWAY and the end of the
    graceful period does not cut what is still buffered."""
    transport = connect(server_context(lambda s, r, send: respond(send, b"ok"), runtime))
    client = started(transport)
    client.events()
    transport.stall(high_water=1 << 20)
    sid = client.request()
    transport.receive_eof()
    conn = driver(transport)
    assert conn.closed and transport.closing and not transport.lost
    runtime.call(conn.shutdown)
    runtime.call(conn.abort_all)
    assert not transport.aborted
    transport.drain()
    assert transport.lost
    written = transport.take()
    assert not any(type(f).__name__ == "GoAwayFrame" for f in frames(written))
    assert Responses().add(client.conn.receive_data(written)).body == {sid: b"ok"}


def test_a_window_opening_for_a_stream_aborted_meanwhile_sends_nothing(runtime: ManualRuntime) -> None:
    """Bytes wait behind a shut window; the app's next piece breaks its content-length, which
    resets the stream; the app catches that and goes on running. When the window opens, nothing
    more is sent on the reset stream."""
    gate = Gate(runtime)
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2000")]})
        results = await asyncio.gather(
            send({"type": "http.response.body", "body": b"a" * 1500, "more_body": True}),
            send({"type": "http.response.body", "body": b"b" * 600, "more_body": True}),
            return_exceptions=True,
        )
        outcome.extend(type(result).__name__ for result in results)
        await gate.wait()

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.request()
    events = client.events()
    assert Responses().add(events).body == {sid: b"a" * 1000}
    [reset] = of_type(events, h2.events.StreamReset)
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert outcome == ["ClientDisconnected", "LocalProtocolError"]
    client.conn.increment_flow_control_window(5000)  # the connection's window: every blocked stream
    client.flush()
    assert not any(isinstance(f, hyperframe.frame.DataFrame) for f in frames(transport.take()))
    gate.open()
    assert not transport.closing
