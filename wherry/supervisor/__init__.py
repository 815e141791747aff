"""Worker processes: the parent binds the sockets, starts ``--workers`` children, keeps them running.

No event loop here. Each worker is a fresh interpreter (``python -m wherry.supervisor.worker``) that
inherits the listening sockets by file descriptor and re-imports the application, so a crashed worker
is replaced by one with a clean state. SIGINT/SIGTERM are passed on to every worker, which drains
gracefully; a worker that dies is restarted with a growing delay; workers that keep failing at
startup stop the whole server with their exit code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from ..config import OPTIONS, Config

logger = logging.getLogger("wherry.error")

WORKER_ENV = "WHERRY_WORKER_CONFIG"
STARTUP_FAILURE = 3


def worker_payload(config: Config, fds: list[int]) -> str:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(config, option.name)
        if option.name in ("workers", "config", "bind", "host", "port", "uds", "fd", "env_file"):
            continue
        values[option.name] = value
    return json.dumps({"options": values, "fds": fds})


class Supervisor:
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        if not isinstance(config.app, str):
            raise ValueError("--workers needs the application as an import string ('module:attribute')")
        self.config = config
        self.sockets = sockets
        self.workers: list[subprocess.Popen[bytes]] = []
        self.should_exit = threading.Event()
        self.exit_code = 0
        self._failures = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        fds = [sock.fileno() for sock in self.sockets]
        env = dict(os.environ, **{WORKER_ENV: worker_payload(self.config, fds)})
        return subprocess.Popen([sys.executable, "-m", "wherry.supervisor.worker"], pass_fds=fds, env=env)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.should_exit.is_set():
            for proc in self.workers:  # second signal: do not wait for the grace period
                if proc.poll() is None:
                    proc.kill()
        self.should_exit.set()

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        logger.info("Started parent process [%d] with %d workers", os.getpid(), self.config.workers)
        started_at = time.monotonic()
        self.workers = [self._spawn() for _ in range(self.config.workers)]
        backoff = 0.1
        while not self.should_exit.wait(0.2):
            for index, proc in enumerate(self.workers):
                code = proc.poll()
                if code is None:
                    continue
                early = time.monotonic() - started_at < 10.0
                if code == STARTUP_FAILURE and early:
                    logger.error("Worker [%d] failed at startup; stopping", proc.pid)
                    self.exit_code = STARTUP_FAILURE
                    self.should_exit.set()
                    break
                self._failures += 1
                if self._failures > 5 and early:
                    logger.error("Workers keep exiting at startup; stopping")
                    self.exit_code = 1
                    self.should_exit.set()
                    break
                logger.warning("Worker [%d] exited with %s; starting a new one", proc.pid, code)
                time.sleep(min(backoff, 5.0))
                backoff *= 2
                self.workers[index] = self._spawn()
        self._stop()
        return self.exit_code

    def _stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown + 5.0
        for proc in self.workers:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self.sockets:
            sock.close()
