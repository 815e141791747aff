"""The HTTP/1.1 driver over an in-memory transport, against h11: keep-alive, pipelining, both
directions of backpressure, deadlines and closing, with the clock moved by hand."""

from __future__ import annotations

from typing import Any

import h11

from tests.connection.clients import Gate, H1Client, Receive, Send, parse_responses, read_body, respond
from tests.helpers.memory import ManualRuntime, connect, server_context
from wherry.connection.lifecycle import LINGER


async def echo(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    body = await read_body(receive)
    await respond(send, scope["path"].encode() + b":" + body)


def test_keep_alive_serves_requests_one_after_another(runtime: ManualRuntime) -> None:
    """Two requests on one connection get two answers and the connection stays open."""
    transport = connect(server_context(echo, runtime))
    client = H1Client(transport)
    client.request("POST", "/first", b"one")
    assert client.response()[::2] == (200, b"/first:one")
    client.request("POST", "/second", b"two")
    status, headers, body = client.response()
    assert (status, body) == (200, b"/second:two")
    assert b"connection" not in headers
    assert not transport.closing


def test_pipelined_requests_are_answered_in_order(runtime: ManualRuntime) -> None:
    """Requests sent together are answered in their order, even when the first app is the slowest."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/slow":
            await gate.wait()
        await respond(send, scope["path"].encode())

    transport = connect(server_context(app, runtime))
    requests = b"".join(
        b"GET /%b HTTP/1.1\r\nhost: example.com\r\n\r\n" % path for path in (b"slow", b"b", b"c")
    )
    transport.receive(requests)
    assert transport.take() == b""  # the first answer is owed before the others
    gate.open()
    assert parse_responses(transport.take(), ["GET"] * 3) == [(200, b"/slow"), (200, b"/b"), (200, b"/c")]


def test_deep_pipeline_pauses_reading_until_answered(runtime: ManualRuntime) -> None:
    """Past the pipeline limit the connection stops reading; it reads again once answers go out."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/0":
            await gate.wait()
        await respond(send, scope["path"].encode())

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    count = ctx.max_pipeline + 4
    transport.receive(b"".join(b"GET /%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(count)))
    assert transport.log == ["pause_reading"]
    transport.receive(b"GET /late HTTP/1.1\r\nhost: x\r\n\r\n")  # held by the paused transport
    assert transport.inbound and transport.take() == b""
    gate.open()
    assert transport.log == ["pause_reading", "resume_reading"]
    bodies = [body for _, body in parse_responses(transport.take(), ["GET"] * (count + 1))]
    assert bodies == [b"/%d" % i for i in range(count)] + [b"/late"]


def test_request_body_above_high_water_pauses_reading(runtime: ManualRuntime) -> None:
    """A body the app has not read stops the reading past the high-water mark; reading it resumes."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"%d" % len(await read_body(receive)))

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = H1Client(transport)
    size = ctx.read_high_water * 3
    client.send(
        h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", str(size))])
    )
    client.send(h11.Data(data=b"a" * (ctx.read_high_water + 1)))
    assert transport.log == ["pause_reading"]
    client.send(h11.Data(data=b"b" * (size - ctx.read_high_water - 1)), h11.EndOfMessage())
    assert transport.inbound  # not delivered while paused
    gate.open()
    # (the held bytes arrive in one read, above the mark again, until the app has read them)
    assert transport.log[:2] == ["pause_reading", "resume_reading"] and transport.reading
    assert not transport.inbound
    assert client.response()[::2] == (200, b"%d" % size)


def test_send_waits_while_the_transport_pauses_writing(runtime: ManualRuntime) -> None:
    """After pause_writing the app's next send() waits; resume_writing lets it go on."""
    progress: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        progress.append("first")
        await send({"type": "http.response.body", "body": b"second", "more_body": False})
        progress.append("second")

    transport = connect(server_context(app, runtime))
    client = H1Client(transport)
    transport.stall()
    client.request()
    assert progress == []  # the send that filled the buffer waits for resume_writing
    assert b"first," in transport.buffer and b"second" not in transport.buffer
    assert transport.take() == b""
    transport.drain()
    assert progress == ["first", "second"]
    assert client.response()[::2] == (200, b"first,second")


def test_error_answer_half_closes_then_lingers(runtime: ManualRuntime) -> None:
    """A malformed request gets 400, a half-close, its later input dropped, and a close after LINGER."""
    transport = connect(server_context(echo, runtime))
    transport.receive(b"GET / HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n")
    [(status, _)] = parse_responses(transport.take(), ["GET"])
    assert status == 400
    assert transport.log == ["write_eof"]
    transport.receive(b"GET /more HTTP/1.1\r\nhost: x\r\n\r\n")
    assert transport.take() == b""  # read and dropped
    runtime.advance(LINGER - 0.01)
    assert not transport.closing
    runtime.advance(0.02)
    assert transport.log == ["write_eof", "close", "lost"]


def test_slow_request_head_gets_408(runtime: ManualRuntime) -> None:
    """A head that is not complete within --timeout-request-head is answered 408, then closed."""
    transport = connect(server_context(echo, runtime, timeout_request_head=3.0))
    transport.receive(b"GET / HTTP/1.1\r\nhost: x\r\n")
    runtime.advance(2.9)
    transport.receive(b"user-agent: slow\r\n")  # more of the head does not move its deadline
    assert transport.take() == b""
    runtime.advance(0.2)
    [(status, body)] = parse_responses(transport.take(), ["GET"])
    assert status == 408 and b"head" in body
    assert "write_eof" in transport.log


def test_stalled_request_body_gets_408(runtime: ManualRuntime) -> None:
    """A body with a gap longer than --timeout-request-body is answered 408; its app sees a disconnect."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    transport = connect(server_context(app, runtime, timeout_request_body=4.0))
    client = H1Client(transport)
    client.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "10")]))
    client.send(h11.Data(data=b"abc"))
    runtime.advance(3.9)
    assert transport.take() == b""
    runtime.advance(0.2)
    status, _, body = client.response()
    assert status == 408 and b"body" in body
    assert seen == ["http.request", "http.disconnect"]


def test_body_pieces_in_time_are_never_cut(runtime: ManualRuntime) -> None:
    """Each piece of a body restarts the body deadline: a slow but steady upload is served."""
    transport = connect(server_context(echo, runtime, timeout_request_body=3.0))
    client = H1Client(transport)
    client.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "4")]))
    for piece in (b"a", b"b", b"c"):
        runtime.advance(2.5)
        client.send(h11.Data(data=piece))
    runtime.advance(2.5)
    client.send(h11.Data(data=b"d"), h11.EndOfMessage())
    assert client.response()[::2] == (200, b"/:abcd")


def test_idle_keep_alive_connection_closes_after_its_timeout(runtime: ManualRuntime) -> None:
    """An idle connection is closed, with nothing written, once --timeout-keep-alive passes."""
    transport = connect(server_context(echo, runtime, timeout_keep_alive=2.0))
    client = H1Client(transport)
    client.request()
    assert client.response()[0] == 200
    runtime.advance(1.9)
    assert not transport.closing
    runtime.advance(0.2)
    assert transport.take() == b""
    assert transport.log == ["close", "lost"]


def test_output_the_peer_never_reads_is_cut_after_timeout_send(runtime: ManualRuntime) -> None:
    """A response stuck behind a peer that reads nothing is cut (abort) after --timeout-send."""
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(10):
                await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
        except OSError:
            outcome.append("send failed")
            return
        outcome.append("all sent")

    transport = connect(server_context(app, runtime, timeout_send=7.0))
    transport.stall(high_water=1500)
    H1Client(transport).request()
    runtime.advance(6.9)
    assert not transport.closing and outcome == []
    runtime.advance(0.2)
    assert transport.aborted and transport.lost
    assert outcome == ["send failed"]


def test_half_closed_peer_is_answered_then_closed(runtime: ManualRuntime) -> None:
    """A peer that half-closes right after its request still gets the answer, then a plain close."""
    transport = connect(server_context(echo, runtime))
    transport.receive(b"GET /bye HTTP/1.1\r\nhost: x\r\n\r\n")
    transport.receive_eof()
    assert parse_responses(transport.take(), ["GET"]) == [(200, b"/bye:")]
    assert "write_eof" not in transport.log and transport.lost
