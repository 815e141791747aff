"""The asyncio runtime's application runners (wherry/backends/asyncio/runtime.py, rules 2-5),
driven from loop callbacks as the I/O path drives them, without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wherry.backends.asyncio.runtime import MAX_FREE_RUNNERS, AsyncioRuntime


async def quick(scope: Any, receive: Any, send: Any) -> None:
    scope["task"] = asyncio.current_task()


async def waiting(scope: Any, receive: Any, send: Any) -> None:
    first = asyncio.current_task()
    await scope["gate"].wait()
    scope["same"] = asyncio.current_task() is first


def run_in_callbacks(loop: asyncio.AbstractEventLoop, calls: list[Any]) -> None:
    """Make each call from a loop callback (no task current), as data_received does."""
    done = loop.create_future()

    def step() -> None:
        for call in calls:
            call()
        done.set_result(None)

    loop.call_soon(step)
    loop.run_until_complete(done)


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> Any:
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_apps_that_do_not_wait_share_one_task(loop: asyncio.AbstractEventLoop) -> None:
    """Rule 2: an app that answers without waiting runs in the free runner's task and leaves it
    free, so a thousand calls use one task."""
    runtime = AsyncioRuntime(loop)
    scopes: list[dict[str, Any]] = [{} for _ in range(1000)]
    ended: list[BaseException | None] = []
    run_in_callbacks(loop, [lambda s=s: runtime.run_app(quick, s, None, None, ended.append) for s in scopes])
    assert ended == [None] * 1000
    tasks = {id(scope["task"]) for scope in scopes}
    assert len(tasks) == 1 and all(scope["task"] is not None for scope in scopes)
    assert len(runtime.by_task) == 1
    loop.run_until_complete(asyncio.wait(runtime.close()))


def test_waiting_apps_get_a_task_each_and_the_pool_is_bounded(loop: asyncio.AbstractEventLoop) -> None:
    """Rule 2: apps waiting at once each keep their runner's task from first line to last; when
    they are done, at most MAX_FREE_RUNNERS runners stay."""
    runtime = AsyncioRuntime(loop)
    gate = asyncio.Event()
    count = MAX_FREE_RUNNERS * 3
    scopes: list[dict[str, Any]] = [{"gate": gate} for _ in range(count)]
    ended: list[BaseException | None] = []
    calls = [lambda s=s: runtime.run_app(waiting, s, None, None, ended.append) for s in scopes]
    run_in_callbacks(loop, calls)
    assert len(runtime.busy) == count and not ended
    loop.call_soon(gate.set)

    async def settle() -> None:
        while len(ended) < count:
            await asyncio.sleep(0)

    loop.run_until_complete(settle())
    assert ended == [None] * count
    assert all(scope["same"] for scope in scopes)
    assert not runtime.busy
    loop.run_until_complete(asyncio.sleep(0))
    assert len(runtime.free) == MAX_FREE_RUNNERS
    loop.run_until_complete(asyncio.wait(runtime.close()))
    assert not runtime.by_task


def test_cancelling_a_busy_runner_cancels_its_app(loop: asyncio.AbstractEventLoop) -> None:
    """The end of a graceful shutdown: the app waiting in a runner's task gets CancelledError and
    on_done is told."""
    runtime = AsyncioRuntime(loop)
    ended: list[BaseException | None] = []
    scope = {"gate": asyncio.Event()}
    run_in_callbacks(loop, [lambda: runtime.run_app(waiting, scope, None, None, ended.append)])
    (runner,) = runtime.busy
    runner.cancel()
    loop.run_until_complete(asyncio.wait(runtime.close(), timeout=5))
    assert len(ended) == 1 and isinstance(ended[0], asyncio.CancelledError)
    assert not runtime.by_task


async def takes_from_pool(scope: Any, receive: Any, send: Any) -> None:
    """An app that needs a pooled resource (a database connection): it waits for one in turn."""
    item = await scope["pool"].get()
    scope["got"].append((scope["name"], item))


def test_a_new_call_does_not_take_what_a_waiting_call_was_woken_for(loop: asyncio.AbstractEventLoop) -> None:
    """Rule 6: a resource freed and handed to a waiting app (its wake-up is due) is not taken by
    a call that starts in the same I/O callback; the newcomer waits its turn."""
    runtime = AsyncioRuntime(loop)
    pool: asyncio.Queue[str] = asyncio.Queue()
    got: list[tuple[str, str]] = []
    ended: list[BaseException | None] = []

    def start(name: str) -> None:
        runtime.run_app(takes_from_pool, {"pool": pool, "got": got, "name": name}, None, None, ended.append)

    run_in_callbacks(loop, [lambda: start("first")])
    assert len(runtime.busy) == 1  # "first" waits for the pool
    # One callback: a connection comes back to the pool (waking "first"), and a request arrives.
    run_in_callbacks(loop, [lambda: pool.put_nowait("conn-1"), lambda: start("second")])
    loop.run_until_complete(asyncio.sleep(0))
    assert got == [("first", "conn-1")]
    pool.put_nowait("conn-2")
    loop.run_until_complete(asyncio.sleep(0))
    assert got == [("first", "conn-1"), ("second", "conn-2")]
    assert ended == [None, None]
    loop.run_until_complete(asyncio.wait(runtime.close()))


def test_queued_calls_start_when_the_runtime_closes(loop: asyncio.AbstractEventLoop) -> None:
    """Rule 6 and shutdown: a call queued behind a waiting one is started by close(), so its
    task is among those the shutdown waits for and on_done is called for it."""
    runtime = AsyncioRuntime(loop)
    gate = asyncio.Event()
    ended: list[BaseException | None] = []
    scopes: list[dict[str, Any]] = [{"gate": gate}, {"gate": gate}]
    seen: list[tuple[int, int]] = []
    tasks: list[asyncio.Task[None]] = []

    def start_two_then_close() -> None:
        runtime.run_app(waiting, scopes[0], None, None, ended.append)  # starts now, and waits
        runtime.run_app(waiting, scopes[1], None, None, ended.append)  # queued behind the first
        seen.append((len(runtime.busy), len(runtime.queued)))
        tasks.extend(runtime.close())
        seen.append((len(runtime.busy), len(runtime.queued)))

    run_in_callbacks(loop, [start_two_then_close])
    assert seen == [(1, 1), (2, 0)] and len(tasks) == 2
    gate.set()
    loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    assert ended == [None, None] and scopes[1]["same"]
