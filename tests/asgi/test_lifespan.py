"""The ASGI lifespan protocol (lifespan spec 2.0): startup before serving, failures, modes and
shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import select
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer, read_response, run_server
from tests.e2e.test_cli import CLI_APP, WherryProcess, clean_environ, run_cli
from wherry import Server
from wherry.asgi.lifespan import LifespanFailure

Serve = Callable[..., RunningServer]

WAIT = 5.0


def answer(scope: Any) -> bytes:
    return b"ok" if "state" not in scope else b"ok, with state"


class Recorder:
    """An app that records the scope types it is called with, and answers HTTP with 'ok'."""

    def __init__(self) -> None:
        self.types: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.types.append(scope["type"])
        if scope["type"] != "http":
            raise RuntimeError(f"unsupported scope type {scope['type']!r}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer(scope)})


async def returns_on_lifespan(scope: Any, receive: Any, send: Any) -> None:
    """Ignores every scope but http, by returning."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": answer(scope)})


async def raises_after_reading_startup(scope: Any, receive: Any, send: Any) -> None:
    """Speaks lifespan, and its startup crashes."""
    if scope["type"] == "lifespan":
        await receive()
        raise ConnectionRefusedError("database down")


async def fails_shutdown(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "could not flush the cache"})
        return
    await returns_on_lifespan(scope, receive, send)


def serve_once(app: Any, **options: Any) -> None:
    """Run a server to the end of its startup and stop it (or let startup raise)."""

    async def main() -> None:
        server = Server(app, host="127.0.0.1", port=0, access_log=False, **options)

        def started(_: Server) -> None:
            server.shutdown()

        await server.serve(on_started=started)

    asyncio.run(main())


# ---------------------------------------------------------------- startup before serving


def test_startup_completes_before_any_connection_is_served() -> None:
    """No request is served, and the server does not report itself started, until the app has
    answered lifespan.startup (lifespan spec: 'startup' before any connection)."""
    startup_began = threading.Event()
    gate = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            startup_began.set()
            await asyncio.to_thread(gate.wait, WAIT)
            scope["state"]["ready"] = True
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = json.dumps(scope["state"]).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    server = Server(app, access_log=False)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve([listener])), daemon=True)
    thread.start()
    try:
        assert startup_began.wait(WAIT)
        assert not server.started
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            readable, _, _ = select.select([sock], [], [], 0.2)
            assert not readable, "nothing is served during startup"
            assert not server.started
            gate.set()
            status, _, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"ready": True})
        assert server.started
    finally:
        gate.set()
        server.shutdown()
        thread.join(WAIT)
    assert not thread.is_alive()


def test_state_set_at_startup_reaches_every_request(serve: Serve) -> None:
    """What startup puts in scope['state'] is in every request's scope['state']."""
    app = apps.Lifespan()
    server = serve(app)
    for _ in range(2):
        assert httpx.get(server.url).json() == {"db": "connected"}


def test_shutdown_runs_when_the_server_stops(loop_name: str) -> None:
    """The app receives lifespan.shutdown after the server stopped serving (lifespan spec)."""
    app = apps.Lifespan()
    with run_server(app, loop_name) as server:
        assert httpx.get(server.url).status_code == 200
        assert app.events == ["lifespan.startup"]
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


# ---------------------------------------------------------------- failures and modes


def test_startup_failed_raises_with_the_apps_message() -> None:
    """lifespan.startup.failed stops the server from starting; the app's message is the error."""
    with pytest.raises(LifespanFailure, match="the database is unreachable"):
        serve_once(apps.failing_startup)


def test_startup_failure_exits_the_cli_with_status_3() -> None:
    """The CLI exits with status 3 and prints the app's message when startup fails."""
    result = run_cli("tests.apps:failing_startup", "--port", "0")
    assert result.returncode == 3, result.stderr
    assert "the database is unreachable" in result.stderr
    assert "Wherry running on" not in result.stderr


@pytest.mark.parametrize("app", [Recorder(), returns_on_lifespan])
def test_lifespan_on_requires_an_app_that_speaks_it(app: Any) -> None:
    """--lifespan on: an app that raises on, or ignores, the lifespan scope fails the startup."""
    with pytest.raises(LifespanFailure):
        serve_once(app, lifespan="on")


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_an_exception_during_startup_fails_in_every_mode(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """An app that read lifespan.startup and then raised does speak lifespan: its startup failed
    (even under 'auto'), and the traceback is logged."""
    with pytest.raises(LifespanFailure, match="database down"):
        serve_once(raises_after_reading_startup, lifespan=mode)
    assert any(r.name == "wherry.error" and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("app", [Recorder(), returns_on_lifespan])
def test_lifespan_auto_tolerates_an_app_without_lifespan(serve: Serve, app: Any) -> None:
    """--lifespan auto: an app that raises on or ignores the lifespan scope is served anyway, and
    its requests have no lifespan state."""
    server = serve(app, lifespan="auto")
    assert httpx.get(server.url).text == "ok"


def test_lifespan_off_never_calls_the_app_with_lifespan(loop_name: str) -> None:
    """--lifespan off: the app is never called with a lifespan scope, at startup or shutdown."""
    app = Recorder()
    with run_server(app, loop_name, lifespan="off") as server:
        assert httpx.get(server.url).text == "ok"
    assert app.types == ["http"]


def test_shutdown_failure_is_logged(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """lifespan.shutdown.failed is logged with the app's message; the server still stops."""
    with run_server(fails_shutdown, loop_name) as server:
        assert httpx.get(server.url).text == "ok, with state"
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("could not flush the cache" in m for m in messages)


# ---------------------------------------------------------------- shutdown on signals


@pytest.fixture
def cli_app_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "apps"
    directory.mkdir()
    (directory / "cliapp.py").write_text(CLI_APP)
    yield directory


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_runs_on_sigint_and_sigterm(cli_app_dir: Path, tmp_path: Path, sig: int) -> None:
    """SIGINT and SIGTERM make the CLI run the app's lifespan shutdown, then exit 0."""
    marker = tmp_path / "shutdown.marker"
    process = WherryProcess(
        ["cliapp:app", "--app-dir", str(cli_app_dir), "--port", "0"],
        env=clean_environ(SHUTDOWN_MARKER=str(marker)),
    )
    try:
        assert httpx.get(process.url()).status_code == 200
        assert not marker.exists()
        process.signal(sig)
        assert process.wait() == 0, process.text
        assert marker.read_text() == "shutdown complete"
    finally:
        process.stop()


HANGING_STARTUP = """
import asyncio
import sys


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        print("startup is waiting", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_server_whose_startup_hangs(tmp_path: Path, sig: int) -> None:
    """A signal during a startup that never completes stops the process: nothing is served, and
    the exit is clean (no traceback)."""
    (tmp_path / "hanging.py").write_text(HANGING_STARTUP)
    process = WherryProcess(["hanging:app", "--app-dir", str(tmp_path), "--port", "0"])
    try:
        process.wait_for(re.compile("startup is waiting"))
        process.signal(sig)
        assert process.wait() == 0, process.text
        assert "startup completed" in process.text
        assert "Wherry running on" not in process.text
        assert "Traceback" not in process.text
    finally:
        process.stop()
