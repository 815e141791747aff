"""``Lifespan`` driven without a server: the messages an app may send and when, and how its failures
are reported. An ``asyncio.run`` runs startup and shutdown with the app as a task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from wherry.asgi.http import Message
from wherry.asgi.lifespan import Lifespan, LifespanFailure

Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Any, Receive, Send], Awaitable[None]]


async def lifespan(app: App, mode: str = "auto") -> tuple[Lifespan, BaseException | None]:
    """Run startup then shutdown (when startup succeeded); what startup raised, if it did."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None]) -> object:
        tasks.append(loop.create_task(coro))
        return tasks[-1]

    runner = Lifespan(app, mode, loop.create_future, spawn)
    try:
        await runner.startup()
    except LifespanFailure as failure:
        await asyncio.gather(*tasks, return_exceptions=True)
        return runner, failure
    await runner.shutdown()
    await asyncio.gather(*tasks, return_exceptions=True)
    return runner, None


def test_startup_complete_twice_is_the_apps_error() -> None:
    """A second lifespan.startup.complete raises RuntimeError in the app."""
    seen: list[str] = []

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        try:
            await send({"type": "lifespan.startup.complete"})
        except RuntimeError as exc:
            seen.append(str(exc))
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    runner, failure = asyncio.run(lifespan(app))
    assert failure is None
    assert seen == ["unexpected 'lifespan.startup.complete'"]
    assert runner.app_error is None


@pytest.mark.parametrize("kind", ["lifespan.shutdown.complete", "lifespan.shutdown.failed"])
def test_a_shutdown_answer_before_startup_completed_is_the_apps_error(kind: str) -> None:
    """lifespan.shutdown.* before lifespan.startup.complete raises RuntimeError in the app; with
    --lifespan on, the server then does not start."""
    seen: list[str] = []

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        await receive()
        try:
            await send({"type": kind})
        except RuntimeError as exc:
            seen.append(str(exc))
            raise

    with pytest.raises(LifespanFailure, match="application startup failed: RuntimeError"):
        raise_failure(asyncio.run(lifespan(app, "on"))[1])
    assert seen == [f"unexpected {kind!r}"]


def raise_failure(failure: BaseException | None) -> None:
    if failure is not None:
        raise failure


def test_an_unknown_lifespan_message_is_the_apps_error() -> None:
    """A message type outside the lifespan spec raises RuntimeError in the app."""
    seen: list[str] = []

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        await receive()
        try:
            await send({"type": "lifespan.ready"})
        except RuntimeError as exc:
            seen.append(str(exc))
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    _runner, failure = asyncio.run(lifespan(app))
    assert failure is None
    assert seen == ["unexpected lifespan message 'lifespan.ready'"]


def test_an_app_that_reports_its_failure_and_raises_is_not_logged_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app that sends lifespan.startup.failed and then raises: the operator sees its own
    message, and the exception is not logged over it."""

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("after the failure")

    with caplog.at_level(logging.INFO, logger="wherry.error"):
        runner, failure = asyncio.run(lifespan(app))
    assert str(failure) == "no database"
    assert isinstance(runner.app_error, RuntimeError)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_failed_shutdown_is_logged_with_the_apps_message(caplog: pytest.LogCaptureFixture) -> None:
    """lifespan.shutdown.failed is logged as an error with the app's own message."""

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})

    with caplog.at_level(logging.INFO, logger="wherry.error"):
        _runner, failure = asyncio.run(lifespan(app))
    assert failure is None
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == ["Application shutdown failed: flush failed"]


def test_state_is_shared_with_the_app_and_scope_says_the_spec_version() -> None:
    """The lifespan scope carries the spec version and the state dict the requests' scopes copy."""
    scopes: list[Any] = []

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        scope["state"]["pool"] = "ready"
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    runner, failure = asyncio.run(lifespan(app))
    assert failure is None
    assert scopes[0]["asgi"] == {"version": "3.0", "spec_version": "2.0"}
    assert runner.state == {"pool": "ready"}


def test_a_shutdown_after_a_startup_given_up_on_does_not_say_complete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server gave up waiting for the startup (a signal during a startup that hangs) but the
    app is still in its startup: the shutdown is delivered to it, and once it returns no
    "Application shutdown complete." is logged, since it never started."""
    received: list[str] = []

    async def main() -> Lifespan:
        loop = asyncio.get_running_loop()
        startup_read = asyncio.Event()

        async def app(scope: Any, receive: Receive, send: Send) -> None:
            received.append((await receive())["type"])
            startup_read.set()
            received.append((await receive())["type"])  # the startup never completes

        tasks: list[asyncio.Task[None]] = []

        def spawn(coro: Coroutine[Any, Any, None]) -> object:
            tasks.append(loop.create_task(coro))
            return tasks[-1]

        runner = Lifespan(app, "on", loop.create_future, spawn)
        startup = loop.create_task(runner.startup())
        await startup_read.wait()
        startup.cancel()
        with pytest.raises(asyncio.CancelledError):
            await startup
        await runner.shutdown()
        await asyncio.gather(*tasks)
        return runner

    with caplog.at_level(logging.INFO, logger="wherry.error"):
        runner = asyncio.run(main())
    assert received == ["lifespan.startup", "lifespan.shutdown"]
    assert runner.app_error is None
    messages = [r.getMessage() for r in caplog.records]
    assert "Waiting for application shutdown." in messages
    assert "Application shutdown complete." not in messages
