"""A real browser: headless Chromium opens the demo's WebSocket page, and the test reads the page's
DOM through the DevTools protocol once the page's exchange is over."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from examples.demo import app as demo_app
from tests.conftest import RunningServer

Serve = Callable[..., RunningServer]

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
]

# Resolves with the page's body once its exchange is over (window.chatDone), after the load; with
# null if the document is not the demo's yet (the navigation has not replaced the first one).
READ_DOM = """
new Promise((loaded) => document.readyState === "complete" ? loaded() : addEventListener("load", loaded))
  .then(() => window.chatDone ? window.chatDone.then(() => document.body.outerHTML) : null)
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    if CHROMIUM is None:
        pytest.skip("chromium-headless-shell is not installed (scripts/dev.py installs it)")
    started: list[subprocess.Popen[bytes]] = []

    def launch(url: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield launch
    for process in started:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the browser and every process it made. Debian's ``chromium-headless-shell`` is a shell
    script that runs the browser as its child, so ending the script alone leaves the browser (and
    its inotify instances) behind: the browser starts in a session of its own, and its whole
    process group is killed (a throwaway profile needs no orderly exit)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def devtools_port(profile: Path, process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Chromium writes the port it listens on for DevTools into the profile once it is ready."""
    path = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text().split("\n")[0].strip()
            if text:
                return int(text)
        assert process.poll() is None, "chromium exited"
        time.sleep(0.05)
    raise AssertionError("chromium did not start its DevTools endpoint")


def evaluate(debugger_url: str, expression: str, timeout: float = 20.0) -> Any:
    with connect(debugger_url, max_size=None) as devtools:
        devtools.send(
            json.dumps(
                {
                    "id": 1,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "awaitPromise": True, "returnByValue": True},
                }
            )
        )
        while True:
            reply = json.loads(devtools.recv(timeout=timeout))
            if reply.get("id") == 1:
                return reply


def test_browser_talks_to_the_demo_over_a_websocket(serve: Serve, browser: Any, tmp_path: Path) -> None:
    """RFC 6455 with a real client: Chromium's WebSocket negotiates the subprotocol and
    permessage-deflate, and sends text, a 140 KB text and bytes that all come back."""
    server = serve(demo_app)
    process = browser(f"{server.url}/chat")
    port = devtools_port(tmp_path / "profile", process)
    deadline = time.monotonic() + 20
    reply: Any = None
    while time.monotonic() < deadline:
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        if pages and pages[0]["url"].endswith("/chat"):
            reply = evaluate(pages[0]["webSocketDebuggerUrl"], READ_DOM)
            if reply.get("result", {}).get("result", {}).get("value"):
                break  # else the navigation was still replacing the first document: ask again
        time.sleep(0.05)
    assert reply is not None, "the page never appeared"
    body = reply["result"]["result"]["value"]
    assert '<p id="status">done</p>' in body
    assert "<li>server: HELLO FROM THE BROWSER</li>" in body
    assert "<li>text of 140008 characters</li>" in body
    assert "<li>bytes 250,3,2,1</li>" in body
