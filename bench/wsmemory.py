"""Memory per idle WebSocket connection: start a server, open N WebSockets that then say nothing,
and divide the growth of the server's resident memory by N.

    bench/.venv/bin/python -m bench.wsmemory [--connections 1000] [--servers wherry,uvicorn]

Each server is measured twice: with clients that do not offer compression, and with clients that
offer permessage-deflate (the server then keeps a compressor and a decompressor per connection).
The numbers go to the terminal; docs/discussion/websocket.md quotes them.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import time
from pathlib import Path

from bench import bootstrap
from bench.procs import ServerProcess, wait_ready
from bench.servers import SERVERS_BY_NAME, Launch

HOST = "127.0.0.1"


class NotNegotiated(RuntimeError):
    pass


def open_websockets(port: int, count: int, deflate: bool) -> list[socket.socket]:
    extra = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else b""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port))
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n%b\r\n" % (key, extra)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise RuntimeError(f"closed during the handshake: {head!r}")
            head += data
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"handshake refused: {head[:80]!r}")
        if deflate and b"permessage-deflate" not in head.lower():
            raise NotNegotiated("compression was not negotiated")
        socks.append(sock)
    return socks


def measure(name: str, python: Path, port: int, count: int, deflate: bool, workdir: Path) -> float:
    server = SERVERS_BY_NAME[name]
    launch = Launch(python=python, app="bench.apps:ws_echo", host=HOST, port=port, websocket=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(bootstrap.REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(python.parent), env.get("PATH", "")))
    proc = ServerProcess(
        name,
        server.command(launch),
        host=HOST,
        port=port,
        cwd=bootstrap.REPO_ROOT,
        env=env,
        log_path=workdir / f"wsmem-{name}.log",
        cpu=None,
    )
    try:
        failure = wait_ready([proc], 30)[name]
        if failure is not None:
            raise failure
        warm = open_websockets(port, 20, deflate)  # allocator and code paths warm
        for sock in warm:
            sock.close()
        time.sleep(0.5)
        before = proc.rss()[0]
        socks = open_websockets(port, count, deflate)
        time.sleep(1.0)
        after = proc.rss()[0]
        for sock in socks:
            sock.close()
        return (after - before) / count
    finally:
        proc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--servers", default="wherry,uvicorn,hypercorn,granian")
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args()
    workdir = Path("/tmp/wherry-wsmemory")
    workdir.mkdir(exist_ok=True)
    python = Path(sys.executable)
    print(f"{'server':<10} {'plain KiB/conn':>15} {'deflate KiB/conn':>17}")
    for name in args.servers.split(","):
        plain = measure(name, python, args.port, args.connections, False, workdir)
        try:
            compressed = f"{measure(name, python, args.port + 1, args.connections, True, workdir) / 1024:.1f}"
        except NotNegotiated:
            compressed = "not offered"
        print(f"{name:<10} {plain / 1024:>15.1f} {compressed:>17}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
