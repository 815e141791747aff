"""The demo application served by the README: an HTML page, JSON, a stream, an echo POST and a
WebSocket chat page.

Plain ASGI, no framework: ``wherry examples.demo:app``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sniffio

PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Wherry demo</title></head>
<body>
<h1>Wherry is carrying this page</h1>
<ul>
  <li><a href="/json">/json</a>: a JSON document</li>
  <li><a href="/stream">/stream</a>: a streamed response, one line every 100 ms (read live below)</li>
  <li>POST to <code>/echo</code>: the body comes back as it was sent, as text</li>
  <li><a href="/chat">/chat</a>: a page that talks to the server over a WebSocket (<code>/ws</code>)</li>
  <li><a href="http://127.0.0.1:9100/metrics">metrics</a> (Prometheus) and
    <a href="http://127.0.0.1:9100/healthz">/healthz</a> (<code>scripts/dev.py demo</code> serves
    them with <code>--metrics-bind 127.0.0.1:9100</code>)</li>
</ul>
<form method="post" action="/echo"><input name="message" value="hello"><button>Echo</button></form>
<h2>Streaming</h2>
<button id="stream">Read /stream</button>
<pre id="lines"></pre>
<script>
document.getElementById("stream").onclick = async () => {
  const out = document.getElementById("lines");
  out.textContent = "";
  const reader = (await fetch("/stream")).body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out.textContent += value;  // each line shows as it arrives
  }
};
</script>
</body>
</html>
"""


CHAT_PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Wherry WebSocket demo</title></head>
<body>
<h1>WebSocket</h1>
<p id="status">connecting</p>
<form id="form"><input id="text" value="hello"><button>Send</button></form>
<ol id="log"></ol>
<script>
const log = (text) => {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").appendChild(item);
};
const status = document.getElementById("status");
const scheme = location.protocol === "https:" ? "wss" : "ws";  // over HTTPS, also HTTP/2
const socket = new WebSocket(`${scheme}://${location.host}/ws`, ["demo"]);
socket.binaryType = "arraybuffer";
// The page says hello, sends a large text and a few bytes, then waits for the answers.
const expected = 3;
let answers = 0;
window.chatDone = new Promise((resolve) => {
  socket.onopen = () => {
    status.textContent = `open (${socket.protocol}; ${socket.extensions || "no extensions"})`;
    socket.send("hello from the browser");
    socket.send("wherry ".repeat(20000));
    socket.send(new Uint8Array([1, 2, 3, 250]));
  };
  socket.onmessage = (event) => {
    if (typeof event.data === "string") {
      log(event.data.length > 100 ? `text of ${event.data.length} characters` : event.data);
    } else {
      log(`bytes ${Array.from(new Uint8Array(event.data)).join(",")}`);
    }
    answers += 1;
    if (answers === expected) {
      status.textContent = "done";
      resolve();
    }
  };
  socket.onclose = (event) => { log(`closed ${event.code}`); resolve(); };
});
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  socket.send(document.getElementById("text").value);
};
</script>
</body>
</html>
"""


async def chat(receive: Any, send: Any) -> None:
    """The WebSocket behind /chat: text comes back upper-cased, bytes reversed."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": "demo"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "server: " + message["text"].upper()})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _sleep(seconds: float) -> None:
    """Sleep on whichever loop serves the demo (it also runs with --loop trio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


async def _respond(send: Any, status: int, content_type: bytes, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        if scope["path"] == "/ws":
            await chat(receive, send)
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
        return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await _read_body(receive)
        await _respond(send, 200, b"text/html; charset=utf-8", PAGE)
    elif path == "/chat" and method in ("GET", "HEAD"):
        await _read_body(receive)
        await _respond(send, 200, b"text/html; charset=utf-8", CHAT_PAGE)
    elif path == "/json":
        await _read_body(receive)
        document = {
            "message": "Hello from Wherry",
            "method": method,
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "client": list(scope["client"]) if scope.get("client") else None,
            "http_version": scope["http_version"],
        }
        await _respond(send, 200, b"application/json", json.dumps(document).encode())
    elif path == "/stream":
        await _read_body(receive)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        for i in range(10):
            await send({"type": "http.response.body", "body": b"line %d\n" % i, "more_body": True})
            await _sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/echo" and method == "POST":
        # As text, whatever was sent: a form's body (application/x-www-form-urlencoded) answered
        # with its own content type is downloaded by browsers instead of shown.
        body = await _read_body(receive)
        await _respond(send, 200, b"text/plain; charset=utf-8", body)
    else:
        await _read_body(receive)
        await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")
