"""The demo application served by the README: an HTML page, JSON, a stream and an echo POST.

Plain ASGI, no framework: ``wherry examples.demo:app``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Wherry demo</title></head>
<body>
<h1>Wherry is carrying this page</h1>
<ul>
  <li><a href="/json">/json</a>: a JSON document</li>
  <li><a href="/stream">/stream</a>: a streamed response, one line every 100 ms</li>
  <li>POST to <code>/echo</code>: the body comes back as it was sent</li>
</ul>
<form method="post" action="/echo"><input name="message" value="hello"><button>Echo</button></form>
</body>
</html>
"""


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
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await _read_body(receive)
        await _respond(send, 200, b"text/html; charset=utf-8", PAGE)
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
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/echo" and method == "POST":
        body = await _read_body(receive)
        content_type = b"application/octet-stream"
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
        await _respond(send, 200, content_type, body)
    else:
        await _read_body(receive)
        await _respond(send, 404, b"text/plain; charset=utf-8", b"Not Found\n")
