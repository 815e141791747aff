"""The asyncio Runtime: the loop's own clock, timers and futures, and app calls without a Task.

``run_app`` steps the application's coroutine directly. A request whose app never waits on anything
pending (the common case for small responses) runs to completion inside ``data_received`` with no Task, no
scheduling and no extra loop iteration. The moment the coroutine yields a future, the rest of it is handed
to a Task in the same contextvars context, which resumes it exactly where it stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ...asgi.http import ASGIApp


class _Resume:
    """An awaitable that carries on a coroutine that has already been stepped once."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        value = self.pending
        self.pending = None
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation and throws go into the app's coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(
    coro: Coroutine[Any, Any, Any], pending: Any, on_done: Callable[[BaseException | None], None]
) -> None:
    try:
        await _Resume(coro, pending)
    except BaseException as exc:
        on_done(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        on_done(None)


async def _as_coroutine(awaitable: Any) -> Any:
    return await awaitable


class AsyncioRuntime:
    """Runtime contract over an asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time
        self.call_at = loop.call_at
        self.create_future = loop.create_future
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def run_app(
        self,
        app: ASGIApp,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        on_done: Callable[[BaseException | None], None],
    ) -> None:
        context = contextvars.copy_context()
        try:
            coro = context.run(app, scope, receive, send)
            if not hasattr(coro, "send"):
                coro = _as_coroutine(coro)
            pending = context.run(coro.send, None)
        except StopIteration:
            on_done(None)
            return
        except Exception as exc:
            on_done(exc)
            return
        task = self.loop.create_task(_finish(coro, pending, on_done), context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
