"""The loop primitives of asyncio (and uvloop): the loop's own futures, and a task group whose
tasks are cancelled when its block ends. Code above the backends reaches them through
``wherry.backends.primitives``, whose rules hold here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from ..primitives import Primitives, Spawn


@asynccontextmanager
async def task_group() -> AsyncIterator[Spawn]:
    """``async with task_group() as spawn`` (``Primitives.task_group``)."""
    running: set[asyncio.Task[None]] = set()
    async with asyncio.TaskGroup() as group:

        def spawn(coro: Coroutine[Any, Any, None]) -> None:
            task = group.create_task(coro)
            running.add(task)
            task.add_done_callback(running.discard)

        yield spawn
        for task in list(running):
            task.cancel()  # a cancelled task ends the group's wait without failing it


def primitives(loop: asyncio.AbstractEventLoop) -> Primitives:
    return Primitives("asyncio", loop.create_future, task_group)
