"""The HTTP/2 driver's deadlines, limits and backpressure over an in-memory transport, against the
h2 client: the h2c Upgrade body, header-block and stall deadlines, refused and oversized streams,
a transport that stops taking writes, and responses held behind a shut window."""

from __future__ import annotations

from typing import Any

import h2.errors
import h2.events
import h2.settings
import hpack
import hyperframe.frame
import pytest

from tests.connection.clients import Gate, H2Client, Receive, Responses, Send, read_body, respond
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.http2 import H2Driver


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await respond(send, f"{scope['path']}:".encode() + body)


def started(transport: MemoryTransport, settings: dict[int, int] | None = None) -> H2Client:
    client = H2Client(transport)
    client.start(settings)
    return client


def of_type(events: list[h2.events.Event], kind: type[h2.events.Event]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


def frames(data: bytes) -> list[hyperframe.frame.Frame]:
    """The frames in ``data`` as written (for what the h2 client will not read, as after a GOAWAY)."""
    found = []
    view = memoryview(data)
    while view:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        found.append(frame)
        view = view[9 + length :]
    return found


def open_stream(client: H2Client, path: str = "/") -> int:
    """A POST whose body length is not declared; its body follows in DATA frames."""
    sid: int = client.conn.get_next_available_stream_id()
    headers = [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "example.com")]
    client.conn.send_headers(sid, headers)
    client.flush()
    return sid


def upgrade_head(client: H2Client, length: int, path: str = "/up") -> bytes:
    """An HTTP/1.1 POST asking for h2c with a ``length``-byte Content-Length body (not included)."""
    settings = client.conn.initiate_upgrade_connection()
    assert settings is not None
    return (
        b"POST %b HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: h2c\r\nhttp2-settings: %b\r\ncontent-length: %d\r\n\r\n"
        % (path.encode(), settings, length)
    )


def switched(client: H2Client, data: bytes) -> list[h2.events.Event]:
    """The events after a 101 at the start of ``data`` (the client preface is sent then)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and head.split(b"\r\n")[0] == b"HTTP/1.1 101 Switching Protocols", data
    events = client.conn.receive_data(rest)
    client.flush()
    return [*events, *client.events()]


# ---------------------------------------------------------------------- h2c Upgrade with a body


def test_h2c_upgrade_body_is_read_before_the_101(runtime: ManualRuntime) -> None:
    """An h2c Upgrade's Content-Length body reaches the app, and the 101 waits until all of it came."""
    transport = connect(server_context(echo, runtime))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, 10) + b"hello")
    assert transport.take() == b""  # half the body: nothing is switched yet
    transport.receive(b"world")
    responses = Responses().add(switched(client, transport.take()))
    assert responses.status == {1: 200} and responses.body == {1: b"/up:helloworld"}
    assert responses.ended == [1]


def test_h2c_upgrade_body_and_preface_in_one_read(runtime: ManualRuntime) -> None:
    """Bytes after the upgrade body in the same read are the client's HTTP/2 frames, served too."""
    transport = connect(server_context(echo, runtime))
    client = H2Client(transport)
    head = upgrade_head(client, 3)
    transport.receive(head + b"abc" + client.conn.data_to_send())  # the preface follows at once
    data = transport.take()
    head_101, _, rest = data.partition(b"\r\n\r\n")
    assert head_101.startswith(b"HTTP/1.1 101")
    responses = Responses().add(client.conn.receive_data(rest))
    assert responses.body == {1: b"/up:abc"}


def test_h2c_upgrade_body_that_stalls_gets_408(runtime: ManualRuntime) -> None:
    """An upgrade body that stops arriving for --timeout-request-body is answered 408 over HTTP/1.1."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            await read_body(receive)
        except ConnectionError:
            seen.append("disconnect")

    transport = connect(server_context(app, runtime, timeout_request_body=5.0))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, 10) + b"abc")
    runtime.advance(4.9)
    assert transport.take() == b"" and not transport.closing
    runtime.advance(0.2)
    head = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    assert transport.take() == head
    assert transport.closing and seen == ["disconnect"]


def test_h2c_upgrade_body_gap_restarts_with_each_piece(runtime: ManualRuntime) -> None:
    """Each piece of the upgrade body restarts its gap deadline: a slow but steady body is served."""
    transport = connect(server_context(echo, runtime, timeout_request_body=5.0))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, 3))
    for piece in (b"a", b"b", b"c"):
        runtime.advance(4.0)
        assert not transport.closing
        transport.receive(piece)
    responses = Responses().add(switched(client, transport.take()))
    assert responses.body == {1: b"/up:abc"}


def test_h2c_upgrade_body_the_app_does_not_read_pauses_reading(runtime: ManualRuntime) -> None:
    """An upgrade body beyond the read mark that the app leaves unread stops reading (with no gap
    deadline meanwhile), and reading resumes as the app reads it."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"%d" % len(await read_body(receive)))

    size = 200_000
    transport = connect(server_context(app, runtime, timeout_request_body=5.0))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, size) + b"x" * 100_000)
    assert not transport.reading
    runtime.advance(60.0)  # paused for the app: the gap deadline does not run
    assert not transport.closing and transport.take() == b""
    transport.receive(b"y" * (size - 100_000))  # held by the transport while reading is paused
    gate.open()
    assert "resume_reading" in transport.log
    responses = Responses().add(switched(client, transport.take()))
    assert responses.body == {1: b"%d" % size} and responses.ended == [1]


def test_h2c_upgrade_body_left_unread_by_an_app_that_returns(runtime: ManualRuntime) -> None:
    """An app that answers without reading a paused upgrade body has the rest read and dropped;
    the 101 and its answer follow the body."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, b"early")

    size = 200_000
    transport = connect(server_context(app, runtime))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, size) + b"x" * 100_000)
    assert transport.reading  # the app returned at once: nothing holds the body back
    assert transport.take() == b""
    transport.receive(b"y" * (size - 100_000))
    responses = Responses().add(switched(client, transport.take()))
    assert responses.body == {1: b"early"} and responses.status == {1: 200}


def test_h2c_upgrade_body_paused_then_app_returns(runtime: ManualRuntime) -> None:
    """An app that returns while its paused upgrade body is unread has reading resumed at once."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"done")

    size = 200_000
    transport = connect(server_context(app, runtime))
    client = H2Client(transport)
    transport.receive(upgrade_head(client, size) + b"x" * 100_000)
    assert not transport.reading
    gate.open()
    assert transport.reading and transport.log.count("resume_reading") == 1
    transport.receive(b"y" * (size - 100_000))
    responses = Responses().add(switched(client, transport.take()))
    assert responses.body == {1: b"done"}


# ---------------------------------------------------------------------- deadlines


def test_header_block_not_finished_in_time_ends_the_connection(runtime: ManualRuntime) -> None:
    """A HEADERS frame whose CONTINUATION never comes gets GOAWAY PROTOCOL_ERROR after
    --timeout-request-head, and the connection closes."""
    transport = connect(server_context(echo, runtime, timeout_request_head=4.0))
    client = started(transport)
    client.events()
    block = hpack.Encoder().encode(
        [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "example.com")]
    )
    frame = hyperframe.frame.HeadersFrame(1, data=block, flags=["END_STREAM"])  # no END_HEADERS
    transport.receive(frame.serialize())
    runtime.advance(3.9)
    assert transport.take() == b"" and not transport.closing
    runtime.advance(0.2)
    goaway = [f for f in frames(transport.take()) if isinstance(f, hyperframe.frame.GoAwayFrame)]
    assert len(goaway) == 1 and goaway[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert transport.closing or "write_eof" in transport.log


def test_idle_deadline_waits_for_a_running_app(runtime: ManualRuntime) -> None:
    """An app still running after its answer keeps an idle connection open; GOAWAY comes once
    it returns and the connection is idle again."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, b"answered")
        await gate.wait()

    transport = connect(server_context(app, runtime, timeout_keep_alive=2.0))
    client = started(transport)
    sid = client.request()
    responses = Responses().add(client.events())
    assert responses.ended == [sid] and responses.body == {sid: b"answered"}
    runtime.advance(10.0)
    assert of_type(client.events(), h2.events.ConnectionTerminated) == []
    assert not transport.closing
    gate.open()
    runtime.advance(2.1)
    [goaway] = of_type(client.events(), h2.events.ConnectionTerminated)
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR and goaway.last_stream_id == sid


def test_response_stalled_on_a_shut_window_is_cancelled(runtime: ManualRuntime) -> None:
    """A response that waits on a zero window for --timeout-send has its stream reset (CANCEL) and
    its app's send() fails; the connection goes on."""
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/small":
            await respond(send, b"ok")
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.body", "body": b"x" * 500})
        except OSError:
            outcome.append("send failed")
            return
        outcome.append("sent")

    transport = connect(server_context(app, runtime, timeout_send=3.0))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    client.events()
    sid = client.request()
    responses = Responses().add(client.events())
    assert responses.body == {sid: b"x" * 100} and outcome == []
    runtime.advance(2.9)
    assert client.events() == [] and outcome == []
    runtime.advance(0.2)
    [reset] = of_type(client.events(), h2.events.StreamReset)
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert outcome == ["send failed"]
    other = client.request("/small")
    assert Responses().add(client.events()).body == {other: b"ok"}


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize(("method", "body"), [("GET", None), ("POST", b"body")], ids=["get", "with-body"])
def test_stream_past_the_concurrency_limit_is_refused(
    runtime: ManualRuntime, method: str, body: bytes | None
) -> None:
    """A stream opened while --h2-max-concurrent-streams apps still run (one reset by the client
    but not yet returned) is reset REFUSED_STREAM; the next one after they return is served. A
    refused stream's body and end, come in the same read, reach nobody."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/wait":
            await gate.wait()
            return
        await respond(send, b"ok")

    transport = connect(server_context(app, runtime, h2_max_concurrent_streams=1))
    client = started(transport)
    client.events()
    waiting = client.request("/wait")
    client.conn.reset_stream(waiting)
    client.flush()
    refused = client.request("/next", method, body)
    [reset] = of_type(client.events(), h2.events.StreamReset)
    assert reset.stream_id == refused and reset.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    gate.open()
    served = client.request("/last")
    assert Responses().add(client.events()).body == {served: b"ok"}


def test_body_too_large_gets_413_then_reset(runtime: ManualRuntime) -> None:
    """A request body past --limit-request-body is answered 413 and the stream reset NO_ERROR."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        try:
            await read_body(receive)
        except ConnectionError:
            seen.append("disconnect")

    transport = connect(server_context(app, runtime, limit_request_body=10))
    client = started(transport)
    sid = open_stream(client)
    client.conn.send_data(sid, b"z" * 50)
    client.flush()
    events = client.events()
    responses = Responses().add(events)
    assert responses.status == {sid: 413} and responses.body == {sid: b"Request Entity Too Large\n"}
    [reset] = of_type(events, h2.events.StreamReset)
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert seen == ["disconnect"]


def test_body_too_large_after_the_answer_started_is_reset(runtime: ManualRuntime) -> None:
    """A body that passes the limit after the app began its answer resets the stream
    INTERNAL_ERROR: no 413 can follow the status already sent."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await gate.wait()

    transport = connect(server_context(app, runtime, limit_request_body=10))
    client = started(transport)
    sid = open_stream(client)
    responses = Responses().add(client.events())
    assert responses.status == {sid: 200}
    client.conn.send_data(sid, b"z" * 50)
    client.flush()
    events = client.events()
    [reset] = of_type(events, h2.events.StreamReset)
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert of_type(events, h2.events.ResponseReceived) == []
    gate.open()


def settle_bounded(runtime: ManualRuntime, rounds: int = 50) -> bool:
    """``ManualRuntime.settle`` for at most ``rounds`` timer rounds: True once no timer is due at
    the current time, False if timers keep coming due (a timer re-armed in the past, forever)."""
    for _ in range(rounds):
        runtime.loop.run_forever()
        if runtime.timers.next_when() > runtime.time():
            return True
        runtime.loop.call_soon(runtime.timers.run_due, runtime.time(), runtime.loop.call_exception_handler)
    return False


def test_idle_deadline_with_a_reset_stream_still_running(runtime: ManualRuntime) -> None:
    """A connection whose only stream the client reset is idle for the protocol while its app still
    runs: the idle deadline passing arms no timer that is due again at once, and GOAWAY NO_ERROR
    follows once the app returns."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()

    transport = connect(server_context(app, runtime, timeout_keep_alive=2.0))
    client = started(transport)
    sid = client.request()
    client.conn.reset_stream(sid)
    client.flush()
    client.events()
    runtime.advance(1.9)
    assert of_type(client.events(), h2.events.ConnectionTerminated) == []
    runtime._now += 0.2  # past the idle deadline; moved by hand, as advance() would never settle
    try:
        assert settle_bounded(runtime), "the idle deadline's timer keeps firing"
        assert not transport.closing and client.events() == []
    finally:
        runtime.loop.call_soon(gate.future.set_result, None)  # the app returns
        settle_bounded(runtime)
    [goaway] = of_type(client.events(), h2.events.ConnectionTerminated)
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR


# ---------------------------------------------------------------------- the peer's GOAWAY


def test_client_goaway_no_error_lets_the_stream_finish(runtime: ManualRuntime) -> None:
    """A client's GOAWAY (NO_ERROR) does not stop the stream it opened before: it is answered."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"still")

    transport = connect(server_context(app, runtime))
    client = started(transport)
    sid = client.request()
    client.events()
    client.conn.close_connection()
    client.flush()
    assert not transport.closing
    gate.open()
    written = frames(transport.take())
    data = [f for f in written if isinstance(f, hyperframe.frame.DataFrame) and f.stream_id == sid]
    assert b"".join(f.data for f in data) == b"still" and "END_STREAM" in data[-1].flags
    assert not transport.aborted


def test_client_goaway_with_an_error_disconnects_the_apps(runtime: ManualRuntime) -> None:
    """A client's GOAWAY with an error code ends the connection: its running apps see a disconnect."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    client = started(transport)
    client.request()
    client.events()
    client.conn.close_connection(error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
    client.flush()
    assert seen == [{"type": "http.disconnect"}]
    assert transport.closing or "write_eof" in transport.log


def test_protocol_error_from_the_client_ends_the_connection(runtime: ManualRuntime) -> None:
    """A frame no client may send (PUSH_PROMISE) gets GOAWAY PROTOCOL_ERROR; running apps see a
    disconnect."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    client = started(transport)
    client.request()
    client.events()
    promise = hyperframe.frame.PushPromiseFrame(1, promised_stream_id=2, data=b"", flags=["END_HEADERS"])
    transport.receive(promise.serialize())
    [goaway] = of_type(client.events(), h2.events.ConnectionTerminated)
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert seen == [{"type": "http.disconnect"}]


# ---------------------------------------------------------------------- backpressure


def test_transport_pause_holds_every_stream_until_it_drains(runtime: ManualRuntime) -> None:
    """While the transport pauses writing, the apps' send() waits and reading stops; once it drains
    both streams finish and reading resumes."""
    progress: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(4):
            await send({"type": "http.response.body", "body": b"x" * 20000, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        progress.append(scope["path"])

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.conn.increment_flow_control_window(1 << 20)
    client.flush()
    client.events()
    transport.stall(high_water=1000)
    first = client.request("/a")
    second = client.request("/b")
    assert transport.writing_paused and not transport.reading and progress == []
    transport.drain()
    responses = Responses().add(client.events())
    for _ in range(10):
        if len(responses.ended) == 2:
            break
        transport.drain()
        responses.add(client.events())
    assert sorted(progress) == ["/a", "/b"] and sorted(responses.ended) == [first, second]
    assert responses.body == {first: b"x" * 80000, second: b"x" * 80000}
    assert transport.reading and "resume_reading" in transport.log


def test_resume_writing_leaves_a_window_blocked_stream_waiting(runtime: ManualRuntime) -> None:
    """When the transport drains, a stream still waiting on its shut window stays waiting until
    a WINDOW_UPDATE; the other stream goes on at once."""
    progress: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"y" * 3000, "more_body": True})
        progress.append(scope["path"])
        await send({"type": "http.response.body", "body": b"end"})

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    client.events()
    transport.stall(high_water=100)
    blocked = client.request("/blocked")
    assert transport.writing_paused
    transport.drain()
    responses = Responses().add(client.events())
    assert responses.body == {blocked: b"y" * 1000} and progress == []
    client.conn.increment_flow_control_window(5000, stream_id=blocked)
    client.flush()
    responses.add(client.events())
    assert progress == ["/blocked"] and responses.body[blocked] == b"y" * 3000 + b"end"
    assert responses.ended == [blocked]


def test_connection_window_update_opens_every_blocked_stream(runtime: ManualRuntime) -> None:
    """Streams held by the shut connection window all go on at one connection WINDOW_UPDATE."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, b"z" * 40000)

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    client.events()
    first = client.request("/1")
    second = client.request("/2")
    responses = Responses().add(client.events())
    assert sum(len(body) for body in responses.body.values()) == 65535 and responses.ended == [first]
    client.conn.increment_flow_control_window(1 << 20)
    client.flush()
    responses.add(client.events())
    assert responses.body == {first: b"z" * 40000, second: b"z" * 40000}
    assert sorted(responses.ended) == [first, second]


def test_trailers_wait_behind_a_shut_window(runtime: ManualRuntime) -> None:
    """Trailers sent while the body waits for a window follow the body once the window opens."""
    progress: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"t" * 1500})
        progress.append("body")
        await send({"type": "http.response.trailers", "headers": [(b"x-check", b"ok")]})
        progress.append("trailers")

    transport = connect(server_context(app, runtime))
    client = started(transport, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.request()
    events = client.events()
    assert Responses().add(events).body == {sid: b"t" * 1000}
    assert of_type(events, h2.events.TrailersReceived) == [] and progress == []
    client.conn.increment_flow_control_window(2000, stream_id=sid)
    client.flush()
    events = client.events()
    responses = Responses().add(events)
    [trailers] = of_type(events, h2.events.TrailersReceived)
    assert trailers.headers == [(b"x-check", b"ok")] and responses.body == {sid: b"t" * 500}
    assert responses.ended == [sid] and progress == ["body", "trailers"]


# ---------------------------------------------------------------------- the app's messages


def test_expect_100_continue_sends_an_informational_100(runtime: ManualRuntime) -> None:
    """A request with Expect: 100-continue gets a 100 on its stream when the app reads the body."""
    transport = connect(server_context(echo, runtime))
    client = started(transport)
    sid: int = client.conn.get_next_available_stream_id()
    headers = [
        (":method", "POST"),
        (":path", "/c"),
        (":scheme", "http"),
        (":authority", "example.com"),
        ("expect", "100-continue"),
    ]
    client.conn.send_headers(sid, headers)
    client.flush()
    [informational] = of_type(client.events(), h2.events.InformationalResponseReceived)
    assert dict(informational.headers)[b":status"] == b"100"
    client.conn.send_data(sid, b"go", end_stream=True)
    client.flush()
    assert Responses().add(client.events()).body == {sid: b"/c:go"}


def test_body_longer_than_its_content_length_resets_the_stream(runtime: ManualRuntime) -> None:
    """A response body that goes past its Content-Length resets the stream INTERNAL_ERROR, and the
    app's send() fails."""
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        try:
            await send({"type": "http.response.body", "body": b"cd"})
        except Exception as exc:
            outcome.append(type(exc).__name__)

    transport = connect(server_context(app, runtime))
    client = started(transport)
    sid = client.request()
    events = client.events()
    [reset] = of_type(events, h2.events.StreamReset)
    assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert Responses().add(events).body == {sid: b"ab"} and outcome == ["LocalProtocolError"]


def test_send_after_the_client_reset_the_stream_fails(runtime: ManualRuntime) -> None:
    """An app that answers a stream the client reset has send() fail with OSError; nothing is
    written for the stream."""
    gate = Gate(runtime)
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        try:
            await respond(send, b"late")
        except OSError:
            outcome.append("send failed")

    transport = connect(server_context(app, runtime))
    client = started(transport)
    sid = client.request()
    client.events()
    client.conn.reset_stream(sid)
    client.flush()
    gate.open()
    assert outcome == ["send failed"]
    assert not [f for f in frames(transport.take()) if f.stream_id == sid]


# ---------------------------------------------------------------------- starting and closing


def test_h2c_upgrade_with_malformed_settings_is_refused(runtime: ManualRuntime) -> None:
    """An h2c Upgrade whose HTTP2-Settings is not base64url SETTINGS gets 400 over HTTP/1.1."""
    transport = connect(server_context(echo, runtime))
    transport.receive(
        b"GET / HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: h2c\r\nhttp2-settings: AAA\r\n\r\n"
    )
    assert transport.take().startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closing or "write_eof" in transport.log


def test_connection_arriving_during_shutdown_gets_goaway(runtime: ManualRuntime) -> None:
    """A prior-knowledge connection made while the server shuts down gets GOAWAY at once and no
    stream is served."""
    ctx = server_context(echo, runtime)
    transport = connect(ctx)
    ctx.shutting_down = True
    client = H2Client(transport)
    client.start()
    written = frames(transport.take())
    goaway = [f for f in written if isinstance(f, hyperframe.frame.GoAwayFrame)]
    assert len(goaway) == 1 and goaway[0].error_code == h2.errors.ErrorCodes.NO_ERROR
    assert transport.closing or "write_eof" in transport.log


def test_shutdown_of_an_idle_connection_closes_it(runtime: ManualRuntime) -> None:
    """Graceful shutdown of a connection with no stream sends GOAWAY and closes at once; a second
    shutdown while it lingers closes the transport."""
    ctx = server_context(echo, runtime)
    transport = connect(ctx)
    client = started(transport)
    client.events()
    ctx.shutting_down = True
    protocol = transport.protocol
    assert isinstance(protocol, H2Driver)
    runtime.call(protocol.shutdown)
    [goaway] = of_type(client.events(), h2.events.ConnectionTerminated)
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert "write_eof" in transport.log and not transport.closing
    runtime.call(protocol.shutdown)
    assert transport.closing


def test_peer_eof_while_lingering_closes(runtime: ManualRuntime) -> None:
    """After an idle GOAWAY the connection lingers half-closed; the client's EOF closes it then."""
    transport = connect(server_context(echo, runtime, timeout_keep_alive=2.0))
    client = started(transport)
    client.events()
    runtime.advance(2.1)
    [goaway] = of_type(client.events(), h2.events.ConnectionTerminated)
    assert goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert "write_eof" in transport.log and not transport.closing
    transport.receive_eof()
    assert transport.closing


def test_frames_after_the_goaway_are_ignored_while_lingering(runtime: ManualRuntime) -> None:
    """A request that arrives after the idle GOAWAY, while the connection lingers, is not served."""
    transport = connect(server_context(echo, runtime, timeout_keep_alive=2.0))
    client = started(transport)
    client.events()
    runtime.advance(2.1)
    assert of_type(client.events(), h2.events.ConnectionTerminated)
    assert "write_eof" in transport.log
    raw = H2Client(MemoryTransport(runtime, None))  # frames for stream 1, as if no GOAWAY came
    raw.conn.initiate_connection()
    raw.conn.data_to_send()
    raw.conn.send_headers(
        1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], True
    )
    transport.receive(raw.conn.data_to_send())
    assert transport.output == b"" and transport.buffer == b""


def test_shutdown_while_writing_is_paused_resumes_reading_to_linger(runtime: ManualRuntime) -> None:
    """A connection closed while its transport pauses writing (so reading stopped) reads again as
    it lingers half-closed, and its GOAWAY reaches the client once the transport drains."""
    ctx = server_context(echo, runtime)
    transport = connect(ctx)
    client = started(transport)
    client.events()
    transport.stall(high_water=0)
    client.conn.ping(b"12345678")
    client.flush()
    assert transport.writing_paused and not transport.reading
    ctx.shutting_down = True
    protocol = transport.protocol
    assert isinstance(protocol, H2Driver)
    runtime.call(protocol.shutdown)
    assert transport.reading and transport.log[-1] == "resume_reading"
    transport.drain()
    events = client.events()
    assert of_type(events, h2.events.PingAckReceived) and of_type(events, h2.events.ConnectionTerminated)


def test_trailers_after_the_client_reset_the_stream_fail(runtime: ManualRuntime) -> None:
    """Trailers sent for a stream the client has reset fail with OSError; no HEADERS follow."""
    gate = Gate(runtime)
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"body"})
        await gate.wait()
        try:
            await send({"type": "http.response.trailers", "headers": [(b"x-late", b"1")]})
        except OSError:
            outcome.append("send failed")

    transport = connect(server_context(app, runtime))
    client = started(transport)
    sid = client.request()
    assert Responses().add(client.events()).body == {sid: b"body"}
    client.conn.reset_stream(sid)
    client.flush()
    gate.open()
    assert outcome == ["send failed"]
    assert not [f for f in frames(transport.take()) if f.stream_id == sid]


def test_extended_connect_opens_a_websocket_stream(runtime: ManualRuntime) -> None:
    """An extended CONNECT (RFC 8441) with :protocol websocket reaches a WebSocket app, whose
    accept is a 200 on the stream and whose text message is a DATA frame there."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hi"})
        await receive()

    transport = connect(server_context(app, runtime))
    client = started(transport)
    settings = of_type(client.events(), h2.events.RemoteSettingsChanged)
    assert settings and settings[0].changed_settings[8].new_value == 1  # ENABLE_CONNECT_PROTOCOL
    sid: int = client.conn.get_next_available_stream_id()
    headers = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":path", "/ws"),
        (":scheme", "http"),
        (":authority", "example.com"),
        ("sec-websocket-version", "13"),
    ]
    client.conn.send_headers(sid, headers)
    client.flush()
    events = client.events()
    responses = Responses().add(events)
    assert responses.status == {sid: 200}
    assert responses.body[sid] == b"\x81\x02hi"  # one unmasked text frame


def send_body(client: H2Client, sid: int, size: int, responses: Responses) -> int:
    """Send ``size`` body bytes on ``sid`` (the last frame ends it) as the windows allow, reading
    the server's answers in between; return how many bytes the windows never let through."""
    left = size
    for _ in range(4 * (size // 16384 + 1)):
        step = min(16384, left, client.conn.local_flow_control_window(sid))
        if step:
            left -= step
            client.conn.send_data(sid, b"z" * step, end_stream=not left)
            client.flush()
        responses.add(client.events())
        if not left:
            break
    return left


def test_bodies_apps_leave_unread_give_the_connection_window_back(runtime: ManualRuntime) -> None:
    """RFC 9113 §6.9: the body that arrived before its app returned without reading it is
    credited to the connection window when the stream ends (complete, or answered early and then
    reset by the client), so it does not shrink the window all streams share: after many uploads
    refused at once, another upload still goes through."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/count":
            await respond(send, b"%d" % len(await read_body(receive)))
        else:
            await respond(send, b"no", 401)  # as an auth check would, without reading

    transport = connect(server_context(app, runtime))
    client = started(transport)
    client.events()
    responses = Responses()
    headers = [(":method", "POST"), (":path", "/upload"), (":scheme", "http"), (":authority", "example.com")]
    for index in range(30):
        sid: int = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, headers)
        complete = index % 2 == 0
        for offset in range(0, 60000 if complete else 16384, 16384):
            client.conn.send_data(sid, b"x" * min(16384, 60000 - offset), end_stream=offset + 16384 >= 60000)
        client.flush()  # the head and the body arrive together: the body is held for the app
        responses.add(client.events())
        assert responses.status[sid] == 401
        if not complete:
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            client.flush()
    sid = open_stream(client, "/count")
    assert send_body(client, sid, 300_000, responses) == 0
    assert responses.body[sid] == b"300000"
