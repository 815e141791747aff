"""CPU time per request inside one Wherry process, for a bare app, the same app behind the
dispatch of ``--mount``/``--route``, and the same app reached as ``--fallback`` after a 404.

No sockets and no load generator: requests are fed to the HTTP/1.1 connection driver
(``H1Driver.data_received``) through a transport that only counts bytes, on the running event
loop, so the numbers do not move with what else runs on the machine as much as wrk's do. Each
variant runs ``--rounds`` rounds of ``--requests`` requests, in turns; the best round is reported.

    .venv/bin/python -m bench.dispatch_probe [--loop uvloop] [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.apps import hello, not_found
from wherry import Config
from wherry.backends.asyncio.runtime import AsyncioRuntime
from wherry.compose import from_config
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver

GET = b"GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: probe\r\nAccept: */*\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nHost: bench\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\nbody"


class CountingTransport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None: ...


def variants() -> dict[str, Any]:
    options = {"access_log": False}
    other = "bench.apps:not_found"
    mounted = Config(
        mount=["/=bench.apps:hello", f"/admin={other}", f"/static={other}", f"/api/v1={other}"],
        route=[f"POST /orders={other}"],
        **options,
    )
    fallback = Config(app="bench.apps:not_found", fallback="bench.apps:hello", **options)
    return {
        "bare": (hello, Config(**options)),
        "mounted": (from_config(None, mounted), mounted),
        "fallback": (from_config(not_found, fallback), fallback),
    }


async def measure(request: bytes, count: int, rounds: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    best: dict[str, float] = {}
    setups = variants()
    for _ in range(rounds):
        for name, (app, config) in setups.items():
            ctx = ServerContext(config, app, AsyncioRuntime(loop))
            conn = H1Driver(ctx)
            transport = CountingTransport()
            conn.connection_made(transport)
            for _ in range(200):  # warm
                conn.data_received(request)
                await asyncio.sleep(0)
            start = time.process_time()
            for _ in range(count):
                conn.data_received(request)
                if conn._current is not None:  # on 3.11 the app runs one loop iteration later
                    await asyncio.sleep(0)
            elapsed = time.process_time() - start
            assert transport.written > 0
            per = elapsed / count * 1e6
            best[name] = min(best.get(name, per), per)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    for label, request in (("GET", GET), ("POST 4 B", POST)):
        with asyncio.Runner(loop_factory=new_loop) as runner:
            best = runner.run(measure(request, args.requests, args.rounds))
        bare = best["bare"]
        print(
            f"{label:8} bare {bare:6.2f} us | mounted {best['mounted']:6.2f} us "
            f"(+{best['mounted'] - bare:.2f}, {best['mounted'] / bare - 1:+.1%}) | fallback "
            f"{best['fallback']:6.2f} us (+{best['fallback'] - bare:.2f}, {best['fallback'] / bare - 1:+.1%})"
        )


if __name__ == "__main__":
    main()
