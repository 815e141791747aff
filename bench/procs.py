"""Server processes: start pinned, wait until ready, sample memory and CPU, stop.

A server is started in its own session, so that every process it forks (granian and hypercorn
run a supervisor plus a worker) is found by session id in ``/proc`` and measured, and the
whole group is stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

KTHREADD = 2
"""Parent of every kernel thread."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """The server did not start, or died; ``log_tail`` holds the end of its output."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class ProcStat:
    pid: int
    ppid: int
    session: int
    rss_bytes: int
    cpu_seconds: float


def _read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain anything.
    fields = raw[raw.rfind(b")") + 2 :].split()
    # state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    # ... rss is field 24 of the full line, index 21 here.
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
    )


def all_stats() -> list[ProcStat]:
    """Every live process."""
    stats: list[ProcStat] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                stats.append(stat)
    return stats


def session_stats(session: int) -> list[ProcStat]:
    """Every live process of one session."""
    return [stat for stat in all_stats() if stat.session == session]


def free_port(start: int) -> int:
    """The first port from ``start`` that can be bound on 127.0.0.1.

    The harness hands out ports below the kernel's ephemeral range, each once, so that no
    server reuses a port still holding TIME_WAIT entries from an earlier run.
    """
    port = start
    while port < 32_000:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                port += 1
                continue
            return port
    raise RuntimeError("no free port below 32000")


class ServerProcess:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        host: str,
        port: int,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        cpu: int | None,
        tls: bool = False,
    ) -> None:
        self.name = name
        self.tls = tls  # the probe speaks TLS
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.log_path = log_path
        pinned = self.argv if cpu is None else ["taskset", "-c", str(cpu), *self.argv]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                pinned,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.ready_after: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def failure(self, message: str) -> ServerFailed:
        code = self.proc.poll()
        if code is not None:
            message = f"{message} (exit code {code})"
        return ServerFailed(message, self.log_tail())

    def probe(self) -> bool:
        """True once the server answers an HTTP request (any status) on its port."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as plain:
                conn = plain
                if self.tls:
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    conn = context.wrap_socket(plain)
                conn.sendall(
                    b"GET / HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\nConnection: close\r\n\r\n"
                )
                data = b""
                while b"\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return data.startswith(b"HTTP/1.")
        except OSError:
            return False

    def stats(self) -> list[ProcStat]:
        return session_stats(self.pid)

    def rss(self) -> tuple[int, int]:
        """(sum over the process tree, largest single process), in bytes."""
        sizes = [stat.rss_bytes for stat in self.stats()]
        return (sum(sizes), max(sizes, default=0))

    def cpu_seconds(self) -> float:
        return sum(stat.cpu_seconds for stat in self.stats())

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        # Whatever is left of the session (workers that outlived the parent) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace)


def wait_ready(servers: Iterable[ServerProcess], timeout: float) -> dict[str, ServerFailed | None]:
    """Poll every server until it answers; return each name's failure (None: ready)."""
    pending = {server.name: server for server in servers}
    outcome: dict[str, ServerFailed | None] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for name, server in list(pending.items()):
            if not server.alive():
                outcome[name] = server.failure("failed to start")
                del pending[name]
            elif server.probe():
                server.ready_after = time.monotonic() - server.started_at
                outcome[name] = None
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            for name, server in pending.items():
                outcome[name] = server.failure(f"failed to start: not ready after {timeout:.0f} s")
            break
        time.sleep(0.05)
    return outcome


class CpuWatch:
    """CPU time used by a set of processes between two looks, counted per process.

    Counting per process means that a process exiting does not make the others look idle, and
    one that appears counts all the CPU time it used.
    """

    def __init__(self, include: Callable[[ProcStat], bool]) -> None:
        self.include = include
        self.last = self._snapshot()

    def _snapshot(self) -> dict[int, float]:
        return {stat.pid: stat.cpu_seconds for stat in all_stats() if self.include(stat)}

    def used(self) -> float:
        """CPU seconds used since the previous call (or since creation)."""
        now = self._snapshot()
        used = sum(max(0.0, cpu - self.last.get(pid, 0.0)) for pid, cpu in now.items())
        self.last = now
        return used


def in_sessions(sessions: Iterable[int]) -> Callable[[ProcStat], bool]:
    wanted = frozenset(sessions)
    return lambda stat: stat.session in wanted


LOAD_SESSIONS: set[int] = set()
"""Sessions of what the harness runs on the load side besides the load tool (the PostgreSQL of
the database scenarios): their CPU time is part of the benchmark, not another process's."""


def not_harness(exclude_session: int | None = None) -> Callable[[ProcStat], bool]:
    """Every user process except this one, its load-tool children, ``LOAD_SESSIONS`` and
    ``exclude_session``.

    Kernel threads are left out too: their work here is mostly the network traffic of the
    benchmark itself.
    """
    me, my_session = os.getpid(), os.getsid(0)
    load = frozenset(LOAD_SESSIONS)

    def include(stat: ProcStat) -> bool:
        return not (
            stat.pid == me
            or stat.pid == KTHREADD
            or stat.ppid == KTHREADD
            or stat.session == exclude_session
            or stat.session in load
            or (stat.ppid == me and stat.session == my_session)
        )

    return include


def wait_idle(
    watch: CpuWatch,
    timeout: float = 5.0,
    window: float = 0.1,
    busy_fraction: float = 0.03,
) -> float:
    """Wait until the watched processes use under ``busy_fraction`` of a CPU; return the wait.

    After a run a server may still be closing thousands of connections; the next server
    measured shares its CPU, so it must not start before that work is done.
    """
    start = time.monotonic()
    watch.used()
    while time.monotonic() - start < timeout:
        time.sleep(window)
        # CPU time has tick granularity (10 ms): compare over the window, with one tick slack.
        if watch.used() <= busy_fraction * window + 1 / CLOCK_TICKS:
            break
    return time.monotonic() - start


class Sampler:
    """Samples a server's memory and CPU time in a thread while a run is under way.

    It also measures the CPU time used meanwhile by everything else on the machine (other
    servers, other users' jobs), but not by the harness and its load tool: a run during which
    other processes were busy is a disturbed run, and the report says so.
    """

    def __init__(self, server: ServerProcess, interval: float = 0.1) -> None:
        self.server = server
        self.interval = interval
        self.peak_rss = 0
        self.peak_process_rss = 0
        self.samples = 0
        self.cpu_start = 0.0
        self.cpu_end = 0.0
        self.wall_start = 0.0
        self.wall_end = 0.0
        self.other_cpu = 0.0
        self._others: CpuWatch | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{server.name}")

    def _sample(self) -> None:
        total, largest = self.server.rss()
        self.peak_rss = max(self.peak_rss, total)
        self.peak_process_rss = max(self.peak_process_rss, largest)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Sampler:
        self._others = CpuWatch(not_harness(exclude_session=self.server.pid))
        self.cpu_start = self.server.cpu_seconds()
        self.wall_start = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.cpu_end = self.server.cpu_seconds()
        self.wall_end = time.monotonic()
        self.other_cpu = self._others.used() if self._others is not None else 0.0

    @property
    def cpu_utilisation(self) -> float:
        """Server CPU time over wall time during the run (1.0 = one core busy)."""
        wall = self.wall_end - self.wall_start
        return (self.cpu_end - self.cpu_start) / wall if wall > 0 else 0.0

    @property
    def other_utilisation(self) -> float:
        """CPU time of everything else over wall time during the run."""
        wall = self.wall_end - self.wall_start
        return self.other_cpu / wall if wall > 0 else 0.0
