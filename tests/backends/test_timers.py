"""The timer heap behind ``Runtime.call_at`` on both backends: order, cancellation, errors,
compaction; and the asyncio runtime's single loop wake-up over it."""

from __future__ import annotations

import asyncio
from typing import Any

from wherry.backends.asyncio.runtime import AsyncioRuntime
from wherry.backends.timers import TimerHeap


def test_due_timers_run_in_deadline_order_once() -> None:
    heap = TimerHeap()
    ran: list[str] = []
    for when, name in ((3.0, "c"), (1.0, "a"), (2.0, "b"), (1.0, "a2"), (9.0, "late")):
        heap.push(when, lambda name=name: ran.append(name))  # type: ignore[misc]
    heap.run_due(3.0, lambda context: None)
    assert ran == ["a", "a2", "b", "c"]  # equal deadlines keep the order they were set in
    heap.run_due(3.0, lambda context: None)
    assert ran == ["a", "a2", "b", "c"] and len(heap) == 1 and heap.next_when() == 9.0


def test_cancelled_timers_never_run_and_are_counted() -> None:
    heap = TimerHeap()
    ran: list[int] = []
    timers = [heap.push(float(i), lambda i=i: ran.append(i)) for i in range(4)]  # type: ignore[misc]
    timers[1].cancel()
    timers[1].cancel()  # twice counts once
    assert heap.cancelled == 1
    heap.run_due(10.0, lambda context: None)
    assert ran == [0, 2, 3] and heap.cancelled == 0 and len(heap) == 0
    timers[0].cancel()  # after it ran: nothing to count
    assert heap.cancelled == 0


def test_a_callback_can_cancel_a_timer_due_in_the_same_batch() -> None:
    heap = TimerHeap()
    ran: list[str] = []
    second = heap.push(2.0, lambda: ran.append("second"))
    heap.push(1.0, second.cancel)
    heap.run_due(5.0, lambda context: None)
    assert ran == [] and heap.cancelled == 0


def test_an_exception_is_reported_and_the_others_still_run() -> None:
    heap = TimerHeap()
    reports: list[dict[str, Any]] = []
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    heap.push(1.0, boom)
    heap.push(2.0, lambda: ran.append(2))
    heap.run_due(5.0, reports.append)
    assert ran == [2]
    assert [type(r["exception"]) for r in reports] == [RuntimeError]


def test_a_heap_mostly_cancelled_is_compacted() -> None:
    """Deadlines moved again and again (a connection re-arming) do not pile up: once cancelled
    timers are the majority of a large heap, they are dropped."""
    heap = TimerHeap()
    keep = [heap.push(1000.0 + i, lambda: None) for i in range(200)]
    for i in range(400):
        heap.push(2000.0 + i, lambda: None).cancel()
    assert len(heap) == 600
    heap.run_due(0.0, lambda context: None)
    assert len(heap) == 200 and heap.cancelled == 0
    assert all(not timer.cancelled for timer in keep)


def test_the_asyncio_runtime_wakes_once_for_the_earliest_timer() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        runtime = AsyncioRuntime(loop)
        ran: list[str] = []
        done = loop.create_future()
        now = runtime.time()
        runtime.call_at(now + 0.05, lambda: ran.append("b"))
        later = runtime.call_at(now + 0.03, lambda: ran.append("cancelled"))
        runtime.call_at(now + 0.02, lambda: ran.append("a"))
        runtime.call_at(now + 0.08, lambda: done.set_result(None))
        later.cancel()

        def rearm() -> None:  # a callback setting a timer already due runs on the next wake
            ran.append("rearm")
            runtime.call_at(runtime.time() - 1, lambda: ran.append("past"))

        runtime.call_at(now + 0.06, rearm)
        await asyncio.wait_for(done, 5)
        assert runtime.timers.next_when() == float("inf")
        return ran

    assert asyncio.run(main()) == ["a", "b", "rearm", "past"]


def test_an_exception_in_an_asyncio_timer_goes_to_the_loop_handler() -> None:
    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        seen: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda loop, context: seen.append(context))
        runtime = AsyncioRuntime(loop)
        done = loop.create_future()

        def boom() -> None:
            raise ValueError("boom")

        runtime.call_at(runtime.time(), boom)
        runtime.call_at(runtime.time() + 0.01, lambda: done.set_result(None))
        await asyncio.wait_for(done, 5)
        return seen

    seen = asyncio.run(main())
    assert [type(c["exception"]) for c in seen] == [ValueError]
