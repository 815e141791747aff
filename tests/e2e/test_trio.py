"""Serving on trio beyond the shared suite (which runs every behaviour test on asyncio, uvloop and
trio): trio apps, ``wherry.serve()`` awaited from ``trio.run``, and an application written for one
event loop served on the other (docs/discussion/backends.md)."""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import wherry
from tests.conftest import RunningServer, read_response, run_server

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0

TRIO_APP = """
import trio


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        async with trio.open_nursery():
            message = await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await trio.sleep(0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"trio"})
"""

ASYNCIO_APP = """
import asyncio


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(0)
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
"""


async def trio_app(scope: Any, receive: Any, send: Any) -> None:
    """A trio-only app: a nursery, trio.sleep, a cancel scope, the current trio task."""
    if scope["type"] != "http":
        return
    first = trio.lowlevel.current_task()
    results: list[str] = []
    async with trio.open_nursery() as nursery:

        async def child() -> None:
            await trio.sleep(0.001)
            results.append("child")

        nursery.start_soon(child)
    with trio.move_on_after(0.01) as moved:
        await trio.sleep(10)
    body = json.dumps(
        {
            "same_task": first is trio.lowlevel.current_task(),
            "results": results,
            "moved": moved.cancelled_caught,
        }
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_a_trio_app_runs_in_one_trio_task() -> None:
    """On --loop trio an app may use trio itself: nurseries, cancel scopes, and one task from its
    first line to its last."""
    server: RunningServer
    with run_server(trio_app, "trio", lifespan="off") as server, httpx.Client(base_url=server.url) as client:
        for _ in range(2):
            assert client.get("/").json() == {"same_task": True, "results": ["child"], "moved": True}


def test_serve_is_awaited_from_trio_run() -> None:
    """``await wherry.serve(app)`` inside ``trio.run`` serves until ``Server.shutdown()``, called
    here from another thread."""
    servers: list[wherry.Server] = []
    started = threading.Event()

    def on_started(server: wherry.Server) -> None:
        servers.append(server)
        started.set()

    async def main() -> None:
        await wherry.serve(trio_app, host="127.0.0.1", port=0, lifespan="off", on_started=on_started)

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(WAIT)
    server = servers[0]
    host, port = server.addresses[0]
    assert httpx.get(f"http://{host}:{port}/", timeout=WAIT).json()["same_task"] is True
    server.shutdown()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_wait_started_from_trio() -> None:
    """``Server.wait_started()`` is awaitable from trio, as from asyncio."""
    seen: list[Any] = []

    async def main() -> None:
        server = wherry.Server(trio_app, host="127.0.0.1", port=0, lifespan="off")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve)
            await server.wait_started()
            seen.append(server.addresses[0])
            host, port = server.addresses[0]
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
            seen.append(data.split(b"\r\n", 1)[0])
            await stream.aclose()
            server.shutdown()

    trio.run(main)
    assert seen[1] == b"HTTP/1.1 200 OK"


@pytest.mark.parametrize(
    ("source", "loop", "needed"),
    [(TRIO_APP, "asyncio", "trio"), (ASYNCIO_APP, "trio", "asyncio")],
    ids=["trio-app-on-asyncio", "asyncio-app-on-trio"],
)
def test_an_app_for_the_other_loop_fails_at_startup_with_a_clear_message(
    tmp_path: Path, source: str, loop: str, needed: str
) -> None:
    """An app that calls trio under --loop asyncio (or asyncio under --loop trio) stops the server
    at startup, exit status 3, with a message naming the loop it needs; also under the default
    --lifespan auto, where a failing lifespan would otherwise only mean "no lifespan"."""
    (tmp_path / "loopapp.py").write_text(source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wherry",
            "loopapp:app",
            "--app-dir",
            str(tmp_path),
            "--port",
            "0",
            "--loop",
            loop,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert f"the application runs on {needed}, not {loop}: serve it with --loop {needed}" in result.stderr


def test_a_trio_lifespan_runs_on_trio(tmp_path: Path) -> None:
    """The app that fails on asyncio above starts (its lifespan opens a nursery) and answers on
    trio: the lifespan driver is the same code on both loops."""
    (tmp_path / "loopapp.py").write_text(TRIO_APP)
    config = wherry.Config(app="loopapp:app", app_dir=str(tmp_path), port=0, host="127.0.0.1", lifespan="on")
    started = threading.Event()
    server = wherry.Server(config.app, config)
    thread = threading.Thread(
        target=trio.run,
        args=(functools.partial(server.serve, on_started=lambda _s: started.set()),),
        daemon=True,
    )
    thread.start()
    assert started.wait(WAIT)
    host, port = server.addresses[0]
    with socket.create_connection((host, port), timeout=WAIT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(sock)[::2] == (200, b"trio")
    server.shutdown()
    thread.join(WAIT)
    assert not thread.is_alive()
