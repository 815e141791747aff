"""The metrics and probes endpoint (``--metrics-bind``): Prometheus text on ``/metrics``, liveness
on ``/healthz`` and readiness on ``/readyz``, served by a thread of its own so that it answers even
while the workers (or the one server) are busy, and so the supervisor needs no event loop.

Counters come as snapshots (``wherry.metrics.Metrics.snapshot``): one per worker, as reported with
its last pong, plus the totals of workers that have exited (so an aggregated counter never goes
backwards when a worker is replaced). The histogram is labelled with the bounds the workers count
with, ``wherry.metrics.LATENCY_BUCKETS`` (the bucket counts arrive as plain lists).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..config import parse_bind
from ..metrics import LATENCY_BUCKETS, Snapshot, add_counters, empty_snapshot
from ..sockets import BindError

logger = logging.getLogger("wherry.error")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def _series(prefix: str, snapshot: Snapshot, labels: dict[str, str], out: list[str]) -> None:
    for status, count in sorted(snapshot["requests"].items()):
        out.append(f"{prefix}requests_total{_labels({**labels, 'status': status})} {count}")
    cumulative = 0
    for bound, count in zip((*LATENCY_BUCKETS, None), snapshot["buckets"], strict=False):
        cumulative += count
        le = "+Inf" if bound is None else repr(bound)
        out.append(f"{prefix}request_duration_seconds_bucket{_labels({**labels, 'le': le})} {cumulative}")
    out.append(f"{prefix}request_duration_seconds_sum{_labels(labels)} {snapshot['duration_sum']!r}")
    out.append(f"{prefix}request_duration_seconds_count{_labels(labels)} {cumulative}")
    out.append(f"{prefix}open_connections{_labels(labels)} {snapshot['connections']}")
    out.append(f"{prefix}requests_in_flight{_labels(labels)} {snapshot['in_flight']}")


def _help(prefix: str, scope: str, out: list[str]) -> None:
    out.append(f"# HELP {prefix}requests_total Requests answered{scope}, by status code.")
    out.append(f"# TYPE {prefix}requests_total counter")
    out.append(f"# HELP {prefix}request_duration_seconds Time from request head to the app's end{scope}.")
    out.append(f"# TYPE {prefix}request_duration_seconds histogram")
    out.append(f"# HELP {prefix}open_connections Open client connections{scope}.")
    out.append(f"# TYPE {prefix}open_connections gauge")
    out.append(f"# HELP {prefix}requests_in_flight Requests whose app is running{scope}.")
    out.append(f"# TYPE {prefix}requests_in_flight gauge")


def render(
    parts: Iterable[Snapshot],
    workers: Iterable[tuple[str, Snapshot]] = (),
    extra: Iterable[str] = (),
) -> str:
    """Prometheus text (format 0.0.4): the sum of ``parts`` as ``wherry_*`` and, when given, each
    worker as ``wherry_worker_*{worker="PID"}``; ``extra`` lines are appended as they are."""
    total = empty_snapshot()
    for part in parts:
        add_counters(total, part)
        total["connections"] += part.get("connections", 0)
        total["in_flight"] += part.get("in_flight", 0)
    out: list[str] = []
    _help("wherry_", "", out)
    _series("wherry_", total, {}, out)
    workers = list(workers)
    if workers:
        _help("wherry_worker_", " by one worker", out)
        for name, snapshot in workers:
            _series("wherry_worker_", {**empty_snapshot(), **snapshot}, {"worker": name}, out)
    out.extend(extra)
    return "\n".join(out) + "\n"


class Exporter:
    """``/metrics``, ``/healthz`` and ``/readyz`` on their own address, from a daemon thread."""

    def __init__(self, address: str, metrics: Callable[[], str], ready: Callable[[], bool]) -> None:
        kind, target = parse_bind(address)
        assert kind == "tcp" and isinstance(target, tuple)
        host, port = target
        exporter = self
        # (imported here: http.server brings email, http.client and more into every process)
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            server_version = "wherry"

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]
                if path == "/metrics":
                    self._answer(200, exporter.metrics(), "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/healthz":
                    self._answer(200, "ok\n")
                elif path == "/readyz":
                    ok = exporter.ready()
                    self._answer(200 if ok else 503, "ready\n" if ok else "not ready\n")
                else:
                    self._answer(404, "not found\n")

            def _answer(self, status: int, body: str, kind: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would flood the log

        self.metrics = metrics
        self.ready = ready
        host = host.strip("[]")

        class EndpointHTTPServer(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A probe that hangs up before its answer is written (HAProxy's health checks
                # reset the connection once they have the status) is not an error of the server.
                if isinstance(sys.exc_info()[1], ConnectionError):
                    return
                super().handle_error(request, client_address)

        try:
            self.httpd = EndpointHTTPServer((host, port), Handler)
        except OSError as exc:
            raise BindError(exc.errno, f"cannot bind the metrics address {address}: {exc.strerror}") from None
        self.address = self.httpd.server_address
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="wherry-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("Metrics and probes on http://%s:%d/metrics", self.address[0], self.address[1])

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() would wait for ever on a loop never started
            self.httpd.shutdown()
        self.httpd.server_close()
