"""The servers under test, each declared once: how to start it and what it can serve.

Every server runs one worker process with access logs off and a backlog of 16,384, so that
the 10,000 connections of ``c10k`` are admitted by all of them. The harness pins each one to
one CPU with ``taskset``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.scenarios import Scenario

BACKLOG = 16_384
REFERENCE = "uvicorn"
"""Ratios in the report are to this server."""
CEILING_APP = "ceiling_app"
"""The in-process ceiling: not a server, but selected with --servers like one."""


@dataclass(frozen=True)
class Launch:
    """What a server command line is built from."""

    python: Path
    """The virtualenv's interpreter; console scripts live next to it."""
    app: str
    """Import string, e.g. ``bench.apps:hello``."""
    host: str
    port: int
    backlog: int = BACKLOG
    websocket: bool = False
    """The scenario speaks WebSocket: servers that can turn it off keep it on."""

    def script(self, name: str) -> str:
        return str(self.python.parent / name)


Kind = Literal["subject", "peer", "ceiling"]


@dataclass(frozen=True)
class Server:
    name: str
    kind: Kind
    command: Callable[[Launch], list[str]]
    package: str | None
    """Distribution whose version is reported (None for the harness's own ceilings)."""
    apps: frozenset[str] | None = None
    """App keys (see ``bench.scenarios.APPS``) it can serve; None means any."""
    notes: str = ""

    def supports(self, scenario: Scenario) -> bool:
        return self.apps is None or scenario.app in self.apps


def _wherry(run: Launch) -> list[str]:
    return [
        str(run.python), "-m", "wherry", run.app,
        "--host", run.host, "--port", str(run.port),
        "--no-access-log", "--log-level", "warning", "--lifespan", "on",
        "--backlog", str(run.backlog),
    ]  # fmt: skip


def _uvicorn(run: Launch) -> list[str]:
    return [
        run.script("uvicorn"), run.app,
        "--host", run.host, "--port", str(run.port),
        "--no-access-log", "--log-level", "warning",
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
        "--backlog", str(run.backlog),
    ]  # fmt: skip


def _granian(run: Launch) -> list[str]:
    return [
        run.script("granian"), "--interface", "asgi",
        "--host", run.host, "--port", str(run.port),
        "--workers", "1", "--runtime-threads", "1", "--runtime-mode", "st",
        *([] if run.websocket else ["--no-ws"]),
        "--http", "1", "--loop", "uvloop", "--log-level", "warning",
        "--backlog", str(run.backlog), "--backpressure", str(run.backlog),
        run.app,
    ]  # fmt: skip


def _hypercorn(run: Launch) -> list[str]:
    return [
        run.script("hypercorn"), "-k", "uvloop", "-w", "1",
        "-b", f"{run.host}:{run.port}", "--log-level", "warning",
        "--backlog", str(run.backlog),
        run.app,
    ]  # fmt: skip


def _daphne(run: Launch) -> list[str]:
    # The endpoint string is the only way to give daphne a backlog.
    endpoint = f"tcp:port={run.port}:interface={run.host}:backlog={run.backlog}"
    return [run.script("daphne"), "-e", endpoint, "-v", "0", run.app]


def _ceiling(mode: str) -> Callable[[Launch], list[str]]:
    def command(run: Launch) -> list[str]:
        return [
            str(run.python), "-m", "bench.ceiling", "serve", "--mode", mode,
            "--app", run.app, "--host", run.host, "--port", str(run.port),
            "--backlog", str(run.backlog),
        ]  # fmt: skip

    return command


SERVERS: tuple[Server, ...] = (
    Server("wherry", "subject", _wherry, "wherry", notes="this server; uvloop when installed"),
    Server("uvicorn", "peer", _uvicorn, "uvicorn", notes="uvloop + httptools"),
    Server(
        "granian",
        "peer",
        _granian,
        "granian",
        notes="Rust (hyper/tokio) server; single-threaded runtime, uvloop for the app",
    ),
    Server("hypercorn", "peer", _hypercorn, "hypercorn", notes="uvloop worker, h11"),
    Server("daphne", "peer", _daphne, "daphne", notes="Twisted on the stdlib asyncio loop"),
    Server(
        "ceiling_bare",
        "ceiling",
        _ceiling("bare"),
        None,
        apps=frozenset({"hello"}),
        notes="httptools + uvloop Protocol, fixed response bytes, no ASGI",
    ),
    Server(
        "ceiling_asgi",
        "ceiling",
        _ceiling("asgi"),
        None,
        apps=frozenset({"hello"}),
        notes="httptools + uvloop Protocol stepping the ASGI app's coroutine, one write",
    ),
)

SERVERS_BY_NAME: dict[str, Server] = {server.name: server for server in SERVERS}
ALL_NAMES: tuple[str, ...] = (*(server.name for server in SERVERS), CEILING_APP)
