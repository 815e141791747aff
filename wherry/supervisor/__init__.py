"""Worker processes: the parent binds the sockets, starts ``--workers`` children, keeps them running.

Rules of this package:

1. No event loop in the parent. It waits in ``select`` on one wake-up pipe (signals, the reloader)
   and the workers' control channels, and does everything else between two waits.
2. Signals are only queued by their handlers and dispatched from the main loop to
   ``handle_<name>`` (``handle_term``, ``handle_hup``...), so no handler runs in the middle of
   another piece of work.
3. A worker is replaced only once its replacement is ready (``ready`` on its control channel):
   HUP, TTOU, --reload, --limit-max-requests and --limit-worker-rss all go through the same
   handover (start the new one, wait until it accepts, then tell the old one to ``drain``), so no
   request is refused or cut while it happens. A replacement that fails to start leaves the old
   worker in place.
4. A worker that dies is replaced, with a growing delay while workers die before they are ready;
   when that happens ``MAX_STARTUP_FAILURES`` times in a row (or the app's lifespan startup
   fails before any worker ever was ready) the supervisor stops with a non-zero status and says
   why. With --reload it waits for the next change instead.
5. Each ready worker is pinged every ``ping_interval``; one that does not answer within
   ``--timeout-worker-healthcheck`` (its event loop is stuck) is killed and replaced.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from typing import Any

from ..config import OPTIONS, Config
from ..metrics import add_counters, empty_snapshot
from ..sockets import take_held_signals
from .exporter import Exporter, render
from .ops import check_privileges
from .process import WORKER_ENV, WorkerProcess

logger = logging.getLogger("wherry.error")

STARTUP_FAILURE = 3
MAX_STARTUP_FAILURES = 5
SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGTTIN", "SIGTTOU")
# Options the parent uses and the workers must not see (they get the sockets already bound).
PARENT_ONLY = frozenset(
    (
        "workers",
        "config",
        "bind",
        "host",
        "port",
        "uds",
        "fd",
        "env_file",
        "pid_file",
        "user",
        "group",
        "uds_permissions",
        "reload",
        "reload_dirs",
        "reload_includes",
        "reload_excludes",
        "reload_delay",
        "limit_worker_rss",
    )
)

__all__ = ["WORKER_ENV", "Supervisor", "needs_supervisor"]


def needs_supervisor(config: Config) -> bool:
    """Several workers, or anything that replaces the one worker, needs a supervising parent.
    A single server with --limit-max-requests stops once it has served that many (as uvicorn's
    does: its process manager starts it again)."""
    return bool(config.workers > 1 or config.reload or config.limit_worker_rss)


def worker_options(config: Config) -> dict[str, Any]:
    return {o.name: getattr(config, o.name) for o in OPTIONS if o.name not in PARENT_ONLY}


class Supervisor:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        if not isinstance(config.app, str):
            raise ValueError("--workers needs the application as an import string ('module:attribute')")
        self.config = config
        self.sockets = sockets
        self.target = config.workers
        self.workers: list[WorkerProcess] = []  # serving, or starting to
        self.retiring: list[WorkerProcess] = []  # draining after a handover
        # The replacement for replace_queue[0], which stays first in the queue until it is ready.
        self.incoming: WorkerProcess | None = None
        self.replace_queue: deque[WorkerProcess] = deque()
        self.generation = 0
        self.exit_code = 0
        self.stopping = False
        self.forced = False
        self.restarts = 0
        self._payload = {"options": worker_options(config)}
        self._fds = [sock.fileno() for sock in sockets]
        self._ids = check_privileges(config.user, config.group)
        self._signals: deque[int] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._startup_failures = 0
        self._ever_ready = False
        self._respawn_at = 0.0
        self._waiting_for_change = False
        self._retired_metrics = empty_snapshot()
        self._lock = threading.Lock()  # guards what the metrics thread reads
        self._reload_paths: list[str] | None = None
        self.reloader: Any = None
        self.exporter: Exporter | None = None
        timeout = config.timeout_worker_healthcheck
        self.ping_interval = max(0.1, min(1.0, timeout / 2)) if timeout > 0 else 1.0

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        previous = self._install_signals()
        try:
            logger.info("Started parent process [%d] with %d workers", os.getpid(), self.target)
            if self.config.metrics_bind:
                try:
                    self.exporter = Exporter(self.config.metrics_bind, self.render_metrics, self.is_ready)
                except OSError as exc:
                    logger.error("%s", exc.strerror or exc)
                    return 1
                self.exporter.start()
            if self.config.reload:
                from .reload import Reloader

                self.reloader = Reloader(self.config, self._on_change)
                self.reloader.start()
            for _ in range(self.target):
                self._spawn()
            while not self.stopping:
                self._wait(0.1)
                self._dispatch_signals()
                self._maintain()
            self._stop()
        finally:
            if self.reloader is not None:
                self.reloader.stop()
            if self.exporter is not None:
                self.exporter.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for sock in self.sockets:
                sock.close()
        return self.exit_code

    def _install_signals(self) -> dict[int, Any]:
        previous = {}
        for name in SIGNALS:
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, self._queue_signal)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self._signals.extend(take_held_signals())  # arrived while the sockets were being bound
        return previous

    def _queue_signal(self, signum: int, _frame: Any) -> None:
        self._signals.append(signum)  # rule 2: nothing else happens in a handler

    def _wait(self, timeout: float) -> None:
        watched: list[Any] = [self._wake_r]
        watched += [w for w in self._all() if w.exit_code is None]
        try:
            readable, _, _ = select.select(watched, [], [], timeout)
        except InterruptedError:  # pragma: no cover - Python retries select itself
            return
        for item in readable:
            if item == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            else:
                self._on_messages(item)

    def _all(self) -> list[WorkerProcess]:
        found = [*self.workers, *self.retiring]
        if self.incoming is not None:
            found.append(self.incoming)
        return found

    def _dispatch_signals(self) -> None:
        while self._signals:
            name = signal.Signals(self._signals.popleft()).name
            getattr(self, "handle_" + name[3:].lower())()

    # ------------------------------------------------------------------ signal handlers

    def handle_int(self) -> None:
        self.handle_term()

    def handle_term(self) -> None:
        if self.stopping:
            self.forced = True  # a second signal: do not wait for the grace period
            logger.info("Second shutdown signal: stopping the workers now")
            return
        logger.info("Shutting down: draining %d worker(s)", len(self._all()))
        self.stopping = True

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP: restarting the workers one at a time")
        self.restart_all()

    def handle_ttin(self) -> None:
        self.target += 1
        logger.info("Received SIGTTIN: %d worker(s) now", self.target)

    def handle_ttou(self) -> None:
        if self.target <= 1:
            logger.info("Received SIGTTOU: already at one worker")
            return
        self.target -= 1
        logger.info("Received SIGTTOU: %d worker(s) now", self.target)
        queued = set(map(id, self.replace_queue))
        candidates = [w for w in self.workers if id(w) not in queued]
        if candidates:
            self._retire(candidates[-1])
        # Otherwise every worker waits for its replacement: the surplus goes once they are done.

    # ------------------------------------------------------------------ replacing workers

    def restart_all(self) -> None:
        """Replace every worker, one at a time, each only once its replacement is ready."""
        self.generation += 1
        for worker in self.workers:
            if worker.generation < self.generation and worker not in self.replace_queue:
                self.replace_queue.append(worker)

    def _on_change(self, paths: list[str]) -> None:
        """Called from the reloader's thread: hand the change to the main loop."""
        with self._lock:
            self._reload_paths = paths
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\x00")

    def _spawn(self, replacing: bool = False) -> WorkerProcess | None:
        try:
            worker = WorkerProcess(self._payload, self._fds, self.generation, self._ids)
        except OSError as exc:
            logger.error("Cannot start a worker process: %s; stopping", exc)
            self.exit_code = 1
            self.stopping = True
            return None
        if replacing:
            self.incoming = worker
        else:
            self.workers.append(worker)
        return worker

    def _retire(self, worker: WorkerProcess) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        worker.draining_since = time.monotonic()
        worker.send(b"drain")
        self.retiring.append(worker)

    def _on_messages(self, worker: WorkerProcess) -> None:
        for line in worker.read_lines():
            kind, _, rest = line.partition(b" ")
            if kind == b"pong":
                worker.ping_sent_at = None
                try:
                    data = json.loads(rest)
                except ValueError:
                    continue
                with self._lock:
                    worker.metrics = data.get("metrics")
                worker.requests_total = data.get("requests_total", 0)
            elif kind == b"ready":
                self._on_ready(worker)
            elif kind == b"recycle" and worker.recycle_reason is None:
                worker.recycle_reason = rest.decode("ascii", "replace")
                logger.info("Worker [%d] asks to be replaced (%s)", worker.pid, worker.recycle_reason)
                if worker in self.workers and worker not in self.replace_queue:
                    self.replace_queue.append(worker)

    def _on_ready(self, worker: WorkerProcess) -> None:
        worker.ready_at = worker.last_ping_at = time.monotonic()
        self._startup_failures = 0
        self._ever_ready = True
        logger.info("Worker [%d] is ready", worker.pid)
        if worker is self.incoming:
            self.incoming = None
            self.workers.append(worker)
            old = self.replace_queue.popleft() if self.replace_queue else None
            if old is not None and old in self.workers:
                logger.info("Worker [%d] replaces worker [%d], which drains", worker.pid, old.pid)
                self._retire(old)
                self.restarts += 1
            # Otherwise the old worker died or was retired meanwhile: the new one takes its place.

    # ------------------------------------------------------------------ between two waits

    def _maintain(self) -> None:
        now = time.monotonic()
        self._reap(now)
        if self.stopping:
            return
        with self._lock:
            paths, self._reload_paths = self._reload_paths, None
        if paths is not None:
            shown = ", ".join(os.path.relpath(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
            logger.warning("Changes detected in %s: restarting the workers", shown)
            self._waiting_for_change = False
            self._startup_failures = 0
            self.restart_all()
        self._health(now)
        self._handover()
        if (
            len(self.workers) < self.target
            and now >= self._respawn_at
            and not self._waiting_for_change
            and self.incoming is None
        ):
            self._spawn()
        while len(self.workers) > self.target and not self.replace_queue:
            self._retire(self.workers[-1])

    def _handover(self) -> None:
        if self.incoming is not None:
            return
        while self.replace_queue:
            old = self.replace_queue[0]
            if old in self.workers and old.exit_code is None:
                if not self._waiting_for_change:
                    self._spawn(replacing=True)
                return
            self.replace_queue.popleft()

    def _health(self, now: float) -> None:
        timeout = self.config.timeout_worker_healthcheck
        rss_limit = self.config.limit_worker_rss
        for worker in self.workers:
            if not worker.ready or worker.exit_code is not None:
                continue
            if worker.ping_sent_at is not None:
                if timeout > 0 and now - worker.ping_sent_at > timeout:
                    logger.error(
                        "Worker [%d] did not answer its health check within %gs; killing it",
                        worker.pid,
                        timeout,
                    )
                    worker.kill()
                continue
            if now - worker.last_ping_at >= self.ping_interval:
                worker.last_ping_at = worker.ping_sent_at = now
                worker.send(b"ping")
                if rss_limit is not None and worker.recycle_reason is None:
                    rss = worker.rss_mib()
                    if rss is not None and rss > rss_limit:
                        worker.recycle_reason = "limit-worker-rss"
                        logger.info(
                            "Worker [%d] uses %.0f MiB (--limit-worker-rss %d); replacing it",
                            worker.pid,
                            rss,
                            rss_limit,
                        )
                        self.replace_queue.append(worker)
        for worker in self.retiring:
            since = worker.draining_since or now
            if worker.exit_code is None and now - since > self.config.timeout_graceful_shutdown + 5:
                logger.warning("Worker [%d] still draining; killing it", worker.pid)
                worker.kill()

    def _reap(self, now: float) -> None:
        for worker in self._all():
            if worker.poll() is None:
                continue
            with self._lock:
                if worker.metrics is not None:
                    add_counters(self._retired_metrics, worker.metrics)
                    worker.metrics = None
            if worker in self.retiring:
                self.retiring.remove(worker)
                logger.info("Worker [%d] drained and stopped", worker.pid)
                continue
            if worker is self.incoming:
                self.incoming = None
                self._startup_failed(worker, replacement=True)
                continue
            self.workers.remove(worker)
            if worker in self.replace_queue:
                self.replace_queue.remove(worker)
            if self.stopping:
                continue
            if worker.ready:
                logger.warning(
                    "Worker [%d] died (%s); starting a new one", worker.pid, worker.describe_exit()
                )
                self.restarts += 1
            else:
                self._startup_failed(worker, replacement=False)

    def _startup_failed(self, worker: WorkerProcess, replacement: bool) -> None:
        self._startup_failures += 1
        code = worker.exit_code
        what = "The replacement worker" if replacement else f"Worker [{worker.pid}]"
        if self.config.reload:
            logger.error(
                "%s failed to start (%s); waiting for a change to try again", what, worker.describe_exit()
            )
            self._waiting_for_change = True
            return
        if replacement:
            logger.error(
                "%s failed to start (%s); keeping the running workers and giving up the restart",
                what,
                worker.describe_exit(),
            )
            self.replace_queue.clear()
            return
        if code == STARTUP_FAILURE and not self._ever_ready:
            logger.error("%s failed at application startup; stopping", what)
            self.exit_code = STARTUP_FAILURE
            self.stopping = True
            return
        if self._startup_failures >= MAX_STARTUP_FAILURES:
            logger.error(
                "Workers failed to start %d times in a row (last: %s); stopping",
                self._startup_failures,
                worker.describe_exit(),
            )
            self.exit_code = code if code is not None and code > 0 else 1
            self.stopping = True
            return
        delay = min(0.1 * 2 ** (self._startup_failures - 1), 5.0)
        logger.warning(
            "%s exited before it was ready (%s); retrying in %.1fs", what, worker.describe_exit(), delay
        )
        self._respawn_at = time.monotonic() + delay

    # ------------------------------------------------------------------ stopping

    def _stop(self) -> None:
        for worker in self._all():
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown + 5.0
        while True:
            alive = [w for w in self._all() if w.poll() is None]
            if not alive:
                break
            if self.forced or time.monotonic() > deadline:
                for worker in alive:
                    worker.kill()
                for worker in alive:
                    worker.proc.wait()
                    worker.poll()
                break
            self._wait(0.05)
            self._dispatch_signals()
        with self._lock:
            for worker in self._all():
                if worker.metrics is not None:
                    add_counters(self._retired_metrics, worker.metrics)
                    worker.metrics = None
        self.workers.clear()
        self.retiring.clear()
        self.incoming = None

    # ------------------------------------------------------------------ metrics and probes

    def is_ready(self) -> bool:
        return not self.stopping and any(w.ready for w in list(self.workers))

    def render_metrics(self) -> str:
        with self._lock:
            live = [(str(w.pid), copy.deepcopy(w.metrics)) for w in self._all() if w.metrics is not None]
            retired = copy.deepcopy(self._retired_metrics)
        extra = [
            "# HELP wherry_workers Worker processes serving.",
            "# TYPE wherry_workers gauge",
            f"wherry_workers {sum(1 for w in list(self.workers) if w.ready)}",
            "# HELP wherry_worker_restarts_total Workers replaced (handovers and deaths).",
            "# TYPE wherry_worker_restarts_total counter",
            f"wherry_worker_restarts_total {self.restarts}",
        ]
        return render([retired, *(snapshot for _name, snapshot in live)], live, extra)
