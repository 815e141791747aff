"""The HTTP/1.1 driver's less travelled paths over an in-memory transport: the ASGI extensions
(trailers, early hints, pathsend), the access log, refusals, upgrades it declines, and shutdown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import h11
import pytest

from tests.connection.clients import Gate, H1Client, Receive, Send, parse_responses, read_body, respond
from tests.connection.test_http2_paths import over_tls
from tests.helpers.memory import ManualRuntime, connect, server_context
from wherry.connection.http1 import H1Driver
from wherry.logs import TRACE
from wherry.proto.http1 import H2_REFUSAL


async def hello(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await read_body(receive)
    await respond(send, b"hello")


def raw(method: str = "GET", target: str = "/", version: str = "1.1", *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "host: example.com", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def driver_of(runtime: ManualRuntime, transport: Any) -> H1Driver:
    protocol = transport.protocol
    assert isinstance(protocol, H1Driver)
    return protocol


# ---------------------------------------------------------------------- ASGI extensions


async def with_trailers(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"trailer", b"x-sum")], "trailers": True}
    )
    await send({"type": "http.response.body", "body": b"data"})
    await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")]})


def test_trailers_are_sent_to_a_client_that_accepts_them(runtime: ManualRuntime) -> None:
    """With TE: trailers the chunked response ends with the app's trailer section."""
    transport = connect(server_context(with_trailers, runtime))
    transport.receive(raw("GET", "/", "1.1", "te: trailers"))
    data = transport.take()
    assert data.endswith(b"4\r\ndata\r\n0\r\nx-sum: 42\r\n\r\n")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x"), ("te", "trailers")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    events = [client.next_event() for _ in range(3)]
    assert isinstance(events[2], h11.EndOfMessage) and events[2].headers == [(b"x-sum", b"42")]


def test_trailers_are_dropped_without_te(runtime: ManualRuntime) -> None:
    """Without TE: trailers the response ends with an empty last chunk and no trailer field."""
    transport = connect(server_context(with_trailers, runtime))
    transport.receive(raw())
    data = transport.take()
    assert data.endswith(b"4\r\ndata\r\n0\r\n\r\n") and b"x-sum: 42" not in data


def test_trailers_end_the_response_before_the_request_body_is_read(runtime: ManualRuntime) -> None:
    """A response completed by its trailers while the body is still coming lets the next request in."""
    transport = connect(server_context(with_trailers, runtime))
    transport.receive(raw("POST", "/", "1.1", "content-length: 10", "te: trailers") + b"12345")
    first = transport.take()
    assert first.endswith(b"0\r\nx-sum: 42\r\n\r\n")
    transport.receive(b"67890" + raw())
    assert transport.take().endswith(b"4\r\ndata\r\n0\r\n\r\n")  # (no TE: trailers this time)
    assert not transport.closing


async def early_hints(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
    await send({"type": "http.response.push", "path": "/style.css", "headers": []})
    await send({"type": "http.response.body", "body": b"page"})


def test_early_hints_reach_an_http11_client(runtime: ManualRuntime) -> None:
    """An early hint is written as a 103 before the response; server push is ignored."""
    transport = connect(server_context(early_hints, runtime))
    client = H1Client(transport)
    client.request()
    events = client.events()
    assert isinstance(events[0], h11.InformationalResponse) and events[0].status_code == 103
    assert dict(events[0].headers)[b"link"] == b"</style.css>; rel=preload; as=style"
    assert isinstance(events[1], h11.Response) and events[1].status_code == 200


def test_early_hints_are_not_sent_to_http10(runtime: ManualRuntime) -> None:
    """An HTTP/1.0 client gets no 1xx: the response is the first thing written."""
    transport = connect(server_context(early_hints, runtime))
    transport.receive(raw("GET", "/", "1.0"))
    data = transport.take()
    assert data.startswith(b"HTTP/1.1 200 ") and b" 103 " not in data
    assert data.endswith(b"page")


def pathsend_app(path: Path, trailers: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": trailers})
        await send({"type": "http.response.pathsend", "path": str(path)})
        if trailers:
            await send({"type": "http.response.trailers", "headers": [(b"x-done", b"yes")]})

    return app


def test_pathsend_writes_the_file_chunked(runtime: ManualRuntime, tmp_path: Path) -> None:
    """A pathsend response without a length carries the file's bytes in one chunk and ends."""
    content = bytes(range(256)) * 300
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    transport = connect(server_context(pathsend_app(path), runtime))
    client = H1Client(transport)
    client.request()
    status, headers, body = client.response()
    assert (status, body) == (200, content)
    assert headers[b"transfer-encoding"] == b"chunked"


def test_pathsend_waits_while_writing_is_paused(runtime: ManualRuntime, tmp_path: Path) -> None:
    """A file larger than one piece stops at pause_writing and goes on once the peer reads."""
    content = b"z" * 150_000
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    transport = connect(server_context(pathsend_app(path, trailers=True), runtime))
    transport.stall(high_water=1000)
    client = H1Client(transport)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x"), ("te", "trailers")]))
    client.send(h11.EndOfMessage())
    assert transport.writing_paused and transport.take() == b""
    transport.drain()
    transport.drain()
    status, _, body = client.response()
    assert (status, body) == (200, content)


def test_pathsend_of_an_empty_file(runtime: ManualRuntime, tmp_path: Path) -> None:
    """An empty file gives an empty body, properly ended."""
    path = tmp_path / "empty"
    path.write_bytes(b"")
    transport = connect(server_context(pathsend_app(path), runtime))
    client = H1Client(transport)
    client.request()
    assert client.response()[::2] == (200, b"")


# ---------------------------------------------------------------------- logging


def test_access_line_per_request(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """With the access log on, each answered request has its line with method, target and status."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    transport = connect(server_context(hello, runtime, access_log=True))
    transport.receive(raw("GET", "/path?q=1"))
    assert transport.take().endswith(b"hello")
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    assert len(lines) == 1 and '"GET /path?q=1 HTTP/1.1" 200 5' in lines[0]
    assert lines[0].startswith("127.0.0.1:50000 - ")


def test_access_line_of_a_bad_request(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """A request the server refused itself is logged with "-" as its line and its status."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    transport = connect(server_context(hello, runtime, access_log=True))
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 400 ")
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    assert len(lines) == 1 and '"-" 400 ' in lines[0]


def test_access_line_with_a_format(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """A custom access format computes the atoms it names, headers of both sides included."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    fmt = '%(h)s "%(r)s" %(s)s %(b)s %(m)s %(U)s %(q)s %(H)s %({user-agent}i)s %({content-type}o)s %(zz)s'
    transport = connect(server_context(hello, runtime, access_log=True, access_log_format=fmt))
    transport.receive(raw("GET", "/a?b=c", "1.1", "user-agent: probe/1"))
    assert transport.take().endswith(b"hello")
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    assert lines == ['127.0.0.1 "GET /a?b=c HTTP/1.1" 200 5 GET /a b=c HTTP/1.1 probe/1 text/plain -']


def test_json_access_line_carries_fields(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """With the JSON log format the access record carries the request's fields."""
    caplog.set_level(logging.INFO, logger="wherry.access")
    transport = connect(server_context(hello, runtime, access_log=True, log_format="json"))
    transport.receive(raw("POST", "/j", "1.1", "content-length: 0", "user-agent: ua"))
    transport.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    records = [r for r in caplog.records if r.name == "wherry.access"]
    fields = [r.__dict__["access"] for r in records]
    assert fields[0]["method"] == "POST" and fields[0]["target"] == "/j"
    assert fields[0]["status"] == 200 and fields[0]["user_agent"] == "ua"
    assert fields[1] == {
        "client": "127.0.0.1:50000",
        "request": None,
        "status": 400,
        "bytes": fields[1]["bytes"],
    }


def test_trace_lines_for_a_connection(runtime: ManualRuntime, caplog: pytest.LogCaptureFixture) -> None:
    """At the trace level a connection's start and end are logged."""
    caplog.set_level(TRACE, logger="wherry.error")
    transport = connect(server_context(hello, runtime))
    transport.receive(raw("GET", "/", "1.1", "connection: close"))
    assert transport.take().endswith(b"hello")
    messages = [r.getMessage() for r in caplog.records if r.levelno == TRACE]
    assert any("Connection made" in m for m in messages)
    assert any("Connection lost" in m for m in messages)


# ---------------------------------------------------------------------- refusals and upgrades


def test_http2_preface_is_refused_when_http2_is_off(runtime: ManualRuntime) -> None:
    """With HTTP/2 disabled the client preface gets the refusal and the connection closes."""
    transport = connect(server_context(hello, runtime, http2=False))
    transport.receive(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert transport.take() == H2_REFUSAL
    assert transport.eof_written or transport.closing


def test_h2c_upgrade_without_settings_is_a_bad_request(runtime: ManualRuntime) -> None:
    """An h2c Upgrade without its HTTP2-Settings header is answered 400 and closed."""
    transport = connect(server_context(hello, runtime))
    transport.receive(raw("GET", "/", "1.1", "connection: upgrade", "upgrade: h2c"))
    client = H1Client(transport)
    status, headers, _ = client.response()
    assert (status, headers[b"connection"]) == (400, b"close")


def test_h2c_upgrade_behind_another_request_is_refused(runtime: ManualRuntime) -> None:
    """An h2c Upgrade pipelined behind a request is refused once that request is answered."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"first")

    transport = connect(server_context(app, runtime))
    upgrade = raw(
        "GET",
        "/",
        "1.1",
        "connection: upgrade, http2-settings",
        "upgrade: h2c",
        "http2-settings: AAMAAABkAAQAAP__",
    )
    transport.receive(raw() + upgrade)
    assert transport.take() == b""
    gate.open()
    assert parse_responses(transport.take(), ["GET", "GET"])[0] == (200, b"first")


def test_app_that_returns_without_answering_gets_500(runtime: ManualRuntime) -> None:
    """An app that returns without a response makes the server answer 500."""

    async def silent(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        return None

    transport = connect(server_context(silent, runtime))
    client = H1Client(transport)
    client.request()
    assert client.response()[0] == 500


def test_app_that_fails_mid_response_cuts_the_connection(runtime: ManualRuntime) -> None:
    """An app that fails after starting its body leaves the connection closed, the body unfinished."""

    async def broken(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("boom")

    transport = connect(server_context(broken, runtime))
    transport.receive(raw())
    data = transport.take()
    assert data.endswith(b"4\r\npart\r\n") and transport.closing


def test_expect_continue_is_answered_when_the_app_reads(runtime: ManualRuntime) -> None:
    """With Expect: 100-continue the 100 goes out only once the app asks for the body."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, await read_body(receive))

    transport = connect(server_context(app, runtime))
    transport.receive(raw("POST", "/", "1.1", "content-length: 3", "expect: 100-continue"))
    assert transport.take() == b""
    gate.open()
    assert transport.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    transport.receive(b"abc")
    assert transport.take().endswith(b"abc")


# ---------------------------------------------------------------------- shutdown


def test_connection_made_during_shutdown_is_closed(runtime: ManualRuntime) -> None:
    """A connection accepted while the server shuts down is closed with nothing written."""
    ctx = server_context(hello, runtime)
    ctx.shutting_down = True
    transport = connect(ctx)
    assert transport.log == ["close", "lost"] and transport.take() == b""


def test_shutdown_closes_an_idle_connection(runtime: ManualRuntime) -> None:
    """Shutdown closes a connection with no request in flight at once."""
    transport = connect(server_context(hello, runtime))
    runtime.call(driver_of(runtime, transport).shutdown)
    assert transport.log == ["close", "lost"]


def test_shutdown_lets_the_response_in_flight_finish(runtime: ManualRuntime) -> None:
    """During shutdown the response in flight is written with connection: close, then it closes."""
    gate = Gate(runtime)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await gate.wait()
        await respond(send, b"last")

    ctx = server_context(app, runtime)
    transport = connect(ctx)
    client = H1Client(transport)
    client.request()
    ctx.shutting_down = True
    runtime.call(driver_of(runtime, transport).shutdown)
    assert not transport.closing
    gate.open()
    status, headers, body = client.response()
    assert (status, headers[b"connection"], body) == (200, b"close", b"last")
    assert transport.closing


def test_abort_all_cuts_the_response_in_flight(runtime: ManualRuntime) -> None:
    """At the end of the graceful period the app in flight learns of the disconnect and the
    connection is aborted."""
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await read_body(receive)
        seen.append(await receive())

    transport = connect(server_context(app, runtime))
    transport.receive(raw())
    runtime.call(driver_of(runtime, transport).abort_all)
    assert transport.aborted and seen == [{"type": "http.disconnect"}]
    assert transport.take() == b""


# ---------------------------------------------------------------------- less common ends


def test_a_body_that_breaks_after_the_app_took_its_start_closes_without_a_400(runtime: ManualRuntime) -> None:
    """The app took http.response.start (nothing written yet) and reads the body; the body breaks
    framing: the app learns the client is gone, and the connection closes without an answer."""
    seen: list[str] = []

    async def start_then_read(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append((await receive())["type"])

    transport = connect(server_context(start_then_read, runtime))
    transport.receive(raw("POST", "/", "1.1", "transfer-encoding: chunked"))
    assert seen == []
    transport.receive(b"zz\r\n")
    assert seen == ["http.disconnect"]
    assert transport.take() == b"" and transport.closing


def test_pathsend_over_tls_is_read_and_written_in_pieces(runtime: ManualRuntime, tmp_path: Path) -> None:
    """Over TLS the kernel cannot send the file (no sendfile): it goes through the transport."""
    content = bytes(range(256)) * 1000
    path = tmp_path / "file.bin"
    path.write_bytes(content)
    transport = over_tls(server_context(pathsend_app(path), runtime), "http/1.1")
    client = H1Client(transport)
    client.request()
    assert client.response()[::2] == (200, content)


class SlowSendfile(ManualRuntime):
    """A runtime whose sendfile waits until the test lets it finish, having sent the file (as
    the kernel would) or declined it."""

    def __init__(self, sends: bool) -> None:
        super().__init__()
        self.sends = sends
        self.done = self.create_future()

    async def sendfile(self, transport: Any, file: Any, offset: int, count: int) -> bool:
        await self.done
        if self.sends:
            transport.write(file.read(count))
        return self.sends


@pytest.mark.parametrize("sends", [True, False], ids=["sent", "declined"])
def test_a_connection_cut_during_sendfile_ends_the_pathsend(tmp_path: Path, sends: bool) -> None:
    """The connection is cut (the graceful period is over) while sendfile runs: when it returns,
    whether it sent the file or declined, the app's send() raises ClientDisconnected and nothing
    more is written."""
    runtime = SlowSendfile(sends)
    path = tmp_path / "file.bin"
    path.write_bytes(b"f" * 1000)
    raised: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        try:
            await send({"type": "http.response.pathsend", "path": str(path)})
        except OSError as exc:
            raised.append(type(exc).__name__)
            raise

    transport = connect(server_context(app, runtime))
    driver = driver_of(runtime, transport)
    transport.receive(raw())
    head = transport.take()
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    runtime.call(driver.abort_all)
    runtime.call(lambda: runtime.done.set_result(None))
    assert raised == ["ClientDisconnected"]
    assert transport.aborted and transport.take() == b""
    runtime.close()
    assert not runtime.errors


def test_sends_from_two_tasks_wait_together_while_writing_is_paused(runtime: ManualRuntime) -> None:
    """An app sends two pieces of its body from two tasks at once to a peer that reads nothing:
    both wait for the same resume, and the body arrives in order once the peer reads."""
    done: list[str] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8")]})
        await asyncio.gather(
            send({"type": "http.response.body", "body": b"1234", "more_body": True}),
            send({"type": "http.response.body", "body": b"5678", "more_body": True}),
        )
        done.append("both")
        await send({"type": "http.response.body", "body": b""})

    transport = connect(server_context(app, runtime))
    transport.stall(high_water=0)
    client = H1Client(transport)
    client.request()
    assert transport.writing_paused and done == []
    transport.drain()
    assert done == ["both"]
    assert client.response()[::2] == (200, b"12345678")
