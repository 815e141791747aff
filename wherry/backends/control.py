"""A worker's end of the supervisor's control channel, served by the worker's own event loop.

The supervisor and each worker share a Unix socket pair. Messages are lines of ASCII:

    supervisor -> worker   ping            answer with pong (proves the event loop is not stuck)
                           drain           hand over: stop accepting, finish, exit
    worker -> supervisor   ready           serving (lifespan started, sockets accepted on)
                           pong JSON       the answer to ping, with the worker's counters
                           recycle REASON  please replace me (--limit-max-requests reached)

Pings are answered from the event loop, not from a thread, so a worker whose loop is blocked (an
app calling ``time.sleep``, a busy loop) misses its pongs and is replaced. End of file on the
channel means the supervisor is gone: the worker shuts down. The channel is the same on every
backend: it reads through ``Backend.watch_readable`` and times with the backend's runtime.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
from collections.abc import Callable
from typing import Any

from ..contracts import TimerHandle
from .serving import Backend

logger = logging.getLogger("wherry.error")

CHECK_INTERVAL = 0.1  # seconds between two looks at the request count (no cost per request)


class ControlChannel:
    def __init__(self, sock: socket.socket, backend: Backend) -> None:
        self.sock = sock
        self.backend = backend
        self._buffer = b""
        self._recycle_sent = False
        self._timer: TimerHandle | None = None
        self._stop_reading: Callable[[], None] | None = None
        config = backend.config
        limit = config.limit_max_requests
        if limit is not None and config.limit_max_requests_jitter:
            limit += random.randint(0, config.limit_max_requests_jitter)
        self.max_requests = limit

    def start(self) -> None:
        self.sock.setblocking(False)
        self._stop_reading = self.backend.watch_readable(self.sock, self._on_readable)
        self._send(b"ready\n")
        if self.max_requests is not None:
            self._check_later()

    def _check_later(self) -> None:
        ctx = self.backend.ctx
        if ctx is not None:
            runtime = ctx.runtime
            self._timer = runtime.call_at(runtime.time() + CHECK_INTERVAL, self._check_requests)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stop_reading is not None:
            self._stop_reading()
            self._stop_reading = None

    def _send(self, line: bytes) -> None:
        # The supervisor is gone or not reading if this fails; it notices missing pongs.
        with contextlib.suppress(OSError):
            self.sock.send(line)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            logger.warning("Lost the supervisor's control channel; shutting down")
            self.close()
            self.backend.request_exit()
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            if line == b"ping":
                self._send(b"pong " + json.dumps(self.snapshot()).encode() + b"\n")
            elif line == b"drain":
                self.backend.request_exit(drain=True)

    def snapshot(self) -> dict[str, Any]:
        ctx = self.backend.ctx
        data: dict[str, Any] = {"pid": os.getpid()}
        if ctx is not None:
            data["requests_total"] = ctx.total_requests
            if ctx.metrics is not None:
                data["metrics"] = ctx.metrics.snapshot(len(ctx.connections), ctx.tasks)
        return data

    def _check_requests(self) -> None:
        self._timer = None
        ctx = self.backend.ctx
        limit = self.max_requests
        if ctx is None or limit is None or self._recycle_sent:
            return
        if ctx.total_requests >= limit:
            logger.info(
                "Served %d requests (--limit-max-requests); asking to be replaced", ctx.total_requests
            )
            self._recycle_sent = True
            self._send(b"recycle max-requests\n")
            return
        self._check_later()
