"""Many timers on one: the heap behind ``Runtime.call_at`` on both backends.

A server with 10,000 connections keeps a deadline for each (the head, the body, keep-alive,
output). One loop timer per deadline costs a loop handle each (about 600 bytes on uvloop, and
work for the loop); here a deadline is a small ``Timer`` in one heap, and the backend keeps a
single wake-up at the earliest one. A cancelled timer stays in the heap until it comes up, or
until cancelled ones are the majority of a large heap, which is then compacted.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

Report = Callable[[dict[str, Any]], None]


class Timer:
    """One deadline: ``when()`` and ``cancel()`` (the TimerHandle protocol of the drivers)."""

    __slots__ = ("_heap", "_when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None], heap: TimerHeap) -> None:
        self._when = when
        self.callback = callback
        self.cancelled = False  # also once it has run
        self._heap: TimerHeap | None = heap  # while it waits in the heap

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            heap = self._heap
            if heap is not None:
                heap.cancelled += 1


class TimerHeap:
    """The timers of one runtime, earliest first."""

    __slots__ = ("_heap", "_seq", "cancelled")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0
        self.cancelled = 0  # cancelled timers still in the heap

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback, self)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, timer))
        return timer

    def next_when(self) -> float:
        """When the earliest timer is due (``math.inf`` with none)."""
        return self._heap[0][0] if self._heap else math.inf

    def run_due(self, now: float, report: Report) -> None:
        """Call every timer due by ``now`` that was not cancelled, each once. An exception from a
        callback goes to ``report`` and the others still run."""
        heap = self._heap
        due = []
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            timer._heap = None
            if timer.cancelled:
                self.cancelled -= 1
            else:
                due.append(timer)
        for timer in due:
            if not timer.cancelled:  # (an earlier callback may have cancelled it)
                timer.cancelled = True
                try:
                    timer.callback()
                except Exception as exc:
                    report({"message": "Exception in a timer callback", "exception": exc})
        if self.cancelled * 2 > len(heap) > 256:
            live = []
            for entry in heap:
                if entry[2].cancelled:
                    entry[2]._heap = None
                else:
                    live.append(entry)
            heap[:] = live
            heapq.heapify(heap)
            self.cancelled = 0
