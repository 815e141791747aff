"""A real browser on WebSocket over HTTP/2: headless Chromium loads a page over HTTPS (ALPN h2), and
the page opens a wss:// WebSocket, which Chromium carries as an RFC 8441 extended CONNECT on the
same HTTP/2 connection because the server advertised SETTINGS_ENABLE_CONNECT_PROTOCOL. The test
reads the page's DOM through the DevTools protocol, and the app says from the server side which
HTTP version carried the WebSocket."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.e2e.test_browser import CHROMIUM, FLAGS, devtools_port, evaluate, stop
from tests.h2util import Certs, make_certs

Serve = Callable[..., RunningServer]

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WebSocket over HTTP/2</title></head>
<body><p id="status">connecting</p><ol id="log"></ol>
<script>
const log = (text) => {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").appendChild(item);
};
window.exchange = new Promise((resolve) => {
  const socket = new WebSocket(`wss://${location.host}/ws`, ["echo"]);
  socket.binaryType = "arraybuffer";
  let answers = 0;
  socket.onopen = () => {
    log(`open ${socket.protocol} ${socket.extensions || "-"}`);
    socket.send("hello over h2");
    socket.send("x".repeat(200000));
    socket.send(new Uint8Array([1, 2, 3, 250]));
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      log(event.data.length > 100 ? `text of ${event.data.length}` : event.data);
    } else {
      log(`bytes ${Array.from(new Uint8Array(event.data)).join(",")}`);
    }
    if (++answers === 3) socket.close(1000, "thanks");
  };
  socket.onclose = (event) => {
    document.getElementById("status").textContent = `closed ${event.code} ${event.wasClean}`;
    resolve(document.body.outerHTML);
  };
});
</script></body></html>
"""

# Resolves with the page's body once its exchange is over; null while the document is not the
# page yet (the navigation from the first blank document has not happened).
READ_DOM = """
new Promise((loaded) => document.readyState === "complete" ? loaded() : addEventListener("load", loaded))
  .then(() => window.exchange || null)
"""


class App:
    """The page, and a WebSocket that echoes text (upper-cased, with the HTTP version that carries
    it) and bytes (reversed); what the server saw is kept for the test."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.done = threading.Event()  # the WebSocket's app call has returned

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
            )
            await send({"type": "http.response.body", "body": PAGE})
            return
        if scope["type"] != "websocket":
            return
        self.seen.append((scope["http_version"], scope["scheme"], scope["subprotocols"]))
        try:
            await self.echo(scope, receive, send)
        finally:
            self.done.set()

    async def echo(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept", "subprotocol": "echo"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.seen.append((message["code"], message["reason"]))
                return
            text = message.get("text")
            if text is not None:
                answer = text.upper() if len(text) < 100 else text
                await send({"type": "websocket.send", "text": f"HTTP/{scope['http_version']} {answer}"})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    if CHROMIUM is None:
        pytest.skip("chromium-headless-shell is not installed (scripts/dev.py installs it)")
    started: list[subprocess.Popen[bytes]] = []

    def launch(url: str) -> subprocess.Popen[bytes]:
        command = [
            CHROMIUM,
            *FLAGS,
            "--ignore-certificate-errors",
            f"--user-data-dir={tmp_path / 'profile'}",
            url,
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        started.append(process)
        return process

    yield launch
    for process in started:
        stop(process)  # the browser's whole process group (see test_browser.stop)


def test_browser_websocket_goes_over_http2(serve: Serve, certs: Certs, chromium: Any, tmp_path: Path) -> None:
    """RFC 8441 with a real client: Chromium opens its wss:// WebSocket as an extended CONNECT on
    the page's HTTP/2 connection (the app sees http_version "2"), negotiates the subprotocol and
    permessage-deflate, exchanges text (one of 200 KB: several windows' worth) and bytes both
    ways, and closes cleanly with its code and reason."""
    app = App()
    server = serve(app, lifespan="off", ssl_certfile=str(certs.server_file))
    process = chromium(f"https://localhost:{server.port}/")
    port = devtools_port(tmp_path / "profile", process)
    deadline = time.monotonic() + 30
    body: Any = None
    while time.monotonic() < deadline and not body:
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page"]
        if pages and pages[0]["url"].startswith("https://"):
            reply = evaluate(pages[0]["webSocketDebuggerUrl"], READ_DOM, timeout=30)
            body = reply.get("result", {}).get("result", {}).get("value")
        if not body:
            time.sleep(0.05)  # the navigation is still replacing the first document: ask again
    assert body, "the page never finished its exchange"
    assert "<li>open echo permessage-deflate" in body
    assert "<li>HTTP/2 HELLO OVER H2</li>" in body
    assert "<li>text of 200007</li>" in body
    assert "<li>bytes 250,3,2,1</li>" in body
    assert '<p id="status">closed 1000 true</p>' in body
    assert app.done.wait(10)
    assert app.seen == [("2", "wss", ["echo"]), (1000, "thanks")]
