"""The asyncio Runtime: the loop's own clock, timers and futures, and one Task per application call.

Rules of this module:

1. Every application call runs inside an ``asyncio.Task`` from its first line: apps and the
   libraries they use rely on ``asyncio.current_task()`` (``asyncio.timeout``, anyio cancel scopes
   and task groups, which Starlette's ``request.is_disconnected`` and FastAPI's thread pool use). A
   coroutine must also stay in the same task from start to end, or anyio refuses to exit its
   scopes.
2. On Python 3.12+ the task starts eagerly: a request whose app never waits on anything pending (the
   common case for small responses) runs to completion inside ``data_received``, with no scheduling
   and no extra loop iteration. On 3.11 the task is scheduled as usual (one loop iteration later).
3. ``on_done`` is called exactly once, with the exception the app ended with or None.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from ...asgi.http import ASGIApp, Scope


async def _call_app(
    app: ASGIApp,
    scope: Scope,
    receive: Any,
    send: Any,
    on_done: Callable[[BaseException | None], None],
) -> None:
    try:
        await app(scope, receive, send)
    except BaseException as exc:
        on_done(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        on_done(None)


class AsyncioRuntime:
    """Runtime contract over an asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time
        self.call_at = loop.call_at
        self.create_future = loop.create_future
        self.tasks: set[asyncio.Task[Any]] = set()  # application calls still running
        self.background: set[asyncio.Task[Any]] = set()  # spawned work (the lifespan driver)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task of its own; it is not one of the app calls cut at shutdown."""
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def run_app(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Any,
        send: Any,
        on_done: Callable[[BaseException | None], None],
    ) -> None:
        coro = _call_app(app, scope, receive, send, on_done)
        if sys.version_info >= (3, 12):
            task = asyncio.Task(coro, loop=self.loop, eager_start=True)
            if task.done():
                return
        else:
            task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
