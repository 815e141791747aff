"""``gunicorn -k wherry.workers.WherryWorker``: real gunicorn binds and supervises, Wherry serves;
gunicorn's bind, timeout, graceful timeout, max-requests and access-log format are honoured."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import ROOT, children, free_port, unix_accepts, wait_until

pytest.importorskip("gunicorn")


class Gunicorn:
    def __init__(self, tmp: Path, app: str, *args: str) -> None:
        self.port = free_port()
        self.access = tmp / "access.log"
        self.errors = tmp / "error.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "wherry.workers.WherryWorker",
                app,
                "-b",
                f"127.0.0.1:{self.port}",
                "--no-control-socket",
                "--access-logfile",
                str(self.access),
                "--error-logfile",
                str(self.errors),
                *args,
            ],
            cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_serving(self, client: httpx.Client | None = None) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, self.errors.read_text()
            try:
                (client or httpx).get(self.url + "/")
            except httpx.TransportError:
                return False
            return True

        wait_until(up, 20, "gunicorn to serve")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


@pytest.fixture
def running() -> Iterator[list[Gunicorn]]:
    started: list[Gunicorn] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_serves_gunicorns_binds_with_its_access_log_format(running: list[Gunicorn], tmp_path: Path) -> None:
    """Two workers serve the sockets gunicorn bound (TCP and -b unix:PATH); each request is
    logged in gunicorn's access log with the atoms of --access-logformat."""
    path = tmp_path / "g.sock"
    log_format = '%(h)s "%(r)s" %(s)s %(b)s %(D)s'
    server = Gunicorn(
        tmp_path, "tests.apps:ops", "-w", "2", "-b", f"unix:{path}", "--access-logformat", log_format
    )
    running.append(server)
    server.wait_serving()
    response = httpx.get(server.url + "/hello?x=1")
    assert response.status_code == 200
    wait_until(lambda: "/hello" in server.access.read_text(), what="the access line")
    line = next(line for line in server.access.read_text().splitlines() if "/hello" in line)
    assert re.fullmatch(rf'127\.0\.0\.1 "GET /hello\?x=1 HTTP/1\.1" 200 {len(response.content)} \d+', line), (
        line
    )
    assert "Wherry running on" in server.errors.read_text()
    wait_until(lambda: unix_accepts(str(path)), 20, "gunicorn's Unix socket")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://localhost/over-unix").status_code == 200
    wait_until(lambda: '"GET /over-unix HTTP/1.1" 200' in server.access.read_text(), what="the Unix line")
    assert server.stop() == 0


def test_http2_requests_are_logged_with_gunicorns_access_log_format(
    running: list[Gunicorn], tmp_path: Path
) -> None:
    """HTTP/2 requests (prior knowledge) get gunicorn's --access-logformat atoms, as HTTP/1.1 ones do."""
    log_format = '%(h)s "%(r)s" %(s)s %(b)s %(H)s %({x-request-id}i)s'
    server = Gunicorn(tmp_path, "tests.apps:ops", "-w", "1", "--access-logformat", log_format)
    running.append(server)
    server.wait_serving()
    with httpx.Client(http1=False, http2=True) as client:
        response = client.get(server.url + "/over-h2?x=1", headers={"x-request-id": "r-2"})
    assert response.http_version == "HTTP/2" and response.status_code == 200
    wait_until(lambda: "/over-h2" in server.access.read_text(), what="the access line")
    line = next(line for line in server.access.read_text().splitlines() if "/over-h2" in line)
    size = len(response.content)
    assert re.fullmatch(rf'127\.0\.0\.1 "GET /over-h2\?x=1 HTTP/2" 200 {size} HTTP/2 r-2', line), line
    assert server.stop() == 0


def test_max_requests_replaces_the_worker(running: list[Gunicorn], tmp_path: Path) -> None:
    """--max-requests: the worker drains and exits after that many requests; gunicorn starts
    another and no request fails."""
    server = Gunicorn(tmp_path, "tests.apps:ops", "-w", "1", "--max-requests", "10")
    running.append(server)
    server.wait_serving()
    pids: set[str] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        with httpx.Client() as client:
            response = client.get(server.url + "/")
        assert response.status_code == 200
        pids.add(response.text)
    assert len(pids) >= 2
    assert "max-requests" in server.errors.read_text()
    assert server.stop() == 0


def test_graceful_timeout_lets_a_request_finish_and_cuts_a_longer_one(
    running: list[Gunicorn], tmp_path: Path
) -> None:
    """SIGTERM: a request shorter than --graceful-timeout completes; a longer one is cut."""
    server = Gunicorn(tmp_path, "tests.apps:ops", "-w", "1", "--graceful-timeout", "1")
    running.append(server)
    server.wait_serving()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as quick,
        socket.create_connection(("127.0.0.1", server.port)) as slow,
    ):
        quick.sendall(f"GET /slow?delay=0.3&mark={tmp_path}/q HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        slow.sendall(f"GET /slow?delay=30&mark={tmp_path}/s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: (tmp_path / "q").exists() and (tmp_path / "s").exists(), what="both in flight")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        quick.settimeout(5)
        assert quick.recv(100).startswith(b"HTTP/1.1 200 OK")
        assert server.proc.wait(15) == 0
        assert time.monotonic() - started < 5
        slow.settimeout(5)
        assert slow.recv(100) == b""


def test_timeout_kills_a_worker_whose_loop_is_stuck(running: list[Gunicorn], tmp_path: Path) -> None:
    """--timeout: the worker notifies the arbiter from its event loop, so a blocked loop is
    noticed and the worker replaced."""
    server = Gunicorn(tmp_path, "tests.apps:ops", "-w", "1", "--timeout", "1")
    running.append(server)
    server.wait_serving()
    [first] = children(server.proc.pid)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: children(server.proc.pid) - {first}, timeout=20, what="a new worker")
    assert "WORKER TIMEOUT" in server.errors.read_text()
    server.wait_serving()
    assert server.stop() == 0
