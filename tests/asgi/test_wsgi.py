"""The WSGI adapter (wherry/asgi/wsgi.py) driven in memory: an ASGI receive and send on an asyncio
loop, the application on the adapter's pool thread. The environ without a server address or a
raw path, ``wsgi.input`` read by lines and sizes, ``wsgi.errors``, the checks of start_response,
write() and the response pieces, ``expect: 100-continue``, a client gone before the application
runs, failures after the response is committed, and a request cancelled while its application
waits for the body. tests/e2e/test_wsgi.py serves the same adapter over real sockets."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from wherry.asgi.http import ClientDisconnected
from wherry.asgi.wsgi import (
    _RECEIVE,
    ErrorStream,
    WSGIAdapter,
    _Exchange,
    build_environ,
)
from wherry.contracts import Message

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[Any]]


def http_scope(**changes: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("testserver", 8000),
        "client": ("127.0.0.1", 50000),
    }
    scope.update(changes)
    return scope


class Served:
    """What one request sent, and how many times the adapter called receive()."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.receives = 0

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def pieces(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


def serve(app: WSGIApp, incoming: list[Message], scope: dict[str, Any] | None = None) -> Served:
    """One request through the adapter; ``incoming`` are the receive() messages (then a
    disconnect). Returns once the application's thread is done."""
    adapter = WSGIAdapter(app, asyncio.get_running_loop, threads=1)
    served = Served()

    async def receive() -> Message:
        served.receives += 1
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        served.sent.append(message)

    try:
        asyncio.run(adapter(scope or http_scope(), receive, send))
    finally:
        adapter._executor().shutdown(wait=True)
    return served


def body(data: bytes, more: bool = False) -> Message:
    return {"type": "http.request", "body": data, "more_body": more}


# ---------------------------------------------------------------- environ


def test_without_a_raw_path_path_info_is_the_path_past_root_path_as_latin1() -> None:
    scope = http_scope(path="/app/caf\u00e9", root_path="/app")
    del scope["raw_path"]
    environ = build_environ(scope, None, None)
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/caf\u00e9".encode().decode("latin-1")
    # A path that only starts with the same letters is not under root_path.
    scope = http_scope(path="/application", root_path="/app")
    del scope["raw_path"]
    assert build_environ(scope, None, None)["PATH_INFO"] == "/application"


@pytest.mark.parametrize(
    ("host", "scheme", "name", "port"),
    [
        (b"example.com:8080", "http", "example.com", "8080"),
        (b"example.com", "http", "example.com", "80"),
        (b"example.com", "https", "example.com", "443"),
        (b"[::1]:8443", "http", "[::1]", "8443"),
        (b"[::1]", "https", "[::1]", "443"),
        (b"::1", "http", "::1", "80"),  # a bare IPv6 address: its last group is not a port
        (b"example.com:http", "http", "example.com:http", "80"),
        (None, "http", "localhost", "80"),
    ],
)
def test_without_a_server_address_the_host_header_names_the_server(
    host: bytes | None, scheme: str, name: str, port: str
) -> None:
    """A Unix socket has no port (``server`` is (path, None)), and ``server`` may be absent: PEP
    3333's SERVER_NAME and SERVER_PORT then come from Host, or the scheme's default port."""
    headers = [] if host is None else [(b"host", host)]
    for server in (("/run/wherry.sock", None), None):
        environ = build_environ(http_scope(server=server, scheme=scheme, headers=headers), None, None)
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)


def test_the_environ_of_a_request_with_its_headers_and_raw_path() -> None:
    """The raw path's bytes, percent-decoded, past root_path; Content-Type and Content-Length
    without HTTP_; repeated fields joined (cookies with "; "); a name with "_" dropped."""
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", b"3"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"accept", b"text/html"),
        (b"accept", b"*/*"),
        (b"x_forwarded_for", b"10.0.0.1"),
    ]
    scope = http_scope(raw_path=b"/app/caf%C3%A9", root_path="/app", headers=headers, query_string=b"q=1")
    environ = build_environ(scope, None, None, multiprocess=True)
    assert environ["PATH_INFO"] == "/caf\u00e9".encode().decode("latin-1")
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("text/plain", "3")
    assert (environ["HTTP_COOKIE"], environ["HTTP_ACCEPT"]) == ("a=1; b=2", "text/html,*/*")
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert (environ["QUERY_STRING"], environ["wsgi.multiprocess"]) == ("q=1", True)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("testserver", "8000")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", "50000")


def test_without_a_client_address_there_is_no_remote_addr() -> None:
    environ = build_environ(http_scope(client=None), None, None)
    assert "REMOTE_ADDR" not in environ
    assert "REMOTE_PORT" not in environ


# ---------------------------------------------------------------- wsgi.errors


def test_wsgi_errors_logs_whole_lines_and_refuses_bytes(caplog: pytest.LogCaptureFixture) -> None:
    errors = ErrorStream()
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        errors.writelines(["one\ntw", "o\n", "thr"])
        assert [r.getMessage() for r in caplog.records] == ["one", "two"]
        errors.flush()
        errors.flush()  # nothing left: nothing more logged
    assert [r.getMessage() for r in caplog.records] == ["one", "two", "thr"]
    with pytest.raises(TypeError, match=r"wsgi\.errors takes str, not bytes"):
        errors.write(b"bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- wsgi.input


def reader(read: Callable[[Any], Any]) -> WSGIApp:
    """An application that answers ``repr(read(wsgi.input))``."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        result = read(environ["wsgi.input"])
        start_response("200 OK", [("content-type", "text/plain")])
        return [repr(result).encode()]

    return app


def test_readline_with_a_size_stops_at_the_size_when_no_newline_comes_first() -> None:
    incoming = [body(b"abcdef", more=True), body(b"\ngh\nij")]
    served = serve(
        reader(lambda i: [i.readline(4), i.readline(4), i.readline(1), *i, i.readline(2)]), incoming
    )
    assert served.body == repr([b"abcd", b"ef\n", b"g", b"h\n", b"ij", b""]).encode()


def test_readline_waits_for_the_messages_that_complete_the_line() -> None:
    incoming = [body(b"ab", more=True), body(b"c", more=True), body(b"d\nrest")]
    served = serve(reader(lambda i: [i.readline(), i.read()]), incoming)
    assert served.body == repr([b"abcd\n", b"rest"]).encode()
    assert served.receives == 3  # the three body messages, nothing after the last


def test_readlines_stops_once_the_hint_is_reached() -> None:
    served = serve(reader(lambda i: [i.readlines(3), i.readlines(), i.readlines()]), [body(b"a\nb\nc\nd")])
    assert served.body == repr([[b"a\n", b"b\n"], [b"c\n", b"d"], []]).encode()


def test_read_with_a_size_takes_the_messages_it_needs_and_keeps_the_rest() -> None:
    incoming = [body(b"abc", more=True), body(b"defg", more=True), body(b"h")]
    served = serve(reader(lambda i: [i.read(5), i.read(None), i.read(1)]), incoming)
    assert served.body == repr([b"abcde", b"fgh", b""]).encode()


def test_with_expect_100_continue_the_body_is_not_received_until_the_app_reads() -> None:
    """The adapter receives nothing before the application reads, so the server sends no 100
    Continue to an application that answers without the body (RFC 9110 §10.1.1)."""
    scope = http_scope(headers=[(b"content-length", b"10"), (b"expect", b"100-Continue")])

    def answers_at_once(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("417 Expectation Failed", [])
        return []

    served = serve(answers_at_once, [body(b"never read")], scope)
    assert (served.status, served.receives) == (417, 0)
    served = serve(reader(lambda i: i.read()), [body(b"read")], scope)
    assert (served.body, served.receives) == (b"b'read'", 1)


def test_a_client_gone_before_the_app_runs_sends_nothing() -> None:
    called = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        called.append(environ)
        return []

    served = serve(app, [{"type": "http.disconnect"}])
    assert (served.sent, called) == ([], [])


# ---------------------------------------------------------------- the response


def test_a_list_sends_each_piece_and_its_last_with_the_end() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
        start_response("200 OK", [])
        return [b"a", b"", bytearray(b"b"), memoryview(b"c")]

    served = serve(app, [body(b"")])
    assert served.pieces == [(b"a", True), (b"b", True), (b"c", False)]  # the empty piece is skipped


def test_write_takes_bytes_likes_and_sends_an_empty_write_only_as_the_head() -> None:
    """An empty write() before anything else sends the head (the status and headers are then
    final); later empty writes send nothing."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
        write = start_response("200 OK", [("x-a", "1")])
        write(b"")
        write(bytearray(b"ab"))
        write(b"")
        write(memoryview(b"cd"))
        return (b"",)

    served = serve(app, [body(b"")])
    assert [m["type"] for m in served.sent][:1] == ["http.response.start"]
    assert served.sent[0]["headers"] == [(b"x-a", b"1")]
    assert served.pieces == [(b"", True), (b"ab", True), (b"cd", True), (b"", False)]


def generator(*chunks: Any) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[Any]:
        start_response("200 OK", [])
        yield from chunks

    return app


def no_start_response_list(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return [b"body"]


def no_start_response_empty(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return []


def no_start_response_iterator(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    yield b"body"


def header_not_str(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("x-a", 1)])
    return []


@pytest.mark.parametrize(
    ("app", "error"),
    [
        (no_start_response_list, "returned without calling start_response"),
        (no_start_response_empty, "returned without calling start_response"),
        (no_start_response_iterator, "produced a body before calling start_response"),
        (header_not_str, "header names and values must be str"),
        (generator("text"), "must be bytes, not str"),
        (generator(b"", 3), "must be bytes, not int"),
    ],
    ids=["list", "empty", "iterator", "header", "str-piece", "int-piece"],
)
def test_a_response_the_app_gets_wrong_before_its_body_is_a_500(
    app: WSGIApp, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        served = serve(app, [body(b"")])
    assert served.status == 500
    assert served.pieces == [(served.body, False)]
    [record] = caplog.records
    assert record.getMessage() == "Exception in WSGI application"
    assert record.exc_info is not None and error in str(record.exc_info[1])


def test_a_str_as_the_last_piece_of_a_list_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[Any]:
        start_response("200 OK", [])
        return ["text"]

    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        assert serve(app, [body(b"")]).status == 500


def test_a_failure_of_close_is_logged_and_the_response_stands(caplog: pytest.LogCaptureFixture) -> None:
    class Result:
        def __iter__(self) -> Iterator[bytes]:
            yield b"whole"

        def close(self) -> None:
            raise OSError("close failed")

    def app(environ: Environ, start_response: StartResponse) -> Result:
        start_response("200 OK", [])
        return Result()

    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        served = serve(app, [body(b"")])
    assert (served.status, served.pieces) == (200, [(b"whole", True), (b"", False)])
    [record] = caplog.records
    assert record.getMessage() == "Exception in the close() of a WSGI response"


def test_a_failure_after_write_ends_the_asgi_call_with_it() -> None:
    """Once write() sent a piece, the response cannot become a 500: the exception ends the ASGI
    call (the server then cuts the connection)."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])(b"partial")
        raise ValueError("after the commit")

    with pytest.raises(ValueError, match="after the commit"):
        serve(app, [body(b"")])


def test_exc_info_replaces_the_head_until_the_body_starts() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("x-a", "1")])
        try:
            raise KeyError("lookup")
        except KeyError as exc:
            start_response("404 Not Found", [("x-b", "2")], (type(exc), exc, exc.__traceback__))
        return [b"missing"]

    served = serve(app, [body(b"")])
    assert (served.status, served.sent[0]["headers"], served.body) == (404, [(b"x-b", b"2")], b"missing")


def test_exc_info_after_the_body_started_raises_it_again() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"started"
        try:
            raise KeyError("late")
        except KeyError as exc:
            start_response("500 Internal Server Error", [], (type(exc), exc, exc.__traceback__))

    with pytest.raises(KeyError, match="late"):
        serve(app, [body(b"")])


def start_response_twice(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [])
    start_response("201 Created", [])
    return []


def status_not_str(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response(200, [])
    return []


def status_malformed(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("20x OK", [])
    return []


@pytest.mark.parametrize(
    ("app", "error"),
    [
        (start_response_twice, "called again without exc_info"),
        (status_not_str, "must be a str like '200 OK'"),
        (status_malformed, "must look like '200 OK'"),
    ],
    ids=["twice", "status-int", "status-malformed"],
)
def test_start_response_refuses_what_pep_3333_forbids(
    app: WSGIApp, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="wherry.error"):
        assert serve(app, [body(b"")]).status == 500
    [record] = caplog.records
    assert record.exc_info is not None and error in str(record.exc_info[1])


def test_an_iterable_that_fails_after_its_first_piece_ends_the_asgi_call() -> None:
    with pytest.raises(ZeroDivisionError):
        serve(failing_after_one, [body(b"")])


def failing_after_one(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
    start_response("200 OK", [])
    yield b"one"
    raise ZeroDivisionError


def test_a_receive_that_fails_raises_in_the_read_of_the_app() -> None:
    """What receive() raises on the loop is raised by wsgi.input's read in the thread."""
    failures: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            failures.append(str(exc))
        start_response("200 OK", [])
        return [b"answered"]

    adapter = WSGIAdapter(app, asyncio.get_running_loop, threads=1)
    sent: list[Message] = []
    incoming: list[Message] = [body(b"", more=True)]

    async def receive() -> Message:
        if incoming:
            return incoming.pop()
        raise OSError("receive failed")

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(adapter(http_scope(), receive, send))
    adapter._executor().shutdown(wait=True)
    assert failures == ["receive failed"]
    assert sent[-1] == {"type": "http.response.body", "body": b"answered", "more_body": False}


@pytest.mark.parametrize("where", ["app", "iterable"])
def test_a_client_gone_while_the_app_runs_sends_nothing_more(where: str) -> None:
    """ClientDisconnected out of the application or its iterable (a read after the client left)
    ends the request quietly: no 500, nothing logged, close() still called."""
    closed: list[bool] = []

    class Result:
        def __iter__(self) -> Iterator[bytes]:
            raise ClientDisconnected("gone")

        def close(self) -> None:
            closed.append(True)

    def app(environ: Environ, start_response: StartResponse) -> Result:
        start_response("200 OK", [])
        if where == "app":
            raise ClientDisconnected("gone")
        return Result()

    served = serve(app, [body(b"")])
    assert served.sent == []
    assert closed == ([] if where == "app" else [True])


def test_the_file_wrapper_reads_pieces_of_at_least_64_kib(tmp_path: Any) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"x" * 70000)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        result: Iterable[bytes] = environ["wsgi.file_wrapper"](path.open("rb"), 8192)
        return result

    served = serve(app, [body(b"")])
    assert [len(piece) for piece, _ in served.pieces] == [65536, 70000 - 65536, 0]


class Stop(BaseException):
    """Not an Exception: what a thread's KeyboardInterrupt or SystemExit would be."""


def test_a_base_exception_of_the_app_ends_the_asgi_call_and_its_thread() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise Stop

    with pytest.raises(Stop):
        serve(app, [body(b"")])


# ---------------------------------------------------------------- the scope types


def test_a_scope_type_wsgi_cannot_serve_is_refused() -> None:
    adapter = WSGIAdapter(no_start_response_empty, asyncio.get_running_loop)

    async def receive() -> Message:
        raise AssertionError("not received")

    async def send(message: Message) -> None:
        raise AssertionError("not sent")

    with pytest.raises(RuntimeError, match="cannot serve a 'webtransport' connection"):
        asyncio.run(adapter({"type": "webtransport"}, receive, send))


def test_lifespan_messages_other_than_startup_and_shutdown_are_ignored() -> None:
    adapter = WSGIAdapter(no_start_response_empty, asyncio.get_running_loop)
    incoming: list[Message] = [
        {"type": "lifespan.startup"},
        {"type": "lifespan.custom"},
        {"type": "lifespan.shutdown"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(adapter({"type": "lifespan"}, receive, send))
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert incoming == []


async def drive(adapter: WSGIAdapter, scope: dict[str, Any], incoming: list[Message]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await adapter(scope, receive, send)
    return sent


def test_lifespan_shutdown_releases_the_pool_and_a_later_request_starts_another() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [threading.current_thread().name.encode()]

    adapter = WSGIAdapter(app, asyncio.get_running_loop, threads=1)
    lifespan: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def main() -> list[bytes]:
        first = await drive(adapter, http_scope(), [body(b"")])
        await drive(adapter, {"type": "lifespan"}, lifespan)
        assert adapter._pool is None
        second = await drive(adapter, http_scope(), [body(b"")])
        return [first[-1]["body"], second[-1]["body"]]

    first, second = asyncio.run(main())
    adapter.close()
    assert first.startswith(b"wherry-wsgi") and second.startswith(b"wherry-wsgi")


# ---------------------------------------------------------------- the request ends under the app


def test_a_request_cancelled_while_the_app_waits_for_the_body_ends_its_reads() -> None:
    """The ASGI call is cancelled (the server closes the connection) while the application's
    thread waits for a body message: that read raises ClientDisconnected, so does every later
    one, and what the application returns afterwards is not sent."""
    reads: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        for _ in range(2):
            try:
                environ["wsgi.input"].read()
            except ClientDisconnected as exc:
                reads.append(str(exc))
        start_response("200 OK", [])
        return [b"unsent"]

    adapter = WSGIAdapter(app, asyncio.get_running_loop, threads=1)
    sent: list[Message] = []

    async def main() -> None:
        waiting = asyncio.Event()
        received: list[Message] = [{"type": "http.request", "body": b"", "more_body": True}]

        async def receive() -> Message:
            if received:
                return received.pop()
            waiting.set()
            await asyncio.Event().wait()  # the rest of the body never comes
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)

        task = asyncio.ensure_future(adapter(http_scope(), receive, send))
        await waiting.wait()  # the application's thread is waiting for the next body message
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    adapter._executor().shutdown(wait=True)
    assert reads == ["the request is over", "the request is over"]
    assert sent == []


def test_a_closed_event_loop_is_a_server_shutting_down() -> None:
    """A thread that asks a loop already closed (the server stopped between two of its calls)
    gets ClientDisconnected, as for a client gone."""
    loop = asyncio.new_event_loop()
    loop.close()

    async def receive() -> Message:
        raise AssertionError("not received")

    async def send(message: Message) -> None:
        raise AssertionError("not sent")

    exchange = _Exchange(loop, receive, send)
    with pytest.raises(ClientDisconnected, match="the server is shutting down"):
        exchange.call(_RECEIVE, None)


# ---------------------------------------------------------------- threads and the loop, in order


class HeldLoop:
    """The event loop as the adapter's thread reaches it, with the thread's first message held
    until the test lets it go: the test decides what the loop does in between."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.posting = asyncio.Event()  # the thread is about to post
        self.release = threading.Event()
        self.delivered = asyncio.Event()  # the loop has run what the thread posted

    def create_future(self) -> asyncio.Future[Any]:
        return self.loop.create_future()

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Any:
        self.loop.call_soon_threadsafe(self.posting.set)
        self.release.wait()
        handle = self.loop.call_soon_threadsafe(callback, *args)
        self.loop.call_soon_threadsafe(self.delivered.set)
        return handle


def test_a_response_finished_after_its_request_was_cancelled_is_dropped_quietly() -> None:
    """The application returns while the server cancels the request: what its thread posts then
    reaches a loop no longer waiting for it, and is dropped without an error."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"too late"]

    errors: list[dict[str, Any]] = []
    sent: list[Message] = []

    async def main() -> WSGIAdapter:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        held = HeldLoop(loop)
        adapter = WSGIAdapter(app, lambda: held, threads=1)

        async def receive() -> Message:
            return body(b"")

        async def send(message: Message) -> None:
            sent.append(message)

        try:
            task = asyncio.ensure_future(adapter(http_scope(), receive, send))
            await held.posting.wait()  # the application returned; its thread is posting the end
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            held.release.set()
        await held.delivered.wait()
        return adapter

    adapter = asyncio.run(main())
    adapter._executor().shutdown(wait=True)
    assert (sent, errors) == ([], [])


class CountingLock:
    """A lock that tells who has arrived at it before taking the real one."""

    def __init__(self, real: threading.Lock, arrivals: threading.Semaphore) -> None:
        self.real = real
        self.arrivals = arrivals

    def __enter__(self) -> None:
        self.arrivals.release()
        self.real.acquire()

    def __exit__(self, *exc: object) -> None:
        self.real.release()


def test_two_loops_asking_for_the_pool_at_once_share_one() -> None:
    """Two threads serving the same adapter find no pool at once: the first to take the lock
    starts it, the second finds it started."""
    adapter = WSGIAdapter(no_start_response_empty, asyncio.get_running_loop, threads=1)
    real = threading.Lock()
    arrivals = threading.Semaphore(0)
    adapter._pool_lock = CountingLock(real, arrivals)  # type: ignore[assignment]
    pools: list[Any] = []
    real.acquire()
    threads = [threading.Thread(target=lambda: pools.append(adapter._executor())) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for _ in threads:
            assert arrivals.acquire(timeout=10)  # both found no pool and wait at the lock
    finally:
        real.release()
    for thread in threads:
        thread.join()
    assert len(pools) == 2 and pools[0] is pools[1] is adapter._pool
    adapter.close()
