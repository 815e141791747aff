"""In-process probe of Wherry's HTTP/2 request path: no sockets, no load generator.

Each connection is fed what h2load sends (``h2load -c 64 -m 10`` and ``-m 1`` in ``bench/``): the
client preface, its SETTINGS (header table 0... as h2load: ENABLE_PUSH 0, a 1 GiB stream window),
a WINDOW_UPDATE of the connection window, then GET requests whose header blocks are HPACK-encoded
as nghttp2 encodes them (the first one indexes ``:authority`` and ``user-agent``; the later ones are
five bytes of indexes), ``--streams`` requests per read, a new read once the previous requests are
answered. A fake transport stands in for the socket and keeps what is written; after the run the
responses are parsed back (hyperframe, hpack) and counted, so the probe fails if a response goes
missing.

It prints the CPU time per request and the number of writes per request; ``--profile`` adds a
cProfile listing, and ``--core`` measures the sans-IO core alone (``H2Connection``: the requests in,
the response HEADERS and DATA out, no driver, no ASGI, no app). It is a tool for working on the hot
path (repeatable, quick, runs under ``valgrind --tool=callgrind``); claims about speed come from
``bench/run.py``, side by side with the other servers.

    .venv/bin/python -m bench.probe_h2                    # 64 connections x 10 streams
    .venv/bin/python -m bench.probe_h2 --streams 1        # 64 connections x 1 stream
    .venv/bin/python -m bench.probe_h2 --core --profile   # the core alone, cProfile output

Each run is made ``--rounds`` times (3) and the best is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from typing import Any

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame, WindowUpdateFrame

from bench import probe
from bench.apps import hello
from wherry.config import Config
from wherry.connection.context import ServerContext
from wherry.connection.http2 import H2Driver

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [
    (b":method", b"GET"),
    (b":path", b"/"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8000"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
]


class ClientBytes:
    """What one h2load connection sends: ``opening()`` once, then ``requests(n)`` per read."""

    def __init__(self) -> None:
        self.encoder = Encoder()
        self.next_id = 1

    def opening(self) -> bytes:
        settings = SettingsFrame(0)
        settings.settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: 2**30 - 1}
        window = WindowUpdateFrame(0)
        window.window_increment = 2**30 - 65536
        return PREFACE + settings.serialize() + window.serialize()

    def requests(self, count: int) -> bytes:
        out = []
        for _ in range(count):
            frame = HeadersFrame(self.next_id)
            frame.flags.add("END_HEADERS")
            frame.flags.add("END_STREAM")
            frame.data = self.encoder.encode(REQUEST, huffman=True)
            out.append(frame.serialize())
            self.next_id += 2
        return b"".join(out)


class FakeTransport(probe.FakeTransport):
    """The HTTP/1.1 probe's transport, keeping what is written for counting afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


def count_responses(chunks: list[bytes]) -> int:
    """Parse what the server wrote, as the client would, and count the complete 200 responses."""
    data = b"".join(chunks)
    decoder = Decoder()
    done = 0
    offset = 0
    status: dict[int, bytes] = {}
    while offset < len(data):
        frame, length = Frame.parse_frame_header(memoryview(data[offset : offset + 9]))
        frame.parse_body(memoryview(data[offset + 9 : offset + 9 + length]))
        offset += 9 + length
        if isinstance(frame, HeadersFrame):
            status[frame.stream_id] = dict(decoder.decode(frame.data, raw=True))[b":status"]
        elif isinstance(frame, DataFrame) and "END_STREAM" in frame.flags:
            if status.pop(frame.stream_id, None) != b"200" or frame.data != b"Hello, world!":
                raise SystemExit(f"stream {frame.stream_id}: not the hello response")
            done += 1
    return done


async def drive(requests: int, connections: int, streams: int, profile: bool) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    config = Config(app="bench.apps:hello", access_log=False)
    ctx = ServerContext(config, hello, _runtime(loop))
    rounds = max(1, requests // (connections * streams))
    clients = [ClientBytes() for _ in range(connections)]
    # Made before the connections: the idle deadline runs from their first bytes.
    batches = [[client.requests(streams) for _ in range(rounds)] for client in clients]
    conns = []
    for client in clients:
        conn = H2Driver(ctx)
        transport = FakeTransport()
        conn.take_over(transport, client.opening(), None)
        conns.append((conn, transport, client))
    for _conn, transport, _client in conns:
        transport.chunks.clear()  # the server preface and SETTINGS ACK: not per request
    profiler = cProfile.Profile() if profile else None
    finished = loop.create_future()
    left = rounds
    start = time.process_time()
    if profiler is not None:
        profiler.enable()

    def one_round() -> None:
        # A loop callback, as data_received is under a real socket (not inside a task).
        nonlocal left
        index = rounds - left
        for (conn, _transport, _client), batch in zip(conns, batches, strict=True):
            conn.data_received(batch[index])
        left -= 1
        if left:
            loop.call_soon(one_round)
        else:
            loop.call_soon(lambda: finished.set_result(None))

    loop.call_soon(one_round)
    await finished
    await asyncio.sleep(0)
    if profiler is not None:
        profiler.disable()
    elapsed = time.process_time() - start
    total = rounds * connections * streams
    writes = sum(len(t.chunks) for _c, t, _k in conns)
    answered = sum(count_responses(t.chunks) for _c, t, _k in conns)
    if answered != total:
        raise SystemExit(f"expected {total} responses, got {answered}")
    for conn, _transport, _client in conns:
        conn.connection_lost(None)
    await asyncio.sleep(0)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return elapsed / total, writes / total


def core_only(requests: int, streams: int, profile: bool) -> float:
    """The sans-IO core alone: requests in, HEADERS and DATA out, on one connection."""
    from wherry.connection.http2 import default_pairs
    from wherry.proto.http2 import H2Connection, H2Limits

    ctx_headers = ServerContext(Config(app="bench.apps:hello", access_log=False), hello, None)  # type: ignore[arg-type]
    default = default_pairs(ctx_headers.default_headers)
    core = H2Connection(H2Limits(), 0.0)
    core.initiate()
    client = ClientBytes()
    core.receive_data(client.opening(), 0.0)
    core.data_to_send()
    rounds = max(1, requests // streams)
    batches = [client.requests(streams) for _ in range(rounds)]
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
    profiler = cProfile.Profile() if profile else None
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    out = 0
    for batch in batches:
        for event in core.receive_data(batch, 0.0):
            sid = getattr(event, "stream_id", 0)
            if type(event).__name__ == "Request":
                core.send_response(sid, 200, headers, default, False)
                core.send_data(sid, b"Hello, world!", True, 0.0)
                core.stream_done(sid, 0.0)
        out += len(core.data_to_send())
    if profiler is not None:
        profiler.disable()
    elapsed = time.process_time() - start
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return elapsed / (rounds * streams)


def _runtime(loop: asyncio.AbstractEventLoop) -> Any:
    from wherry.backends.asyncio.runtime import AsyncioRuntime

    return AsyncioRuntime(loop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_h2", description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10, help="requests per read (h2load -m)")
    parser.add_argument("--rounds", type=int, default=3, help="runs; the best is printed")
    parser.add_argument("--core", action="store_true", help="the sans-IO core alone")
    parser.add_argument("--profile", action="store_true", help="print a cProfile listing")
    parser.add_argument("--asyncio", action="store_true", help="the stdlib loop instead of uvloop")
    args = parser.parse_args(argv)
    if args.core:
        per_request = min(core_only(args.requests, args.streams, args.profile) for _ in range(args.rounds))
        print(f"core: {per_request * 1e6:.2f} us/request (Python {sys.version.split()[0]})")
        return 0
    best = (float("inf"), 0.0)
    for _ in range(args.rounds):
        coro = drive(args.requests, args.connections, args.streams, args.profile)
        if args.asyncio:
            result = asyncio.run(coro)
        else:
            import uvloop

            result = uvloop.run(coro)
        best = min(best, result)
    per_request, writes = best
    print(
        f"{per_request * 1e6:.2f} us/request, {writes:.3f} writes/request "
        f"(x{args.streams} streams, Python {sys.version.split()[0]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
