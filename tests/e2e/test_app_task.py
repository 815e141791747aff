"""The task an application runs in (docs/discussion/performance.md, "one task per connection").

On asyncio an app starts inside the I/O callback with its connection's task current and goes on in
that task when it waits; on trio each app call is a task of its connection's nursery. Either way:
the current task is one task from the app's first line to its last, cancelling it cancels the app,
anyio cancel scopes (and ``asyncio.timeout`` on asyncio) work across a wait, and each request has a
context (``contextvars``) of its own. The tests of asyncio's own task API are skipped on trio.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import RunningServer, exchange

Serve = Callable[..., RunningServer]

WAIT = 5.0


async def respond(send: Any, body: bytes, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def drain_request(receive: Any) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


def test_current_task_is_one_task_across_a_wait(serve: Serve) -> None:
    """The current task (asyncio.current_task(), trio.lowlevel.current_task(), as anyio reports
    it) never changes between the app's first and last line."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        first = anyio.get_current_task().id
        await anyio.sleep(0.001)
        second = anyio.get_current_task().id
        await drain_request(receive)
        body = json.dumps({"task": first is not None, "same": first == second}).encode()
        await respond(send, body)

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for _ in range(3):  # the later ones on the same connection, in the same runner
            assert client.get("/").json() == {"task": True, "same": True}


@pytest.mark.asyncio_only("asyncio.timeout is asyncio's; the anyio test below covers trio")
def test_asyncio_timeout_cancels_a_wait(serve: Serve) -> None:
    """asyncio.timeout entered before the first wait cancels that wait (it cancels current_task())."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await drain_request(receive)
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()
        except TimeoutError:
            await respond(send, b"timed out", 504)
            return
        await respond(send, b"not reached")

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for _ in range(2):
            response = client.get("/")
            assert (response.status_code, response.content) == (504, b"timed out")


def test_anyio_cancel_scope_and_task_group_span_a_wait(serve: Serve) -> None:
    """An anyio cancel scope entered before a wait is left in the same task after it; a task group
    started in the app runs its children (the Starlette/FastAPI machinery)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await drain_request(receive)
        results: list[str] = []
        with anyio.move_on_after(0.05) as moved:
            await anyio.sleep(10)
        async with anyio.create_task_group() as group:

            async def child() -> None:
                await anyio.sleep(0.001)
                results.append("child")

            group.start_soon(child)
        body = json.dumps({"cancelled": moved.cancelled_caught, "results": results}).encode()
        await respond(send, body)

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/").json() == {"cancelled": True, "results": ["child"]}


def test_each_request_has_its_own_context(serve: Serve) -> None:
    """A context variable set by one request is not seen by the next on the same connection, whether
    the app waited or not."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen = var.get()
        var.set(scope["path"])
        if scope["query_string"] == b"wait":
            await anyio.sleep(0.001)
        await drain_request(receive)
        await respond(send, json.dumps({"seen": seen, "now": var.get()}).encode())

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        for path in ("/a?wait", "/b", "/c?wait", "/d"):
            assert client.get(path).json() == {"seen": "unset", "now": path.partition("?")[0]}


@pytest.mark.asyncio_only("Task.cancel()/uncancel() is asyncio's task API; trio cancels through scopes")
def test_an_app_that_cancels_itself_gets_the_cancellation(serve: Serve) -> None:
    """current_task().cancel() in an app is delivered at its next wait, like in any task; the
    connection's next request is not affected."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await drain_request(receive)
        if scope["path"] == "/cancel":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                task.uncancel()
                await respond(send, b"cancelled")
                return
        await respond(send, b"plain")

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/cancel").content == b"cancelled"
        assert client.get("/after").content == b"plain"
        assert client.get("/cancel").content == b"cancelled"


@pytest.mark.asyncio_only("trio.Cancelled cannot be raised by an app; asyncio.CancelledError can")
def test_an_app_raising_cancelled_error_gets_a_500(serve: Serve) -> None:
    """An app that raises CancelledError without being cancelled failed: 500, the server goes on."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await drain_request(receive)
        if scope["path"] == "/later":
            await asyncio.sleep(0.001)
        if scope["path"] != "/ok":
            raise asyncio.CancelledError
        await respond(send, b"ok")

    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/now").status_code == 500
        assert client.get("/later").status_code == 500
        assert client.get("/ok").content == b"ok"


@pytest.mark.asyncio_only("the app returns an asyncio future (asyncio.ensure_future)")
def test_an_app_returning_a_future_is_awaited(serve: Serve) -> None:
    """An ASGI callable may return any awaitable, not only a coroutine."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await drain_request(receive)
        await respond(send, b"from a future")

    def app(scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return asyncio.sleep(0)
        return asyncio.ensure_future(inner(scope, receive, send))

    server = serve(app, interface="asgi3")
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert client.get("/").content == b"from a future"


def test_shutdown_cancels_a_waiting_app_in_its_task(serve: Serve) -> None:
    """At the end of the graceful period the app waiting in its connection's task is cancelled."""
    cancelled = threading.Event()
    entered = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        entered.set()
        try:
            await anyio.Event().wait()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    server = serve(app, timeout_graceful_shutdown=0.1)
    sock = server.connect()
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert entered.wait(WAIT)
        server.stop()
    assert cancelled.wait(WAIT)


def test_pipelined_requests_after_a_waiting_app_run_in_order(serve: Serve) -> None:
    """The app after one that waited starts once it is done, in the same task (RFC 9112 §9.3.2)."""
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        order.append("start " + scope["path"])
        if scope["path"] == "/slow":
            await anyio.sleep(0.01)
        await drain_request(receive)
        order.append("end " + scope["path"])
        await respond(send, scope["path"].encode())

    server = serve(app)
    data = exchange(
        server,
        b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert data.index(b"/slow") < data.index(b"/fast")
    assert order == ["start /slow", "end /slow", "start /fast", "end /fast"]
