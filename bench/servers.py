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

from bench.scenarios import APPS, Scenario

BACKLOG = 16_384
REFERENCE = "uvicorn"
"""The peer the project measures itself against."""
REFERENCES: tuple[str, ...] = (REFERENCE, "uvicorn_zttp")
"""uvicorn's configurations: in each scenario the report's ratios are to the fastest of them
that ran there."""
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
    protocol: str = "h1"
    """The scenario's protocol: ``h1``, ``h2c`` or ``https``."""
    certfile: str = ""
    keyfile: str = ""
    """The certificate and key for ``https``."""

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
    default: bool = True
    """In the default set; the others run only when named with ``--servers``."""
    protocols: frozenset[str] = frozenset({"h1"})
    """Protocols it serves in the benchmark (see ``Scenario.protocol``)."""

    def supports(self, scenario: Scenario) -> bool:
        return (self.apps is None or scenario.app in self.apps) and scenario.protocol in self.protocols


NOT_ASYNCIO_APPS = frozenset(APPS) - {"db"}
"""What a server on trio can serve: asyncpg (the ``db`` app) needs asyncio."""


def _wherry(run: Launch) -> list[str]:
    tls = ["--ssl-certfile", run.certfile, "--ssl-keyfile", run.keyfile] if run.protocol == "https" else []
    return [
        str(run.python), "-m", "wherry", run.app,
        "--host", run.host, "--port", str(run.port),
        "--no-access-log", "--log-level", "warning", "--lifespan", "on",
        "--backlog", str(run.backlog), *tls,
    ]  # fmt: skip


def _wherry_trio(run: Launch) -> list[str]:
    """Wherry on its trio backend: the same drivers, trio streams and nurseries below them."""
    return [*_wherry(run), "--loop", "trio"]


def _wherry_mounted(run: Launch) -> list[str]:
    """Wherry with the scenario's app mounted at / among three other mounts and a method route:
    every request goes through the dispatch of ``--mount``/``--route``."""
    other = "bench.apps:not_found"
    command = _wherry(run)
    command.remove(run.app)
    return [
        *command,
        "--mount", f"/={run.app}", "--mount", f"/admin={other}", "--mount", f"/static={other}",
        "--mount", f"/api/v1={other}", "--route", f"POST /orders={other}",
    ]  # fmt: skip


def _wherry_fallback(run: Launch) -> list[str]:
    """Wherry whose default app answers every request 404, and the scenario's app as
    ``--fallback``: every request is a fallback hop (the body, if any, replayed)."""
    command = _wherry(run)
    command[command.index(run.app)] = "bench.apps:not_found"
    return [*command, "--fallback", run.app]


def _uvicorn(run: Launch) -> list[str]:
    return [
        run.script("uvicorn"), run.app,
        "--host", run.host, "--port", str(run.port),
        "--no-access-log", "--log-level", "warning",
        "--loop", "uvloop", "--http", "httptools", "--lifespan", "on",
        "--backlog", str(run.backlog),
        *(["--ssl-certfile", run.certfile, "--ssl-keyfile", run.keyfile] if run.protocol == "https" else []),
    ]  # fmt: skip


def _uvicorn_zttp(run: Launch) -> list[str]:
    command = _uvicorn(run)
    command[command.index("httptools")] = "zttp"
    return command


def _granian(run: Launch) -> list[str]:
    return [
        run.script("granian"), "--interface", "asgi",
        "--host", run.host, "--port", str(run.port),
        "--workers", "1", "--runtime-threads", "1", "--runtime-mode", "st",
        *([] if run.websocket else ["--no-ws"]),
        "--http", "auto" if run.protocol == "h2c" else "1",
        "--loop", "uvloop", "--log-level", "warning",
        "--backlog", str(run.backlog), "--backpressure", str(run.backlog),
        *(["--ssl-certificate", run.certfile, "--ssl-keyfile", run.keyfile] if run.protocol == "https"
          else []),
        run.app,
    ]  # fmt: skip


def _hypercorn(run: Launch) -> list[str]:
    return [
        run.script("hypercorn"), "-k", "uvloop", "-w", "1",
        "-b", f"{run.host}:{run.port}", "--log-level", "warning",
        "--backlog", str(run.backlog),
        *(["--certfile", run.certfile, "--keyfile", run.keyfile] if run.protocol == "https" else []),
        run.app,
    ]  # fmt: skip


def _hypercorn_trio(run: Launch) -> list[str]:
    command = _hypercorn(run)
    command[command.index("uvloop")] = "trio"
    return command


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
    Server(
        "wherry",
        "subject",
        _wherry,
        "wherry",
        notes="this server; uvloop when installed",
        protocols=frozenset({"h1", "h2c", "https"}),
    ),
    Server(
        "wherry_trio",
        "subject",
        _wherry_trio,
        "wherry",
        notes="wherry --loop trio",
        default=False,
        apps=NOT_ASYNCIO_APPS,
        protocols=frozenset({"h1", "h2c", "https"}),
    ),
    Server(
        "wherry_mounted",
        "subject",
        _wherry_mounted,
        "wherry",
        notes="wherry, the app behind --mount/--route dispatch (4 mounts, 1 route)",
        default=False,
    ),
    Server(
        "wherry_fallback",
        "subject",
        _wherry_fallback,
        "wherry",
        notes="wherry, the app reached as --fallback after a 404 from the default app",
        default=False,
    ),
    Server(
        "uvicorn",
        "peer",
        _uvicorn,
        "uvicorn",
        notes="uvloop + httptools",
        protocols=frozenset({"h1", "https"}),
    ),
    Server(
        "uvicorn_zttp",
        "peer",
        _uvicorn_zttp,
        "uvicorn",
        notes="uvloop + zttp (--http zttp)",
        protocols=frozenset({"h1", "https"}),
    ),
    Server(
        "granian",
        "peer",
        _granian,
        "granian",
        notes="Rust (hyper/tokio) server; single-threaded runtime, uvloop for the app",
        protocols=frozenset({"h1", "h2c", "https"}),
    ),
    Server(
        "hypercorn",
        "peer",
        _hypercorn,
        "hypercorn",
        notes="uvloop worker, h11 (h2 for HTTP/2)",
        protocols=frozenset({"h1", "h2c", "https"}),
    ),
    Server(
        "hypercorn_trio",
        "peer",
        _hypercorn_trio,
        "hypercorn",
        notes="hypercorn -k trio: its trio worker, h11 (h2 for HTTP/2)",
        default=False,
        apps=NOT_ASYNCIO_APPS,
        protocols=frozenset({"h1", "h2c", "https"}),
    ),
    Server("daphne", "peer", _daphne, "daphne", notes="Twisted on the stdlib asyncio loop"),
    Server(
        "ceiling_bare",
        "ceiling",
        _ceiling("bare"),
        None,
        apps=frozenset({"hello", "wsecho"}),
        notes="httptools + uvloop Protocol, fixed response bytes, no ASGI",
    ),
    Server(
        "ceiling_asgi",
        "ceiling",
        _ceiling("asgi"),
        None,
        apps=frozenset({"hello", "wsecho"}),
        notes="httptools + uvloop Protocol stepping the ASGI app's coroutine, one write",
    ),
)

SERVERS_BY_NAME: dict[str, Server] = {server.name: server for server in SERVERS}
ALL_NAMES: tuple[str, ...] = (*(server.name for server in SERVERS), CEILING_APP)
DEFAULT_NAMES: tuple[str, ...] = (*(server.name for server in SERVERS if server.default), CEILING_APP)
"""What runs when --servers is not given."""
