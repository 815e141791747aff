"""Running the ``wherry`` command in a subprocess for process-level tests (workers, signals,
reload, load balancers), with its log in a file and helpers to wait on what it does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``condition`` every 20 ms until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def unix_accepts(path: str) -> bool:
    """A server listens on the Unix socket ``path`` (a plain connect, closed at once)."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def tcp_accepts(port: int) -> bool:
    """A server listens on 127.0.0.1:``port`` (a plain connect, closed at once)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


class Wherry:
    """``python -m wherry ARGS`` with stderr (the error log) in ``tmp/wherry.log``."""

    def __init__(
        self,
        args: list[str],
        tmp: Path,
        port: int | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        pass_fds: tuple[int, ...] = (),
        prefix: list[str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = tmp / f"wherry-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        bind = [] if any(a in args for a in ("--uds", "--fd", "-b")) else ["--port", str(self.port)]
        command = [*(prefix or []), sys.executable, "-m", "wherry", *args, *bind]
        self.proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})),
            pass_fds=pass_fds,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, path: str = "/", timeout: float = 20.0) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, f"wherry exited early:\n{self.log()}"
            try:
                httpx.get(self.url + path, timeout=1.0)
            except httpx.TransportError:
                return False
            return True

        wait_until(up, timeout, "the server to answer")

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        wait_until(lambda: text in self.log(), timeout, f"{text!r} in the log:\n{self.log()}")

    def workers(self) -> set[int]:
        return children(self.pid)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        """Kill the server if it still runs and close its log (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"wherry did not stop:\n{self.log()}") from None
        finally:
            self._log.close()
        return code
