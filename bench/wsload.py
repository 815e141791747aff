"""A WebSocket load client: N connections, each sending one message and waiting for its echo
before sending the next (closed loop, as wrk does for HTTP requests).

    python -m bench.wsload --url ws://127.0.0.1:8000/ --connections 64 --size 32 --duration 3

It is a plain asyncio ``Protocol`` (on uvloop when installed) that sends one pre-built masked frame
and parses the server's frame headers only, so that one client core can drive a server core: a
load client written with a WebSocket library costs more per message than some servers do. Small
messages are text (the server checks UTF-8), large ones binary. The result is one line,
``WSLOAD_RESULT {json}``, with the message count, the bytes read and the latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import time
from typing import Any
from urllib.parse import urlsplit

RESULT_MARK = "WSLOAD_RESULT "


def client_frame(payload: bytes, text: bool) -> bytes:
    """One masked frame carrying ``payload``; the same bytes are sent again and again."""
    head = bytes([0x81 if text else 0x82])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    key = os.urandom(4)
    mask = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")
    return head + key + masked


def server_frame(payload: bytes, text: bool) -> bytes:
    """The unmasked frame a server sends ``payload`` back in."""
    head = bytes([0x81 if text else 0x82])
    size = len(payload)
    if size < 126:
        return head + bytes([size]) + payload
    if size < 65536:
        return head + bytes([126]) + struct.pack("!H", size) + payload
    return head + bytes([127]) + struct.pack("!Q", size) + payload


class Echo(asyncio.Protocol):
    """One connection: handshake, then send, wait for the whole echoed frame, repeat."""

    def __init__(self, run: Run, request: bytes) -> None:
        self.run = run
        self.request = request
        self.transport: Any = None
        self.handshaken = False
        self.buf = bytearray()
        self.skip = 0  # payload bytes of the current frame still to come
        self.sent_at = 0.0
        self.opened = run.loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        run = self.run
        run.bytes_read += len(data)
        if not self.handshaken:
            self.buf += data
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                run.errors += 1
                self.opened.set_result(False)
                self.transport.close()
                return
            self.handshaken = True
            data = bytes(self.buf[end + 4 :])
            self.buf.clear()
            self.opened.set_result(True)
        elif data == run.echo and not self.skip and not self.buf:
            # The commonest read: exactly the echo of the frame sent, unmasked. Checked whole, with
            # no parsing, so that the client costs as little per message as it can.
            self.frame_done()
            return
        view = memoryview(data)
        while view:
            if self.skip:
                taken = min(self.skip, len(view))
                self.skip -= taken
                view = view[taken:]
                if not self.skip:
                    self.frame_done()
                continue
            self.buf += view
            view = view[len(view) :]
            buf = self.buf
            if len(buf) < 2:
                return
            size = buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, offset = struct.unpack_from("!H", buf, 2)[0], 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
            if buf[0] & 0x0F == 0x8:
                run.errors += 1  # the server closed
                self.transport.close()
                return
            rest = bytes(buf[offset:])
            buf.clear()
            if len(rest) >= size:
                view = memoryview(rest[size:])
                self.frame_done()
            else:
                self.skip = size - len(rest)

    def frame_done(self) -> None:
        run = self.run
        now = time.perf_counter()
        if run.measuring:
            run.messages += 1
            run.latencies.append(now - self.sent_at)
        if run.running:
            self.send()

    def send(self) -> None:
        self.sent_at = time.perf_counter()
        self.transport.write(self.run.frame)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.run.running:
            self.run.errors += 1
        if not self.opened.done():
            self.opened.set_result(False)


class Run:
    def __init__(self, loop: asyncio.AbstractEventLoop, frame: bytes, echo: bytes) -> None:
        self.loop = loop
        self.frame = frame
        self.echo = echo  # the server's frame for the same payload
        self.running = True
        self.measuring = False
        self.messages = 0
        self.bytes_read = 0
        self.errors = 0
        self.latencies: list[float] = []


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    text = args.size <= 65536
    payload = (b"wherry! " * (args.size // 8 + 1))[: args.size]
    run = Run(loop, client_frame(payload, text), server_frame(payload, text))
    protocols = []
    for _ in range(args.connections):
        key = base64.b64encode(os.urandom(16))
        request = (
            b"GET %b HTTP/1.1\r\nHost: %b:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % ((url.path or "/").encode(), host.encode(), port, key)
        )
        _, protocol = await loop.create_connection(lambda r=request: Echo(run, r), host, port)  # type: ignore[misc]
        protocols.append(protocol)
    opened = await asyncio.gather(*(p.opened for p in protocols))
    live = [p for p, ok in zip(protocols, opened, strict=True) if ok]
    for protocol in live:
        protocol.send()
    await asyncio.sleep(args.warmup)
    run.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(args.duration)
    run.measuring = False
    elapsed = time.perf_counter() - started
    run.running = False
    for protocol in protocols:
        protocol.transport.close()
    latencies = sorted(run.latencies)

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000.0

    return {
        "messages": run.messages,
        "duration_s": elapsed,
        "bytes": run.bytes_read,
        "errors": run.errors + (args.connections - len(live)),
        "mean_ms": (sum(latencies) / len(latencies) * 1000.0) if latencies else 0.0,
        "max_ms": latencies[-1] * 1000.0 if latencies else 0.0,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "p999_ms": pct(99.9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(main_async(args))
    else:
        result = uvloop.run(main_async(args))
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
