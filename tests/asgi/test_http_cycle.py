"""The ASGI HTTP request/response cycle (ASGI www spec 2.5), over real sockets.

What the application sees through ``receive()`` and ``send()``, and what the client sees when the
application misbehaves: errors before and after the response started, early returns, request bodies
in pieces, disconnects, ``Expect: 100-continue``, ASGI 2 applications and the lifespan state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import select
import socket
import threading
import types
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests import apps
from tests.conftest import RunningServer, read_response

Serve = Callable[..., RunningServer]

WAIT = 5.0  # upper bound on waiting for an event that must happen


def get(path: str = "/", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def read_until_close(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Everything the server sends until it closes; fails unless it closes within ``timeout``."""
    sock.settimeout(timeout)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def nothing_arrives(sock: socket.socket, within: float = 0.2) -> bool:
    """True when no byte is readable on ``sock`` within ``within`` seconds."""
    readable, _, _ = select.select([sock], [], [], within)
    return not readable


async def respond(send: Any, status: int = 200, body: bytes = b"ok", headers: Any = None) -> None:
    head = [(b"content-length", b"%d" % len(body))] if headers is None else headers
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- how the application ends


async def raises_before_start(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await apps.read_body(receive)
    if scope["path"] == "/boom":
        raise RuntimeError("boom before start")
    await respond(send)


def test_exception_before_response_start_is_500_and_keeps_the_connection(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """An app error before http.response.start is a 500; the connection carries the next request."""
    server = serve(raises_before_start)
    with server.connect() as sock:
        sock.sendall(get("/boom"))
        status, headers, body = read_response(sock)
        assert status == 500
        assert body == b"Internal Server Error\n"
        assert headers.get("connection") != "close"
        sock.sendall(get("/"))
        assert read_response(sock)[::2] == (200, b"ok")
    errors = [r for r in caplog.records if r.name == "wherry.error" and r.exc_info]
    assert errors, "the traceback goes to the wherry.error logger"
    assert "boom before start" in str(errors[0].exc_info[1])  # type: ignore[index]


async def raises_after_start(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("boom after start")


def test_exception_after_start_before_any_body_is_still_a_500(serve: Serve) -> None:
    """Nothing is on the wire until the first body message, so a 500 can still replace it."""
    server = serve(raises_after_start)
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 500


async def raises_mid_body(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("boom mid body")


def test_exception_after_the_response_began_cuts_the_connection(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """Once response bytes are out, an app error closes the connection: the client sees a
    truncated response (no last chunk), never a well-formed one."""
    server = serve(raises_mid_body)
    with server.connect() as sock:
        sock.sendall(get() + get())
        data = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")
    assert data.count(b"HTTP/1.1") == 1, "the pipelined request is not answered"
    assert any(r.name == "wherry.error" and r.exc_info for r in caplog.records)


async def returns_silently(scope: Any, receive: Any, send: Any) -> None:
    return None


async def returns_after_start(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})


@pytest.mark.parametrize("app", [returns_silently, returns_after_start])
def test_app_returning_without_a_response_is_500(
    serve: Serve, caplog: pytest.LogCaptureFixture, app: Any
) -> None:
    """An app that returns before sending a response body gets a 500 sent for it; it is logged."""
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[0] == 500
    assert any(r.name == "wherry.error" and r.levelno == logging.ERROR for r in caplog.records)


async def bad_messages(scope: Any, receive: Any, send: Any) -> None:
    kind = scope["path"]
    if kind == "/body-first":
        await send({"type": "http.response.body", "body": b"x"})
    elif kind == "/status-str":
        await send({"type": "http.response.start", "status": "200", "headers": []})
    elif kind == "/body-str":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": "text"})
    elif kind == "/unknown-type":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.trailers", "headers": []})


@pytest.mark.parametrize("path", ["/body-first", "/status-str", "/body-str", "/unknown-type"])
def test_messages_out_of_order_or_of_the_wrong_type_are_app_errors(serve: Serve, path: str) -> None:
    """send() checks message order and types (www spec 2.5 'Response Start'/'Response Body')."""
    server = serve(bad_messages)
    with server.connect() as sock:
        sock.sendall(get(path))
        assert read_response(sock)[0] == 500


def test_send_after_the_response_is_complete_raises(serve: Serve) -> None:
    """A body message after the last one (more_body false) raises in the app; the client is
    unaffected."""
    raised: queue.Queue[BaseException] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await respond(send)
        try:
            await send({"type": "http.response.body", "body": b"more"})
        except RuntimeError as exc:
            raised.put(exc)

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[::2] == (200, b"ok")
        assert isinstance(raised.get(timeout=WAIT), RuntimeError)
        sock.sendall(get())
        assert read_response(sock)[::2] == (200, b"ok")
        assert nothing_arrives(sock, 0.05), "no stray bytes after the response"


@pytest.mark.asyncio_only("asyncio.current_task()/asyncio.timeout(); on trio: tests/e2e/test_app_task.py")
def test_app_runs_in_one_asyncio_task_from_start_to_end(serve: Serve) -> None:
    """asyncio.current_task() is set from the app's first line and stays the same task after it
    suspends: asyncio.timeout() and anyio cancel scopes (Starlette, FastAPI) depend on it."""
    seen: queue.Queue[tuple[bool, bool]] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        first = asyncio.current_task()
        async with asyncio.timeout(WAIT):
            await receive()
            await asyncio.sleep(0)
            await respond(send)
        seen.put((first is not None, first is asyncio.current_task()))

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        for _ in range(2):
            sock.sendall(get())
            assert read_response(sock)[::2] == (200, b"ok")
            assert seen.get(timeout=WAIT) == (True, True)


# ---------------------------------------------------------------- receive()


def recorder() -> tuple[queue.Queue[Any], Callable[..., Any]]:
    """An app that reports every message receive() returns; it answers after the last one."""
    seen: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            seen.put(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        if message["type"] == "http.request":
            await respond(send, body=b"done")
            seen.put(await receive())  # after the response is complete

    return seen, app


def test_chunked_upload_arrives_as_several_http_request_messages(serve: Serve) -> None:
    """Each piece of a chunked body is an http.request with more_body until the last (www spec)."""
    seen, app = recorder()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        pieces = [b"first", b"second", b"third"]
        for piece in pieces:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            message = seen.get(timeout=WAIT)
            assert message == {"type": "http.request", "body": piece, "more_body": True}
        sock.sendall(b"0\r\n\r\n")
        assert seen.get(timeout=WAIT) == {"type": "http.request", "body": b"", "more_body": False}
        assert read_response(sock)[::2] == (200, b"done")
        assert seen.get(timeout=WAIT) == {"type": "http.disconnect"}


def test_request_without_body_is_one_empty_message(serve: Serve) -> None:
    """A request with no body is one http.request with body b'' and more_body False."""
    seen, app = recorder()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[::2] == (200, b"done")
    assert seen.get(timeout=WAIT) == {"type": "http.request", "body": b"", "more_body": False}


async def mutates_what_it_is_given(scope: Any, receive: Any, send: Any) -> None:
    """Reports the scope's asgi dict and the request message as it gets them, then scribbles on
    both: no later request may see the changes."""
    if scope["type"] != "http":
        return
    message = await receive()
    body = json.dumps([scope["asgi"], scope["method"], message["body"].decode(), message["more_body"]])
    scope["asgi"]["version"] = "scribbled"
    scope["method"] = "SCRIBBLED"
    message["body"] = b"scribbled"
    message["more_body"] = True
    await respond(send, body=body.encode())


def test_scope_and_messages_are_new_for_each_request(serve: Serve) -> None:
    """Each request gets its own scope (with its own asgi dict) and its own messages, however the
    app changed the previous ones."""
    server = serve(mutates_what_it_is_given)
    with server.connect() as sock:
        for _ in range(3):
            sock.sendall(get())
            status, _headers, body = read_response(sock)
            assert status == 200
            assert json.loads(body) == [{"version": "3.0", "spec_version": "2.5"}, "GET", "", False]
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        status, _headers, body = read_response(sock)
        assert json.loads(body)[2:] == ["abc", False]


class Message(dict[str, Any]):
    pass


async def answers_with_other_mappings(scope: Any, receive: Any, send: Any) -> None:
    """An app whose messages are mappings but not dicts (a read-only proxy, a dict subclass)."""
    if scope["type"] != "http":
        return
    await receive()
    start = {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]}
    await send(types.MappingProxyType(start))
    await send(Message(type="http.response.body", body=b"ok"))


def test_messages_may_be_any_mapping(serve: Serve) -> None:
    server = serve(answers_with_other_mappings)
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[::2] == (201, b"ok")


def test_receive_after_the_response_is_complete_returns_disconnect(serve: Serve) -> None:
    """receive() after the response was sent returns http.disconnect (www spec 2.5 'Disconnect')."""
    seen, app = recorder()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        assert read_response(sock)[::2] == (200, b"done")
        assert seen.get(timeout=WAIT)["body"] == b"abc"
        assert seen.get(timeout=WAIT) == {"type": "http.disconnect"}


def test_client_gone_mid_request_gives_disconnect_and_send_raises_oserror(serve: Serve) -> None:
    """When the client leaves mid-body, receive() returns http.disconnect and send() raises OSError
    (www spec 2.4)."""
    seen: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.put(await receive())
        seen.put(await receive())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"late"})
        except OSError as exc:
            seen.put(exc)

    server = serve(app, lifespan="off")
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf.")
    assert seen.get(timeout=WAIT) == {"type": "http.request", "body": b"half.", "more_body": True}
    sock.close()
    assert seen.get(timeout=WAIT) == {"type": "http.disconnect"}
    assert isinstance(seen.get(timeout=WAIT), OSError)


def test_client_closing_after_its_request_is_seen_as_a_disconnect(serve: Serve) -> None:
    """A client that closes after sending its whole request: an app waiting on receive() (a long
    poll) gets http.disconnect, and its next writes fail with OSError."""
    seen: queue.Queue[Any] = queue.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.put(await receive())
        seen.put(await receive())  # parked until the client goes away
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            # The write that meets the peer's reset is the last one that passes.
            for _ in range(200):
                await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
                await anyio.sleep(0.01)
        except OSError as exc:
            seen.put(exc)
        else:
            seen.put("send() never failed")

    server = serve(app, lifespan="off")
    sock = server.connect()
    sock.sendall(get())
    assert seen.get(timeout=WAIT)["type"] == "http.request"
    sock.close()
    assert seen.get(timeout=WAIT) == {"type": "http.disconnect"}
    assert isinstance(seen.get(timeout=WAIT), OSError)


def test_half_closed_client_still_gets_its_response(serve: Serve) -> None:
    """A client that shuts down only its sending side after the request still reads the answer
    (RFC 9112 §9.6), and the connection is closed after it."""
    server = serve(apps.echo, timeout_keep_alive=30)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        sock.shutdown(socket.SHUT_WR)
        data = read_until_close(sock)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"5\r\nhello\r\n0\r\n\r\n")


# ---------------------------------------------------------------- Expect: 100-continue


def test_100_continue_is_sent_when_the_app_first_calls_receive(serve: Serve) -> None:
    """The interim 100 goes out only once the app asks for the body (RFC 9110 §10.1.1; www spec
    leaves it to the server), and the client then sends the body."""
    started = threading.Event()
    gate = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await anyio.to_thread.run_sync(gate.wait, WAIT, abandon_on_cancel=True)
        body = await apps.read_body(receive)
        await respond(send, body=body)

    server = serve(app)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert started.wait(WAIT)
        assert nothing_arrives(sock), "no 100 before the app reads"
        gate.set()
        status, _, rest = read_response(sock)
        assert (status, rest) == (100, b"")
        sock.sendall(b"hello")
        assert read_response(sock)[::2] == (200, b"hello")


async def answers_without_reading(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await respond(send)


def test_no_100_continue_when_the_app_answers_without_reading(serve: Serve) -> None:
    """An app that answers without reading the body sends no 100: the client never has to upload."""
    server = serve(answers_without_reading)
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        status, _, body = read_response(sock)
        assert (status, body) == (200, b"ok")
        # The client may still send the body: the connection stays in step.
        sock.sendall(b"hello" + get())
        assert read_response(sock)[::2] == (200, b"ok")


# ---------------------------------------------------------------- ASGI 2 and the interface option


async def _asgi3_inner(scope: Any, receive: Any, send: Any) -> None:
    await respond(send, body=b"asgi3")


def asgi3_behind_a_plain_function(scope: Any, receive: Any, send: Any) -> Any:
    """An ASGI 3 app that is not an ``async def`` (a wrapper returning the coroutine)."""
    return _asgi3_inner(scope, receive, send)


async def respond_with(body: bytes, scope: Any, receive: Any, send: Any) -> None:
    """An ASGI 3 app once its first argument is bound (with functools.partial)."""
    await respond(send, body=body)


class ASGI2Class:
    """ASGI 2 as a class: the class is called with the scope, the instance with receive/send."""

    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "http":
            await respond(send, body=b"asgi2 class")


@pytest.mark.parametrize(
    ("app", "interface", "expected"),
    [
        (apps.asgi2_app, "auto", b"asgi2"),
        (ASGI2Class, "auto", b"asgi2 class"),
        (apps.asgi2_app, "asgi2", b"asgi2"),
        (asgi3_behind_a_plain_function, "asgi3", b"asgi3"),
        (apps.hello, "auto", b"Hello, world!"),
        (functools.partial(respond_with, b"partial"), "auto", b"partial"),
    ],
)
def test_asgi2_apps_are_detected_or_forced(serve: Serve, app: Any, interface: str, expected: bytes) -> None:
    """interface='auto' adapts ASGI 2 (double-callable) apps; 'asgi2'/'asgi3' force the choice."""
    server = serve(app, interface=interface, lifespan="off")
    with server.connect() as sock:
        sock.sendall(get())
        assert read_response(sock)[::2] == (200, expected)


# ---------------------------------------------------------------- lifespan state in the scope


class StatefulApp:
    """Startup puts a value in the state; each request reports and then mutates its own copy."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "connected"
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        body = json.dumps({"keys": sorted(state), "shared": list(state["shared"])}).encode()
        state["db"] = "changed by a request"
        state["request_only"] = True
        state["shared"].append(1)  # a shallow copy: objects inside are the lifespan's own
        await respond(send, body=body)


def test_each_request_gets_a_shallow_copy_of_the_lifespan_state(serve: Serve) -> None:
    """scope['state'] is a shallow copy, per request, of the lifespan state (lifespan spec)."""
    server = serve(StatefulApp())
    with server.connect() as sock:
        for expected_shared in ([], [1]):
            sock.sendall(get())
            status, _, body = read_response(sock)
            assert status == 200
            assert json.loads(body) == {"keys": ["db", "shared"], "shared": expected_shared}
