"""In-process probe of Wherry's HTTP/1.1 request path: no sockets, no load generator.

A fake transport stands in for the socket; requests are fed to the connection driver's
``data_received`` exactly as the event loop would, on a real (uv)loop. It prints the CPU time per
request, and with ``--profile`` a cProfile listing. It is a tool for working on the hot path
(repeatable, quick, runs under ``valgrind --tool=callgrind`` for instruction counts); claims about
speed come from ``bench/run.py``, side by side with the other servers.

    python -m bench.probe                       # GET, 200k requests over 64 connections
    python -m bench.probe --post --profile      # POST with a 4-byte body, cProfile output
    python -m bench.probe --app bench.fastapi_app:app --target /json   # another app and route
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

from wherry.config import Config
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver
from wherry.importer import import_from_string

GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
POST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nContent-Length: 4\r\n"
    b"Content-Type: text/plain\r\n\r\nping"
)


class FakeTransport:
    """A ``wherry.contracts.Transport`` whose writes are counted and dropped."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def drive(
    requests: int,
    connections: int,
    payload: bytes | list[bytes],
    profile: bool,
    app: str = "bench.apps:hello",
) -> float:
    loop = asyncio.get_running_loop()
    config = Config(app=app, access_log=False)
    ctx = ServerContext(config, import_from_string(app), _runtime(loop))
    conns = []
    for _ in range(connections):
        conn = H1Driver(ctx)
        transport = FakeTransport()
        conn.connection_made(transport)
        conns.append((conn, transport))
    rounds = max(1, requests // connections)
    profiler = cProfile.Profile() if profile else None

    def one_round() -> None:
        for conn, _transport in conns:
            if isinstance(payload, bytes):
                conn.data_received(payload)
            else:
                for piece in payload:
                    conn.data_received(piece)

    elapsed = await timed_rounds(rounds, one_round, profiler)
    written = sum(t.written for _c, t in conns)
    if written != rounds * connections:
        raise SystemExit(f"expected {rounds * connections} responses, got {written}")
    for conn, _transport in conns:
        conn.connection_lost(None)
    await asyncio.sleep(0)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return elapsed / (rounds * connections)


async def timed_rounds(
    rounds: int, one_round: Callable[[], None], profiler: cProfile.Profile | None, settle: int = 0
) -> float:
    """Call ``one_round`` ``rounds`` times, each from a loop callback of its own (as data_received
    is under a real socket; what a round wakes runs before the next, which is scheduled behind it),
    then let the loop turn ``settle`` times; the CPU time it all took (profiled when asked)."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    left = rounds

    def step() -> None:
        nonlocal left
        one_round()
        left -= 1
        if left:
            loop.call_soon(step)
        else:
            loop.call_soon(finished.set_result, None)

    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    loop.call_soon(step)
    await finished
    for _ in range(settle):
        await asyncio.sleep(0)
    if profiler is not None:
        profiler.disable()
    return time.process_time() - start


def upload_reads(size: int, read: int) -> list[bytes]:
    """A POST with a ``size``-byte body, cut into the pieces ``read`` bytes at a time gives."""
    whole = (b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n\r\n" % size) + b"x" * size
    return [whole[i : i + read] for i in range(0, len(whole), read)]


def _runtime(loop: asyncio.AbstractEventLoop) -> Any:
    from wherry.backends.asyncio.runtime import AsyncioRuntime

    return AsyncioRuntime(loop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--post", action="store_true", help="POST with a 4-byte body")
    parser.add_argument(
        "--upload", action="store_true", help="POST with a 1 MiB body, arriving in 64 KiB reads"
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile listing")
    parser.add_argument("--asyncio", action="store_true", help="the stdlib loop instead of uvloop")
    parser.add_argument("--app", default="bench.apps:hello", help="the ASGI app, module:attribute")
    parser.add_argument("--target", default="/", help="the request target of GET and POST")
    args = parser.parse_args(argv)
    request = POST if args.post else GET
    target = b" %s HTTP/1.1" % args.target.encode("ascii")
    payload: bytes | list[bytes] = request.replace(b" / HTTP/1.1", target, 1)
    if args.upload:
        payload = upload_reads(1 << 20, 1 << 16)
    coro = drive(args.requests, args.connections, payload, args.profile, args.app)
    if args.asyncio:
        per_request = asyncio.run(coro)
    else:
        import uvloop

        per_request = uvloop.run(coro)
    print(f"{per_request * 1e6:.2f} us/request (Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
