"""--metrics-bind: Prometheus text on /metrics (requests by status, a latency histogram, open
connections, requests in flight), per worker and aggregated by the supervisor; /healthz and
/readyz for probes."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import read_response
from tests.procs import ROOT, Wherry, free_port, wait_until
from wherry import metrics as home
from wherry.config import Config
from wherry.connection import observe
from wherry.connection.context import ServerContext
from wherry.metrics import Metrics
from wherry.supervisor import exporter
from wherry.supervisor.exporter import render


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one series in Prometheus text, or None."""
    pattern = "^" + re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match[1]) if match else None


@pytest.fixture
def servers() -> Iterator[list[Wherry]]:
    started: list[Wherry] = []
    yield started
    for server in started:
        server.close()


def scrape(port: int, path: str = "/metrics") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def test_single_server_metrics(servers: list[Wherry], tmp_path: Path) -> None:
    """One process serves its own counters: statuses (rejected requests too), the histogram,
    open connections and requests in flight."""
    metrics_port = free_port()
    server = Wherry(["tests.apps:ops", "--metrics-bind", f"127.0.0.1:{metrics_port}"], tmp_path)
    servers.append(server)
    server.wait_serving()
    for _ in range(4):
        httpx.get(server.url + "/")
    with socket.create_connection(("127.0.0.1", server.port)) as bad:
        bad.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        assert read_response(bad)[0] == 400
    with (
        socket.create_connection(("127.0.0.1", server.port)) as idle,
        socket.create_connection(("127.0.0.1", server.port)) as busy,
    ):
        busy.sendall(f"GET /slow?delay=0.6&mark={tmp_path}/in HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until((tmp_path / "in").exists, what="the slow request")
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle)[0] == 200
        text = scrape(metrics_port).text
        assert sample(text, "wherry_requests_total", 'status="200"') == 6  # wait_serving's and idle's
        assert sample(text, "wherry_requests_total", 'status="400"') == 1
        assert sample(text, "wherry_request_duration_seconds_count") == 6
        assert sample(text, "wherry_request_duration_seconds_bucket", 'le="+Inf"') == 6
        assert sample(text, "wherry_open_connections") == 2
        assert sample(text, "wherry_requests_in_flight") == 1
    response = scrape(metrics_port)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert scrape(metrics_port, "/healthz").status_code == 200
    assert scrape(metrics_port, "/readyz").status_code == 200
    assert scrape(metrics_port, "/nope").status_code == 404
    assert server.stop() == 0


def test_workers_metrics_per_worker_and_aggregated(servers: list[Wherry], tmp_path: Path) -> None:
    """With workers, each one's counters come with its pongs; the supervisor shows each worker
    and the sum, and the sum keeps the counts of workers that were replaced."""
    metrics_port = free_port()
    server = Wherry(
        [
            "tests.apps:ops",
            "--workers",
            "2",
            "--metrics-bind",
            f"127.0.0.1:{metrics_port}",
            "--no-access-log",
        ],
        tmp_path,
    )
    servers.append(server)
    server.wait_serving()
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    seen: set[str] = set()
    while len(seen) < 2:
        with httpx.Client() as client:  # a new connection each time, to reach both workers
            seen.add(client.get(server.url).text)
    total_sent = None

    def per_worker_sum() -> bool:
        nonlocal total_sent
        text = scrape(metrics_port).text
        per_worker = [
            sample(text, "wherry_worker_requests_total", f'worker="{pid}",status="200"') for pid in seen
        ]
        aggregate = sample(text, "wherry_requests_total", 'status="200"')
        if None in per_worker or aggregate is None:
            return False
        total_sent = aggregate
        return sum(per_worker) == aggregate  # type: ignore[arg-type]

    wait_until(per_worker_sum, what="both workers in the metrics")
    assert sample(scrape(metrics_port).text, "wherry_workers") == 2
    server.signal(signal.SIGHUP)
    wait_until(lambda: not (server.workers() & {int(p) for p in seen}), what="replaced workers")
    text = scrape(metrics_port).text
    assert (sample(text, "wherry_requests_total", 'status="200"') or 0) >= (total_sent or 0)
    assert (sample(text, "wherry_worker_restarts_total") or 0) >= 2
    assert server.stop() == 0


def test_render_is_cumulative_prometheus_text() -> None:
    """Histogram buckets are cumulative up to +Inf, which equals _count; statuses are labels."""
    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 20.0):
        metrics.observe(200, seconds)
    metrics.rejected(400)
    text = render([metrics.snapshot(3, 1)])
    assert sample(text, "wherry_requests_total", 'status="200"') == 4
    assert sample(text, "wherry_requests_total", 'status="400"') == 1
    assert sample(text, "wherry_request_duration_seconds_bucket", 'le="0.001"') == 1
    assert sample(text, "wherry_request_duration_seconds_bucket", 'le="0.005"') == 3
    assert sample(text, "wherry_request_duration_seconds_bucket", 'le="10.0"') == 3
    assert sample(text, "wherry_request_duration_seconds_bucket", 'le="+Inf"') == 4
    assert sample(text, "wherry_request_duration_seconds_count") == 4
    assert sample(text, "wherry_request_duration_seconds_sum") == pytest.approx(20.0065)
    assert sample(text, "wherry_open_connections") == 3
    assert "# TYPE wherry_request_duration_seconds histogram" in text


def test_latency_buckets_are_defined_once() -> None:
    """The exporter labels the buckets the workers count with the very same bounds (one definition,
    in wherry/metrics.py, with the counters)."""
    # Both names are imported there, not re-exported: what is checked is that they are the same object.
    assert exporter.LATENCY_BUCKETS is home.LATENCY_BUCKETS  # type: ignore[attr-defined]
    assert observe.Metrics is home.Metrics  # type: ignore[attr-defined]
    assert (
        sample(render([Metrics().snapshot(0, 0)]), "wherry_request_duration_seconds_bucket", 'le="10.0"') == 0
    )


def test_no_per_request_work_when_access_log_and_metrics_are_off() -> None:
    """Both off: the driver neither times requests nor calls the observer (the check is one
    attribute read, decided at start)."""

    class Runtime:
        def time(self) -> float:
            return 0.0

    ctx = ServerContext(Config(access_log=False), None, Runtime())  # type: ignore[arg-type]
    assert ctx.access_log is False and ctx.metrics is None
    ctx = ServerContext(Config(access_log=False, metrics_bind="127.0.0.1:0"), None, Runtime())  # type: ignore[arg-type]
    assert ctx.access_log is True and ctx.metrics is not None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_address_in_use_is_a_clear_error(tmp_path: Path, workers: str) -> None:
    """A --metrics-bind address that cannot be bound stops the server with a message, exit 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "wherry",
                "tests.apps:ops",
                "--port",
                "0",
                "--workers",
                workers,
                "--metrics-bind",
                address,
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot bind the metrics address {address}".encode() in result.stderr


def test_every_protocol_is_counted(servers: list[Wherry], tmp_path: Path) -> None:
    """HTTP/2 requests and WebSockets (over HTTP/1.1 and HTTP/2) are counted as HTTP/1.1 requests are."""
    from tests.e2e.test_h2_websocket import WSClient
    from tests.wsframes import close_frame, open_websocket, read_until_closed

    metrics_port = free_port()
    server = Wherry(["tests.apps:ws_echo", "--metrics-bind", f"127.0.0.1:{metrics_port}"], tmp_path)
    servers.append(server)
    server.wait_serving()  # one HTTP/1.1 request
    with httpx.Client(http1=False, http2=True) as client:
        for index in range(5):
            response = client.get(f"{server.url}/h2/{index}")
            assert response.http_version == "HTTP/2" and response.status_code == 200
    assert httpx.get(server.url + "/h1").status_code == 200
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        open_websocket(sock, "/ws")
        sock.sendall(close_frame(1000))
        read_until_closed(sock)
    with WSClient("127.0.0.1", server.port) as h2:
        sid = h2.open(b"/h2ws")
        assert h2.opened(sid).status == 200
        h2.send(sid, close_frame(1000))
        assert h2.ended(sid).ended

    def counts() -> tuple[float | None, ...]:
        text = scrape(metrics_port).text
        return tuple(
            sample(text, name, labels)
            for name, labels in (
                ("wherry_requests_total", 'status="200"'),
                ("wherry_requests_total", 'status="101"'),
                ("wherry_request_duration_seconds_count", ""),
            )
        )

    expected = (8, 1, 9)  # 200: 2 HTTP/1.1, 5 HTTP/2 and the HTTP/2 WebSocket; 101: the other
    with contextlib.suppress(AssertionError):
        wait_until(lambda: counts() == expected, 5, "every request in the metrics")
    assert counts() == expected
    assert server.stop() == 0


def test_a_probe_that_hangs_up_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A client that resets the connection before its answer is written (HAProxy's health checks
    do) leaves no traceback, and the endpoint goes on answering."""
    import struct
    import threading

    asked = threading.Event()
    gone = threading.Event()

    def metrics() -> str:
        asked.set()
        gone.wait(10)  # the answer is written only once the client has reset the connection
        return "x" * 65536

    server = exporter.Exporter(f"127.0.0.1:{free_port()}", metrics, lambda: True)
    server.start()
    try:
        port = int(server.address[1])
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert asked.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset
        gone.set()
        assert scrape(port, "/healthz").text == "ok\n"  # answered after the failed write
    finally:
        server.stop()
    assert "Traceback" not in capsys.readouterr().err
