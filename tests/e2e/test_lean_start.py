"""What a server that only speaks plain HTTP/1.1 loads: the HTTP/2, WebSocket, WSGI and metrics
code (and what they pull in: hpack, websockets, http.server for the metrics endpoint, email) is
imported when the first connection or app that needs it comes, so it costs such a server no memory.
Checked in a process started the way users start it (the CLI), after it has served a request."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.procs import free_port

LAZY = [
    "wherry.proto.http2",
    "wherry.connection.http2",
    "wherry.proto.websocket",
    "wherry.connection.websocket",
    "wherry.asgi.wsgi",
    "hpack",
    "websockets",
    "http.server",
    "email.utils",
]

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, threading, time, runpy, os

    port = int(sys.argv[1])
    lazy = json.loads(sys.argv[2])

    def check():
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    os._exit(3)
                time.sleep(0.02)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        loaded = [name for name in lazy if name in sys.modules]
        print(json.dumps({"status": reply[:12].decode(), "loaded": loaded}), flush=True)
        os._exit(0)

    threading.Thread(target=check, daemon=True).start()
    sys.argv = ["wherry", "tests.apps:hello", "--port", str(port), "--log-level", "warning"]
    runpy.run_module("wherry", run_name="__main__")
    """
)


def test_a_plain_http1_server_loads_no_http2_websocket_or_wsgi_code() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(free_port()), json.dumps(LAZY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "HTTP/1.1 200"
    assert result["loaded"] == []
