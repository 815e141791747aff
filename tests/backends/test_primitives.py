"""``wherry.backends.primitives``: which library runs the caller (sniffio's answer), and the two
primitives code above the backends uses on either library, run on asyncio, uvloop and trio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import sniffio
import trio

from wherry.backends.primitives import new_future, primitives, running


def run_on(loop_name: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_name == "trio":
        return trio.run(main)
    factory = asyncio.new_event_loop
    if loop_name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def test_running_names_the_library_of_the_current_task(loop_name: str) -> None:
    """sniffio's contract: the library running the current task (uvloop is asyncio)."""

    async def main() -> str:
        return running()

    assert run_on(loop_name, main) == ("trio" if loop_name == "trio" else "asyncio")


def test_running_outside_a_loop_or_on_another_library_is_an_error() -> None:
    """Outside any loop, and under a library wherry does not serve on, the answer is a clear error."""
    with pytest.raises(RuntimeError, match="inside an asyncio or a trio event loop"):
        running()
    token = sniffio.current_async_library_cvar.set("curio")
    try:
        with pytest.raises(RuntimeError, match="asyncio or trio, not curio"):
            running()
    finally:
        sniffio.current_async_library_cvar.reset(token)


def test_task_group_cancels_the_tasks_left_at_its_end_and_waits_for_them(loop_name: str) -> None:
    """A spawned task runs beside the block (futures are awaited across tasks); one still running
    when the block ends is cancelled, and the block is left only once it has ended."""
    events: list[str] = []

    async def main() -> None:
        loop = primitives()
        ready, released, finished = loop.create_future(), new_future(), new_future()

        async def quick() -> None:
            await released
            events.append("quick done")
            finished.set_result(None)

        async def forever() -> None:
            try:
                ready.set_result(None)
                await loop.create_future()  # never resolved
            finally:
                events.append("forever ended")

        async with loop.task_group() as spawn:
            spawn(quick())
            spawn(forever())
            await ready
            released.set_result(None)
            await finished
        events.append("block left")

    run_on(loop_name, main)
    assert events == ["quick done", "forever ended", "block left"]
