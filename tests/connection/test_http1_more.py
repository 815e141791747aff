"""The HTTP/1.1 driver's rarer turns over an in-memory transport: bodies that break framing,
timeouts and upgrades behind pipelined requests, half-closes, files that fail while being sent,
responses longer than announced, metrics and access-line atoms, and transports that cannot
half-close."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from tests.connection.clients import Gate, H1Client, Receive, Send, parse_responses, read_body, respond
from tests.helpers.memory import ManualRuntime, MemoryTransport, connect, server_context
from wherry.connection.context import ServerContext
from wherry.connection.extensions import CHUNK
from wherry.connection.http1 import H1Driver
from wherry.contracts import Transport
from wherry.logs import ANSWERED_BY


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


# ---------------------------------------------------------------------- files and response bodies


class FailingSendfile(ManualRuntime):
    """A runtime whose kernel file sending fails (the peer reset the connection)."""

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        raise ConnectionResetError("reset by peer")


class KernelSendfile(ManualRuntime):
    """A runtime that sends files itself, as the kernel would (the bytes go out in one write)."""

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        file.seek(offset)
        transport.write(file.read(count))
        return True


@contextmanager
def running(rt: ManualRuntime) -> Iterator[ManualRuntime]:
    """A runtime of another class for one test; nothing may reach the loop's exception handler."""
    try:
        yield rt
    finally:
        rt.close()
    assert not rt.errors, f"unhandled errors in the event loop: {rt.errors}"


def file_app(path: Path, size: int | None, failures: list[str]) -> Any:
    """Answers with the file at ``path`` (with a content-length when ``size`` is given), noting
    the exception its send raised."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = [] if size is None else [(b"content-length", b"%d" % size)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await send({"type": "http.response.pathsend", "path": str(path)})
        except OSError as exc:
            failures.append(type(exc).__name__)

    return app


def test_sendfile_failure_cuts_the_connection(tmp_path: Path) -> None:
    """A kernel send that fails aborts the connection and the app's send raises ClientDisconnected."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    failures: list[str] = []
    with running(FailingSendfile()) as rt:
        transport = connect(server_context(file_app(path, 1000, failures), rt))
        transport.receive(raw())
        assert failures == ["ClientDisconnected"] and transport.aborted
        data = transport.take()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\n")


def test_sendfile_by_the_kernel_with_a_length(tmp_path: Path) -> None:
    """A file the runtime sends itself makes the whole body of a content-length response."""
    content = bytes(range(256)) * 8
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    failures: list[str] = []
    with running(KernelSendfile()) as rt:
        transport = connect(server_context(file_app(path, len(content), failures), rt))
        client = H1Client(transport)
        client.request()
        status, headers, body = client.response()
        assert (status, headers[b"content-length"], body) == (200, b"2048", content)
        assert failures == [] and not transport.closing


def test_sendfile_by_the_kernel_chunked(tmp_path: Path) -> None:
    """A file the runtime sends itself goes inside one chunk when the response has no length."""
    content = b"k" * 3000
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    failures: list[str] = []
    with running(KernelSendfile()) as rt:
        transport = connect(server_context(file_app(path, None, failures), rt))
        client = H1Client(transport)
        client.request()
        status, headers, body = client.response()
        assert (status, headers[b"transfer-encoding"], body) == (200, b"chunked", content)


def test_file_that_shrinks_while_being_sent(runtime: ManualRuntime, tmp_path: Path) -> None:
    """A file cut short while its pieces are written: the connection is aborted and the app's send
    raises OSError, with the bytes already read delivered as they were."""
    path = tmp_path / "shrinking.bin"
    path.write_bytes(b"s" * (CHUNK * 3))
    failures: list[str] = []
    transport = connect(server_context(file_app(path, CHUNK * 3, failures), runtime))
    transport.stall(high_water=1000)
    transport.receive(raw())
    assert transport.writing_paused and failures == []
    with open(path, "r+b") as f:
        f.truncate(CHUNK + 10)
    transport.drain()
    assert failures == ["OSError"] and transport.aborted
    head, _, body = transport.take().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b"s" * (CHUNK + 10)


def test_body_longer_than_its_content_length(runtime: ManualRuntime) -> None:
    """A body going past the content-length the app announced aborts the connection; the app's
    send raises and the peer has only the announced part."""
    failures: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        try:
            await send({"type": "http.response.body", "body": b"cdef"})
        except Exception as exc:
            failures.append(type(exc).__name__)

    transport = connect(server_context(app, runtime))
    transport.receive(raw())
    assert failures == ["LocalProtocolError"] and transport.aborted
    assert transport.take().endswith(b"\r\n\r\nab")


def test_response_before_the_body_lets_the_next_request_in(runtime: ManualRuntime) -> None:
    """An app answering before reading a large body that paused reading: reading resumes, the
    rest of the body is dropped and the next request is served."""
    gate = Gate(runtime)
    paths: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        paths.append(scope["path"])
        if scope["path"] == "/upload":
            await gate.wait()
        await respond(send, scope["path"].encode())

    transport = connect(server_context(app, runtime))
    transport.receive(raw("POST", "/upload", "content-length: 200000") + b"u" * 100_000)
    assert "pause_reading" in transport.log
    gate.open()
    assert "resume_reading" in transport.log
    transport.receive(b"u" * 100_000 + raw("GET", "/next"))
    assert parse_responses(transport.take(), ["POST", "GET"]) == [(200, b"/upload"), (200, b"/next")]
    assert paths == ["/upload", "/next"]


def test_streamed_response_before_the_body_is_read(runtime: ManualRuntime) -> None:
    """A streamed response ended before the request body is read: the body is dropped and the
    connection serves the next request."""

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    transport = connect(server_context(app, runtime))
    transport.receive(raw("POST", "/", "content-length: 6") + b"abc")
    transport.receive(b"def" + raw("GET", "/again"))
    assert parse_responses(transport.take(), ["POST", "GET"]) == [(200, b"ab"), (200, b"ab")]
    assert not transport.closing


def test_no_continue_for_a_body_that_came_already(runtime: ManualRuntime) -> None:
    """A body sent without waiting for the 100 is read as is: no 100 Continue is written."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == "/first":
            await gate.wait()
        await respond(send, await read_body(receive))

    transport = connect(server_context(app, runtime))
    first = raw("POST", "/first", "content-length: 3", "expect: 100-continue") + b"abc"
    transport.receive(first + raw("GET", "/second"))
    gate.open()
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert parse_responses(data, ["POST", "GET"]) == [(200, b"abc"), (200, b"")]


# ---------------------------------------------------------------------- closing with output held


def test_closed_connection_delivers_what_it_holds(runtime: ManualRuntime) -> None:
    """A refusal written while the peer does not read stays held after the server's side is
    closed, and reaches the peer once it reads."""
    transport = connect(server_context(hello, runtime))
    transport.stall(high_water=0)
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.writing_paused and transport.eof_written and transport.take() == b""
    transport.drain()
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 400 ") and b"connection: close" in data.lower()
    assert not transport.writing_paused and not transport.aborted


def test_closed_connection_the_peer_never_reads_is_cut(runtime: ManualRuntime) -> None:
    """A refusal the peer reads nothing of for timeout_send seconds has its connection aborted."""
    transport = connect(server_context(hello, runtime, timeout_send=10.0))
    transport.stall(high_water=0)
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    runtime.advance(9.0)
    assert not transport.aborted
    runtime.advance(2.0)
    assert transport.aborted and transport.lost and transport.take() == b""


# ---------------------------------------------------------------------- metrics and access lines


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wherry.access"]


def test_metrics_count_answers_and_refusals(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """With metrics on (and no access log) answered and refused requests are counted by status."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    ctx = server_context(hello, runtime, metrics_bind="127.0.0.1:9100")
    assert ctx.metrics is not None
    transport = connect(ctx)
    transport.receive(raw())
    assert transport.take().endswith(b"hello")
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 400 ")
    snapshot = ctx.metrics.snapshot(0, 0)
    assert snapshot["requests"] == {"200": 1, "400": 1} and sum(snapshot["buckets"]) == 1
    assert access_lines(caplog) == []


class Composite:
    """An app made of others, as wherry.compose builds them: it writes which one answered."""

    logs_app_name = True

    def __init__(self, name: str | None) -> None:
        self.name = name

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self.name is not None:
            scope[ANSWERED_BY] = [self.name]
        await hello(scope, receive, send)


@pytest.mark.parametrize(("name", "suffix"), [("api", " app=api"), (None, " app=-")])
def test_access_line_names_the_app_that_answered(
    runtime: ManualRuntime, caplog: pytest.LogCaptureFixture, name: str | None, suffix: str
) -> None:
    """An app that logs its name ends each access line with the name of the app that answered."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    transport = connect(server_context(Composite(name), runtime, access_log=True))
    transport.receive(raw("GET", "/x"))
    assert transport.take().endswith(b"hello")
    lines = access_lines(caplog)
    assert len(lines) == 1 and '"GET /x HTTP/1.1" 200 5 ' in lines[0] and lines[0].endswith(suffix)


def test_access_format_date_and_environment_atoms(
    runtime: ManualRuntime, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The %(t)s atom is the request's date in the common log format; %({NAME}e)s an environment
    variable, "-" when unset."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    monkeypatch.setenv("WHERRY_ATOM_PROBE", "probe-value")
    monkeypatch.delenv("WHERRY_ATOM_ABSENT", raising=False)
    fmt = "%(t)s %(s)s %({WHERRY_ATOM_PROBE}e)s %({WHERRY_ATOM_ABSENT}e)s"
    transport = connect(server_context(hello, runtime, access_log=True, access_log_format=fmt))
    transport.receive(raw())
    assert transport.take().endswith(b"hello")
    lines = access_lines(caplog)
    assert len(lines) == 1
    assert re.fullmatch(r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] 200 probe-value -", lines[0])


def test_json_access_line_with_a_format(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """With a custom format and JSON logs the line follows the format and the record has the fields."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    ctx = server_context(hello, runtime, access_log=True, access_log_format="%(m)s %(s)s", log_format="json")
    transport = connect(ctx)
    transport.receive(raw("PUT", "/f", "content-length: 0"))
    assert transport.take().endswith(b"hello")
    records = [r for r in caplog.records if r.name == "wherry.access"]
    assert [r.getMessage() for r in records] == ["PUT 200"]
    fields = records[0].__dict__["access"]
    assert (fields["method"], fields["target"], fields["status"], fields["bytes"]) == ("PUT", "/f", 200, 5)


# ---------------------------------------------------------------------- transports and timers


class NoHalfClose(MemoryTransport):
    """A transport that cannot end its sending side alone."""

    def can_write_eof(self) -> bool:
        return False


class EofFails(MemoryTransport):
    """A transport whose write_eof fails: the peer is already gone."""

    def write_eof(self) -> None:
        raise BrokenPipeError("broken pipe")


class Opaque(NoHalfClose):
    """A transport that cannot say how much output it holds."""

    def get_write_buffer_size(self) -> int:
        raise NotImplementedError


@pytest.mark.parametrize("kind", [NoHalfClose, EofFails])
def test_refusal_closes_a_transport_that_cannot_half_close(
    runtime: ManualRuntime, kind: type[MemoryTransport]
) -> None:
    """Where the sending side cannot be ended alone, the 400 is followed by a plain close."""
    transport = connect_with(server_context(hello, runtime), kind)
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 400 ")
    assert transport.log == ["close", "lost"] and not transport.eof_written


def test_held_output_of_a_transport_that_cannot_say_its_size(runtime: ManualRuntime) -> None:
    """A closed transport that cannot report what it holds is not cut after timeout_send: the
    peer still gets the refusal when it reads."""
    transport = connect_with(server_context(hello, runtime, timeout_send=10.0), Opaque)
    transport.stall(high_water=100_000)
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.closing and transport.take() == b""
    runtime.advance(60.0)
    assert not transport.aborted
    transport.drain()
    assert transport.take().startswith(b"HTTP/1.1 400 ") and transport.lost


def test_held_output_of_a_closed_transport_is_cut_after_timeout_send(runtime: ManualRuntime) -> None:
    """A closed transport still holding output the peer does not read is aborted after timeout_send."""
    transport = connect_with(server_context(hello, runtime, timeout_send=10.0), NoHalfClose)
    transport.stall(high_water=100_000)
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.closing and not transport.aborted
    runtime.advance(11.0)
    assert transport.aborted and transport.take() == b""


def test_scope_has_no_server_without_a_socket_address(runtime: ManualRuntime) -> None:
    """A transport with no usable socket address gives a scope whose server is None."""
    servers: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        servers.append(scope["server"])
        await hello(scope, receive, send)

    transport = connect(server_context(app, runtime), sockname=None)
    transport.receive(raw())
    assert transport.take().endswith(b"hello") and servers == [None]


def test_keep_alive_deadline_does_not_apply_while_an_app_runs(runtime: ManualRuntime) -> None:
    """A request whose app runs past the keep-alive timeout is answered; the connection stays open."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"late")

    transport = connect(server_context(app, runtime, timeout_keep_alive=5.0, timeout_request_head=5.0))
    runtime.advance(1.0)
    transport.receive(raw())
    runtime.advance(30.0)
    assert not transport.closing and transport.take() == b""
    gate.open()
    assert parse_responses(transport.take(), ["GET"]) == [(200, b"late")] and not transport.closing


def test_request_arriving_as_the_keep_alive_deadline_passes(runtime: ManualRuntime) -> None:
    """A request read in the same instant the idle deadline passes is served, not closed on."""
    transport = connect(server_context(hello, runtime, timeout_keep_alive=5.0, timeout_request_head=5.0))
    driver = transport.protocol
    runtime.call_at(runtime.time() + 5.0, lambda: driver.data_received(raw()))
    runtime.advance(5.0)
    assert parse_responses(transport.take(), ["GET"]) == [(200, b"hello")] and not transport.closing
    runtime.advance(10.0)
    assert transport.closing


def test_request_with_a_slow_app_arriving_as_the_deadline_passes(runtime: ManualRuntime) -> None:
    """A request whose app waits, read in the same instant the idle deadline passes, is answered
    once its app goes on."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"slow")

    transport = connect(server_context(app, runtime, timeout_keep_alive=5.0, timeout_request_head=5.0))
    driver = transport.protocol
    runtime.call_at(runtime.time() + 5.0, lambda: driver.data_received(raw()))
    runtime.advance(20.0)
    assert not transport.closing and transport.take() == b""
    gate.open()
    assert parse_responses(transport.take(), ["GET"]) == [(200, b"slow")]


def test_shutdown_as_the_deadline_passes(runtime: ManualRuntime) -> None:
    """A connection shut down in the instant its idle deadline passes is closed once, quietly."""
    transport = connect(server_context(hello, runtime, timeout_keep_alive=5.0, timeout_request_head=5.0))
    driver = transport.protocol
    runtime.call_at(runtime.time() + 5.0, driver.shutdown)
    runtime.advance(10.0)
    assert transport.log == ["close", "lost"] and transport.take() == b""


# ---------------------------------------------------------------------- timeouts, trailers, ends


def test_body_timeout_after_the_response_started(runtime: ManualRuntime) -> None:
    """A body that stops coming after the app started its response: the app reads a disconnect
    and the connection closes with no 408 mixed into the response."""
    seen: list[dict[str, Any]] = []
    ctx = server_context(recorder(seen, start_first=True), runtime, timeout_request_body=5.0)
    transport = connect(ctx)
    transport.receive(raw("POST", "/", "content-length: 10") + b"abc")
    assert seen == [{"type": "http.request", "body": b"abc", "more_body": True}]
    runtime.advance(6.0)
    assert seen[-1] == {"type": "http.disconnect"} and transport.closing
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"4\r\npart\r\n") and b" 408 " not in data


def test_head_timeout_is_logged_as_a_refusal(
    runtime: ManualRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    """A request head that never ends is answered 408 and logged with "-" as its line."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    transport = connect(server_context(hello, runtime, access_log=True, timeout_request_head=5.0))
    transport.receive(b"GET / HTTP/1.1\r\nhost: exa")
    runtime.advance(6.0)
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 408 ")
    lines = access_lines(caplog)
    assert len(lines) == 1 and '"-" 408 ' in lines[0]


def test_trailers_before_the_announced_length_cut_the_connection(runtime: ManualRuntime) -> None:
    """Trailers ending a body shorter than its content-length abort the connection; the app's
    send raises."""
    failures: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
        await send({"type": "http.response.body", "body": b"abc"})
        try:
            await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})
        except Exception as exc:
            failures.append(type(exc).__name__)

    transport = connect(server_context(app, runtime))
    transport.receive(raw("GET", "/", "te: trailers"))
    assert failures == ["LocalProtocolError"] and transport.aborted
    assert transport.take().endswith(b"\r\n\r\nabc")


def test_shutdown_ends_the_lingering_after_a_refusal(runtime: ManualRuntime) -> None:
    """A connection lingering after its 400 is closed at once by shutdown."""
    transport = connect(server_context(hello, runtime))
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 400 ") and transport.log == ["write_eof"]
    runtime.call(transport.protocol.shutdown)
    assert transport.log == ["write_eof", "close", "lost"]


def test_abort_all_cuts_an_idle_connection(runtime: ManualRuntime) -> None:
    """At the end of the graceful period an idle connection is aborted."""
    transport = connect(server_context(hello, runtime))
    runtime.call(transport.protocol.abort_all)
    assert transport.aborted and transport.log == ["abort", "lost"]


def test_abort_all_leaves_a_closed_connection_alone(runtime: ManualRuntime) -> None:
    """A connection already closed after its last answer is not aborted at the end of the
    graceful period: its answer was delivered whole."""
    transport = connect(server_context(hello, runtime))
    transport.receive(raw("GET", "/", "connection: close"))
    assert transport.take().endswith(b"hello") and transport.log == ["close", "lost"]
    runtime.call(transport.protocol.abort_all)
    assert not transport.aborted and transport.log == ["close", "lost"]
