"""In-process probe of Wherry's WebSocket message path: no sockets, no load generator.

Each connection is upgraded through the real HTTP/1.1 driver, then fed one masked 32-byte text
frame per round, which ``bench.apps:ws_echo`` sends back, as ``ws64`` does over sockets. It
prints the CPU time per echoed message; under ``valgrind --tool=callgrind`` two runs of different
lengths give instructions per message. Claims about speed come from ``bench/run.py``.

    python -m bench.probe_ws                    # 200k messages over 64 connections
    python -m bench.probe_ws --profile          # with a cProfile listing
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from typing import Any

from bench.apps import ws_echo
from bench.probe import FakeTransport, _runtime, timed_rounds
from bench.wsload import client_frame
from wherry.config import Config
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class UpgradableTransport(FakeTransport):
    """A fake transport that remembers the protocol the driver hands it over to."""

    def __init__(self) -> None:
        super().__init__()
        self.protocol: Any = None

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


async def drive(messages: int, connections: int, size: int, profile: bool) -> float:
    loop = asyncio.get_running_loop()
    config = Config(app="bench.apps:ws_echo", access_log=False)
    ctx = ServerContext(config, ws_echo, _runtime(loop))
    conns = []
    for _ in range(connections):
        driver = H1Driver(ctx)
        transport = UpgradableTransport()
        driver.connection_made(transport)
        driver.data_received(UPGRADE)
        conns.append(transport)
    for _ in range(10):
        await asyncio.sleep(0)
    if any(t.protocol is None or t.written != 1 for t in conns):
        raise SystemExit("the upgrade was not answered on every connection")
    frame = client_frame(b"x" * size, text=True)
    rounds = max(1, messages // connections)
    profiler = cProfile.Profile() if profile else None

    def one_round() -> None:
        for transport in conns:
            transport.protocol.data_received(frame)

    # The echoes of the last round are written within the turns that follow it.
    elapsed = await timed_rounds(rounds, one_round, profiler, settle=10)
    written = sum(t.written for t in conns) - connections
    if written != rounds * connections:
        raise SystemExit(f"expected {rounds * connections} echoes, got {written}")
    for transport in conns:
        transport.protocol.connection_lost(None)
    for _ in range(10):
        await asyncio.sleep(0)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return elapsed / (rounds * connections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_ws", description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--size", type=int, default=32, help="bytes per text message")
    parser.add_argument("--profile", action="store_true", help="print a cProfile listing")
    parser.add_argument("--asyncio", action="store_true", help="the stdlib loop instead of uvloop")
    args = parser.parse_args(argv)
    coro = drive(args.messages, args.connections, args.size, args.profile)
    if args.asyncio:
        per_message = asyncio.run(coro)
    else:
        import uvloop

        per_message = uvloop.run(coro)
    print(f"{per_message * 1e6:.2f} us/message (Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
