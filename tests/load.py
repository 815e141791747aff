"""A small load generator for restart tests: keep-alive HTTP/1.1 clients that count every request.

Each client holds one connection and sends the next GET as soon as the last response is read, so
a server that closes a connection between two requests, or resets one, is caught. A response with
``connection: close`` makes the client open a new connection (that is the server's way of handing
a client over); anything else that does not end in a full 200 response is a failure. Nothing is
retried: the count of failures is the count of requests a user would have seen fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter


class Load:
    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/",
        concurrency: int = 8,
        source: str | None = None,
        max_seconds: float = 60.0,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.concurrency = concurrency
        self.source = source
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.bodies: Counter[bytes] = Counter()
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the load generator did not stop"

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        """Until at least ``count`` more requests have succeeded."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            assert time.monotonic() < deadline, f"only {self.ok} requests; failures: {self.failures[:5]}"
            assert self._thread.is_alive(), "the load generator stopped"
            time.sleep(0.01)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        clients = [asyncio.create_task(self._client(deadline)) for _ in range(self.concurrency)]
        await asyncio.gather(*clients)

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return body
            body += chunk[:-2]

    async def _client(self, deadline: float) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        local = (self.source, 0) if self.source else None
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
            except OSError as exc:
                self.failures.append(f"connect: {exc!r}")
                await asyncio.sleep(0.01)
                continue
            self.connections += 1
            try:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    writer.write(request)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    lines = head.decode("latin-1").split("\r\n")
                    status = int(lines[0].split(" ")[1])
                    fields = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip().lower()
                    if fields.get("transfer-encoding") == "chunked":
                        body = await self._chunked(reader)
                    else:
                        body = await reader.readexactly(int(fields.get("content-length", "0")))
                    if status != 200:
                        self.failures.append(f"status {status}")
                    else:
                        self.ok += 1
                        self.bodies[body] += 1
                    if fields.get("connection") == "close":
                        break
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError) as exc:
                self.failures.append(f"request: {exc!r}")
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
