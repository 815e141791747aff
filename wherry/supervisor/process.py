"""One worker process as the supervisor sees it: the child, its control channel and its state."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

WORKER_ENV = "WHERRY_WORKER_CONFIG"


class WorkerProcess:
    """A fresh interpreter (``python -m wherry.supervisor.worker``) that inherits the listening
    sockets and one end of a socket pair, and imports the application anew."""

    def __init__(
        self,
        payload: dict[str, Any],
        fds: list[int],
        generation: int,
        ids: tuple[int | None, int | None, list[int]] = (None, None, []),
    ) -> None:
        parent_end, child_end = socket.socketpair()
        try:
            payload = dict(payload, fds=fds, control=child_end.fileno())
            env = dict(os.environ, **{WORKER_ENV: json.dumps(payload)})
            uid, gid, groups = ids
            extra: dict[str, Any] = {}
            if uid is not None:
                extra["user"] = uid
            if gid is not None:
                extra["group"] = gid
                extra["extra_groups"] = groups
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wherry.supervisor.worker"],
                pass_fds=[*fds, child_end.fileno()],
                env=env,
                **extra,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        parent_end.setblocking(False)
        self.sock = parent_end
        self.generation = generation
        self.started_at = time.monotonic()
        self.ready_at: float | None = None
        self.ping_sent_at: float | None = None
        self.last_ping_at = 0.0
        self.draining_since: float | None = None
        self.recycle_reason: str | None = None
        self.metrics: dict[str, Any] | None = None
        self.requests_total = 0
        self.exit_code: int | None = None
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, line: bytes) -> None:
        with contextlib.suppress(OSError):  # gone or not reading: its exit or missing pongs tell
            self.sock.send(line + b"\n")

    def read_lines(self) -> list[bytes]:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            return []
        self._buffer += data
        lines = self._buffer.split(b"\n")
        self._buffer = lines.pop()
        return lines

    def poll(self) -> int | None:
        if self.exit_code is None:
            code = self.proc.poll()
            if code is not None:
                self.exit_code = code
                self.sock.close()
        return self.exit_code

    def signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # exited in between
                self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def rss_mib(self) -> float | None:
        """Resident memory in MiB, from /proc (None where there is no /proc)."""
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                pages = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)

    def describe_exit(self) -> str:
        code = self.exit_code
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"
