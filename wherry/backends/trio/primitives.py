"""The loop primitives of trio: a small future, a task group over a nursery, and what a WSGI app's
pool threads reach the trio thread through.

``TrioFuture`` is the whole of what the ASGI cycle and the drivers wait on (``done``,
``set_result``, ``await``): one task waits on it, any code in the trio thread resolves it.
Awaiting a future that is already done does not yield (as on asyncio).

Code above the backends reaches these through ``wherry.backends.primitives``, whose rules hold
here: this module is imported once trio runs, and loads nothing of the trio backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..primitives import Primitives, Spawn


class TrioFuture:
    """A one-shot event carrying no value, awaited by at most one task at a time."""

    __slots__ = ("_done", "_task")

    def __init__(self) -> None:
        self._done = False
        self._task: trio.lowlevel.Task | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, result: None) -> None:
        if self._done:
            raise RuntimeError("the future is already done")
        self._done = True
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)

    def result(self) -> None:
        return None

    def _abort(self, _raise_cancel: Any) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def __await__(self) -> Generator[Any, Any, None]:
        if not self._done:
            if self._task is not None:
                raise RuntimeError("a future is awaited by one task at a time")
            self._task = trio.lowlevel.current_task()
            yield from trio.lowlevel.wait_task_rescheduled(self._abort).__await__()


class TrioLoop:
    """What a WSGI app's pool threads use to reach the trio thread (``wherry.asgi.wsgi``)."""

    __slots__ = ("_token",)

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()

    def create_future(self) -> TrioFuture:
        return TrioFuture()

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> None:
        self._token.run_sync_soon(callback, *args)  # RunFinishedError (a RuntimeError) once over


async def _run(coro: Coroutine[Any, Any, None]) -> None:
    await coro


@asynccontextmanager
async def task_group() -> AsyncIterator[Spawn]:
    """``async with task_group() as spawn`` (``Primitives.task_group``), over a nursery."""
    async with trio.open_nursery() as nursery:

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            nursery.start_soon(_run, coro)

        yield spawn
        nursery.cancel_scope.cancel()  # the tasks still running end with the block


PRIMITIVES = Primitives("trio", TrioFuture, task_group)
