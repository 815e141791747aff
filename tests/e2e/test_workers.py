"""--workers: the parent binds once, starts the workers, passes signals on and replaces dead workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


@pytest.fixture(params=["asyncio", "trio"])
def workers(request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Two workers on one port, on each event loop (``--loop``)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wherry",
            "tests.apps:pid",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--timeout-keep-alive",
            "0.2",
            "--loop",
            str(request.param),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, proc)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children}


def test_two_workers_share_the_socket(workers: tuple[subprocess.Popen[bytes], str]) -> None:
    """Both workers accept on the socket the parent bound (fresh connections spread over them)."""
    proc, url = workers
    pids = worker_pids(proc.pid)
    assert len(pids) == 2
    seen: set[int] = set()
    deadline = time.monotonic() + 15
    while seen != pids and time.monotonic() < deadline:
        with httpx.Client() as client:  # a new connection each time
            seen.add(int(client.get(url).text))
    assert seen == pids


def test_dead_worker_is_replaced(workers: tuple[subprocess.Popen[bytes], str]) -> None:
    """A worker killed from outside is replaced and the server keeps answering."""
    proc, url = workers
    before = worker_pids(proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = worker_pids(proc.pid)
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.05)
    now = worker_pids(proc.pid)
    assert victim not in now and len(now) == 2
    assert httpx.get(url).status_code == 200


def test_sigterm_stops_every_worker(workers: tuple[subprocess.Popen[bytes], str]) -> None:
    """SIGTERM to the parent drains every worker and the parent exits 0."""
    proc, _url = workers
    pids = worker_pids(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_startup_failure_in_workers_exits_3() -> None:
    """Workers whose lifespan startup fails stop the server with exit status 3 and the app's message."""
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wherry",
            "tests.apps:failing_startup",
            "--port",
            str(port),
            "--workers",
            "2",
            "--lifespan",
            "on",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert b"the database is unreachable" in result.stderr
