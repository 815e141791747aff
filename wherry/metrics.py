"""The metrics of a server, in one place: what is counted per request (``Metrics``), the latency
histogram's bounds, and the snapshot those counters travel as (from a worker to the supervisor with
its pongs, and to the ``--metrics-bind`` endpoint, which renders them as Prometheus text:
``wherry/supervisor/exporter.py``).

Rules of this module:

1. It imports nothing from Wherry: the server's observer (``wherry/connection/observe.py``, which
   counts) and the supervisor (which adds workers' snapshots up and renders them) both build on it.
2. Counting is plain integer arithmetic on preallocated lists (a list indexed by status code, one
   histogram bucket found by bisection): no locks, no dictionaries, no objects per request. Readers
   (the metrics exporter, the worker's control channel) take ``snapshot()``; under the GIL a
   snapshot may be one request behind, never torn within a counter.
3. A snapshot is plain JSON (``Snapshot``): bucket counts are a list in the order of
   ``LATENCY_BUCKETS``, not cumulative (the renderer adds them up), so these bounds are defined here
   only, for the side that counts and the side that labels alike.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Final

# Upper bounds (seconds) of the latency histogram's buckets; the last bucket is +Inf.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Snapshot = dict[str, Any]


class Metrics:
    """Counters of one server (one worker process)."""

    __slots__ = ("buckets", "duration_sum", "statuses")

    def __init__(self) -> None:
        self.statuses = [0] * 600  # requests answered, by status code (0 for anything >= 600)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # not cumulative; the renderer adds up
        self.duration_sum = 0.0

    def observe(self, status: int, seconds: float) -> None:
        self.statuses[status if status < 600 else 0] += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def rejected(self, status: int) -> None:
        """A request the server answered itself (400, 408, 413, 431...): counted, not timed."""
        self.statuses[status if status < 600 else 0] += 1

    def snapshot(self, connections: int, in_flight: int) -> Snapshot:
        """A JSON-ready copy: requests by status, the histogram, open connections, in flight."""
        statuses = self.statuses
        return {
            "requests": {str(code): n for code, n in enumerate(statuses) if n},
            "buckets": list(self.buckets),
            "duration_sum": self.duration_sum,
            "connections": connections,
            "in_flight": in_flight,
        }


def empty_snapshot() -> Snapshot:
    """The snapshot of a server that has counted nothing."""
    return {
        "requests": {},
        "buckets": [0] * (len(LATENCY_BUCKETS) + 1),
        "duration_sum": 0.0,
        "connections": 0,
        "in_flight": 0,
    }


def add_counters(total: Snapshot, part: Snapshot) -> None:
    """Add ``part``'s counters (not its gauges) into ``total``."""
    requests = total["requests"]
    for status, count in part.get("requests", {}).items():
        requests[status] = requests.get(status, 0) + count
    buckets = total["buckets"]
    for index, count in enumerate(part.get("buckets", ())):
        if index < len(buckets):
            buckets[index] += count
    total["duration_sum"] += part.get("duration_sum", 0.0)
