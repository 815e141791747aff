"""The scenarios: each is an app plus a load-tool setup, declared in one entry.

Adding a scenario is adding an entry to ``SCENARIOS``. A new load tool (h2load for HTTP/2,
a WebSocket client) is a new class in ``bench/loadgen.py`` registered in ``TOOLS`` and named
by ``Scenario.tool``; tool-specific arguments go in ``Scenario.extra``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.apps import DOWNLOAD_SIZE

MIB = 1024 * 1024

# App keys -> import strings, as every server takes them.
APPS: dict[str, str] = {
    "hello": "bench.apps:hello",
    "download": "bench.apps:download",
    "fastapi": "bench.fastapi_app:app",
    "wsecho": "bench.apps:ws_echo",
    "db": "bench.db_app:app",
}

Metric = Literal["rps", "upload", "download"]
Protocol = Literal["h1", "h2c", "https"]


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    """Key of ``APPS``."""
    description: str
    tool: str = "wrk"
    connections: int = 64
    threads: int = 1
    method: str = "GET"
    path: str = "/"
    body_size: int = 0
    """Request body size in bytes (0: no body)."""
    duration: int = 2
    """Seconds measured per repeat in the default set."""
    timeout: int = 2
    """A response slower than this many seconds counts as a timeout (wrk leaves it out of the
    latency percentiles)."""
    metric: Metric = "rps"
    """``upload``/``download`` also report payload throughput (MB/s)."""
    payload: int = 0
    """Payload bytes per request used for MB/s."""
    extra: tuple[str, ...] = ()
    """Extra arguments passed to the load tool as they are."""
    warmup_connections: int = 64
    """Connections used to warm up (capped by ``connections``): a warm-up heats the code
    paths; opening 10,000 connections is part of what ``c10k`` measures."""
    protocol: Protocol = "h1"
    """What the server must speak: plain HTTP/1.1, h2c (HTTP/2 by prior knowledge) or HTTP/1.1
    over TLS. Only servers that speak it run the scenario."""
    streams: int = 1
    """HTTP/2 streams in flight per connection (h2load ``-m``)."""
    close: bool = False
    """Every request on a new connection (``Connection: close``): with TLS, a handshake each."""
    pipeline: int = 1
    """HTTP/1.1 pipelining: requests written together on a connection before any answer is read
    (wrk's ``request()`` returns this many concatenated). wrk then records one latency per batch:
    the time from writing it to its last response."""
    max_latency_target_ms: float = 0
    """When set, the report flags a server whose slowest answer took longer than this."""
    database: bool = False
    """Needs the harness's PostgreSQL (``bench/postgres.py``); skipped when it is not installed."""

    @property
    def app_spec(self) -> str:
        return APPS[self.app]

    @property
    def setup(self) -> str:
        """One line describing the load, for tables and charts."""
        body = f", {_size(self.body_size)} body" if self.body_size else ""
        plural = "" if self.connections == 1 else "s"
        text = f"{self.method} {self.path}{body}, {self.connections:,} connection{plural}"
        if self.protocol == "h2c":
            text += f" x {self.streams} stream{'s' if self.streams > 1 else ''} (h2c)"
        elif self.protocol == "https":
            text += ", TLS" + (", a new connection per request" if self.close else "")
        if self.pipeline > 1:
            text += f", pipelined {self.pipeline} deep"
        return text


def _size(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB} MiB"
    return f"{size:,} B"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("get64", "hello", "GET, keep-alive, 64 connections.", duration=3),
    Scenario("post64", "hello", "POST with a 4-byte body, 64 connections.", method="POST", body_size=4),
    Scenario("get1", "hello", "GET on one connection: per-request latency.", connections=1, duration=3),
    Scenario(
        "c10k",
        "hello",
        "10,000 concurrent keep-alive connections, one wrk thread.",
        connections=10_000,
        duration=5,
        timeout=4,
    ),
    Scenario("fastapi", "fastapi", "FastAPI JSON route, 64 connections.", path="/json", duration=3),
    Scenario(
        "upload1m",
        "hello",
        "1 MiB POST bodies, read fully by the app, 16 connections.",
        method="POST",
        body_size=MIB,
        connections=16,
        metric="upload",
        payload=MIB,
    ),
    Scenario(
        "download1m",
        "download",
        "1 MiB response bodies, 16 connections.",
        connections=16,
        metric="download",
        payload=DOWNLOAD_SIZE,
    ),
)

# HTTP/2 and TLS: run by name (``--scenarios h2x10,h2x1,https64,tls_handshake``); their report
# is docs/benchmarks/http2.md. WebSocket likewise (``--scenarios ws64,ws1m``): docs/benchmarks/websocket.md.
# HTTP/1.1 pipelining too (``--scenarios pipeline16``), and the database pair
# (``--scenarios dbquery,dbpage``), which needs PostgreSQL.
EXTRA_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "pipeline16",
        "hello",
        "HTTP/1.1 pipelining: 16 requests written at once on each of 256 connections. "
        "The target: no request waits more than 1 s (see the max column).",
        connections=256,
        pipeline=16,
        duration=3,
        timeout=10,
        max_latency_target_ms=1000,
    ),
    Scenario(
        "dbquery",
        "db",
        "One row of a 10,000-row PostgreSQL table by a random id, as JSON (asyncpg pool of 16), "
        "64 connections.",
        path="/db",
        duration=3,
        database=True,
    ),
    Scenario(
        "dbpage",
        "db",
        "A jinja2 HTML page of 13 rows (12 from PostgreSQL, one added), sorted and escaped, 64 connections.",
        path="/fortunes",
        duration=3,
        database=True,
    ),
    Scenario(
        "h2x10",
        "hello",
        "HTTP/2 (h2c), 64 connections with 10 streams in flight each.",
        tool="h2load",
        protocol="h2c",
        streams=10,
        duration=3,
    ),
    Scenario(
        "h2x1",
        "hello",
        "HTTP/2 (h2c), 64 connections with 1 stream in flight each.",
        tool="h2load",
        protocol="h2c",
        streams=1,
        duration=3,
    ),
    Scenario(
        "https64",
        "hello",
        "HTTPS (HTTP/1.1 over TLS), keep-alive, 64 connections.",
        protocol="https",
        duration=3,
    ),
    Scenario(
        "tls_handshake",
        "hello",
        "A TLS handshake per request (Connection: close), 16 connections: handshakes per second.",
        protocol="https",
        close=True,
        connections=16,
        duration=3,
    ),
    Scenario(
        "ws64",
        "wsecho",
        "WebSocket echo of 32-byte text messages, 64 connections, one message in flight on each.",
        tool="wsload",
        duration=3,
        extra=("--size", "32"),
    ),
    Scenario(
        "ws1m",
        "wsecho",
        "WebSocket echo of 1 MiB binary messages, 8 connections.",
        tool="wsload",
        connections=8,
        duration=3,
        metric="download",
        payload=MIB,
        extra=("--size", str(MIB)),
    ),
)

SCENARIOS_BY_NAME: dict[str, Scenario] = {scenario.name: scenario for scenario in SCENARIOS + EXTRA_SCENARIOS}

# What --quick runs: one short point per server.
QUICK_SCENARIOS: tuple[str, ...] = ("get64",)
QUICK_DURATION = 2
QUICK_WARMUP = 1
