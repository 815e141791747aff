"""A transport over a trio stream: the object the connection drivers write to and the tasks that
call them, as an asyncio transport and its loop would.

Rules of this module:

1. The drivers see the transport contract of docs/discussion/backends.md: ``write``,
   ``write_eof``, ``can_write_eof``, ``close``, ``abort``, ``pause_reading``,
   ``resume_reading``, ``is_closing``, ``get_extra_info``, ``set_protocol`` (and
   ``get_protocol``); they are called with the asyncio Protocol names (``connection_made``,
   ``data_received``, ``eof_received``, ``connection_lost``, ``pause_writing``,
   ``resume_writing``), with asyncio's guarantees: nothing is delivered after ``pause_reading``
   until ``resume_reading``, nor after ``close``; ``connection_lost`` comes once, last, after
   the socket is closed.
2. One task reads (the connection's handler task, in ``run``); writing needs no task while the
   socket takes the bytes: on a plain socket ``write`` sends at once, and only what the kernel
   does not take is queued for the writer task (started on first need). TLS writes always go
   through the writer (``SSLStream.send_all``). Past ``HIGH_WATER`` queued bytes the protocol's
   ``pause_writing`` is called, and ``resume_writing`` once the queue is back under
   ``LOW_WATER``, after ``close`` too (a driver waiting to write more learns that its bytes went
   out), but not after ``abort`` (they were dropped), as asyncio and uvloop do.
3. ``close`` stops reading at once and closes the socket once the queue is written (TLS sends
   its close_notify, bounded by ``TLS_CLOSE_TIMEOUT``); ``abort`` drops the queue and closes
   as soon as the code running now is done; ``write_eof`` half-closes once the queue is written
   (plain sockets only, as on asyncio).
4. An exception escaping a protocol callback is reported and aborts the connection, as asyncio
   does ("Fatal error: protocol.data_received() call failed").
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

import trio

from .primitives import TrioFuture
from .runtime import CONNECTION, TrioRuntime

HIGH_WATER = 65536
LOW_WATER = 16384
MAX_READ = 65536
TLS_CLOSE_TIMEOUT = 1.0

_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class TrioTransport:
    """One connection: a trio stream (``SocketStream`` or ``SSLStream``) and its socket."""

    __slots__ = (
        "_buffer",
        "_closed",
        "_closing",
        "_eof_held",
        "_eof_sent",
        "_eof_wanted",
        "_exc",
        "_extra",
        "_nursery",
        "_pending",
        "_protocol",
        "_raw",
        "_read_paused",
        "_read_scope",
        "_reader_waiter",
        "_runtime",
        "_started_waiter",
        "_stash",
        "_stream",
        "_tsock",
        "_unstarted",
        "_write_paused",
        "_writer_running",
        "_writer_waiter",
        "_writing",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        tsock: Any,
        raw: socket.socket,
        runtime: TrioRuntime,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._stream = stream
        self._tsock = tsock  # the trio socket: closing through it wakes the tasks waiting on it
        self._raw: socket.socket | None = None if tls is not None else raw  # direct sends (rule 2)
        self._runtime = runtime
        self._protocol: Any = None
        self._nursery: trio.Nursery | None = None
        self._buffer: list[bytes | memoryview] = []
        self._pending = 0  # bytes queued or being written by the writer task
        self._writing = False
        self._writer_running = False
        self._writer_waiter: TrioFuture | None = None
        self._reader_waiter: TrioFuture | None = None
        self._read_scope = trio.CancelScope()
        self._read_paused = False
        self._write_paused = False
        self._stash = b""  # read while pausing: delivered on resume_reading
        self._eof_held = False  # the peer's EOF, read while pausing: delivered on resume_reading
        self._closing = False
        self._closed = TrioFuture()
        self._eof_wanted = False
        self._eof_sent = False
        self._exc: BaseException | None = None
        self._unstarted = 0  # application calls started whose task has not run yet
        self._started_waiter: TrioFuture | None = None
        extra: dict[str, Any] = {"socket": raw, "sslcontext": tls}
        try:
            extra["peername"] = raw.getpeername()
        except OSError:
            extra["peername"] = None
        try:
            extra["sockname"] = raw.getsockname()
        except OSError:
            extra["sockname"] = None
        if tls is not None:
            ssl_object = getattr(stream, "_ssl_object", stream)  # SSLStream forwards only some methods
            extra["ssl_object"] = ssl_object
            extra["cipher"] = stream.cipher()  # type: ignore[attr-defined]
            extra["peercert"] = stream.getpeercert()  # type: ignore[attr-defined]
        self._extra = extra

    # ------------------------------------------------------------------ the handler task

    async def run(self, protocol: Any) -> None:
        """Serve the connection with ``protocol`` until it is closed and its apps have ended."""
        self._protocol = protocol
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            token = CONNECTION.set(self)
            try:
                self._call(protocol.connection_made, self)
                with self._read_scope:
                    await self._read()
                await self._closed
            finally:
                if not self._closed.done():  # cancelled: the server is going away
                    self._closing = True
                    self._buffer = []
                    self._pending = 0
                    self._close_socket()
                CONNECTION.reset(token)
                self._call(self._protocol.connection_lost, self._exc)

    async def _read(self) -> None:
        receive = self._stream.receive_some
        while not self._closing:
            if self._read_paused:
                waiter = self._reader_waiter = TrioFuture()
                await waiter
                continue
            data: bytes
            if self._stash:
                data, self._stash = self._stash, b""
            elif self._eof_held:
                data = b""
            else:
                try:
                    data = bytes(await receive(MAX_READ))
                except _GONE as exc:
                    if not self._closing:
                        self._exc = exc
                        self.abort()
                    return
                if self._closing:
                    return
                if self._read_paused:  # paused by another task while this one was receiving
                    self._stash = data
                    self._eof_held = not data
                    continue
            if not data:
                if not self._call(self._protocol.eof_received):
                    self.close()
                return
            self._call(self._protocol.data_received, data)
            if self._unstarted:
                # The apps those bytes started run up to their first wait before more is read.
                waiter = self._started_waiter = TrioFuture()
                await waiter

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:
            self._runtime.report(
                {"message": f"Fatal error: protocol.{method.__name__}() call failed", "exception": exc}
            )
            self._exc = exc
            self.abort()
            return None

    # ------------------------------------------------------------------ application calls

    def start_app(self, call: Callable[..., Any], *args: Any) -> None:
        """Start an application call in this connection's nursery (``call(self, *args)``)."""
        assert self._nursery is not None
        self._unstarted += 1
        self._nursery.start_soon(call, self, *args)

    def app_started(self) -> None:
        self._unstarted -= 1
        waiter = self._started_waiter
        if not self._unstarted and waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        if self._closing or self._eof_wanted or not data:
            return
        if not self._pending and self._raw is not None:
            try:
                sent = self._raw.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._exc = exc
                self.abort()
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]  # type: ignore[assignment]
        self._buffer.append(data)
        self._pending += len(data)
        self._wake_writer()
        if self._pending > HIGH_WATER and not self._write_paused:
            self._write_paused = True
            self._call(self._protocol.pause_writing)

    def _wake_writer(self) -> None:
        if not self._writer_running:
            self._writer_running = True
            assert self._nursery is not None
            self._nursery.start_soon(self._write_loop)
            return
        waiter = self._writer_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _write_loop(self) -> None:
        stream = self._stream
        try:
            while True:
                buffer = self._buffer
                if buffer:
                    data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                    self._buffer = []
                    self._writing = True
                    try:
                        await stream.send_all(data)
                    except _GONE as exc:
                        if not self._closed.done():
                            self._exc = exc
                            self.abort()
                        return
                    finally:
                        self._writing = False
                    self._pending -= len(data)
                    if self._write_paused and self._pending <= LOW_WATER:  # closing too, as asyncio
                        self._write_paused = False
                        self._call(self._protocol.resume_writing)
                    continue
                if self._closed.done():
                    return
                if self._closing:
                    await self._finish_close()
                    return
                if self._eof_wanted and not self._eof_sent:
                    self._eof_sent = True
                    with contextlib.suppress(*_GONE):
                        await stream.send_eof()  # type: ignore[attr-defined]
                waiter = self._writer_waiter = TrioFuture()
                await waiter
        finally:
            self._writer_running = False

    def can_write_eof(self) -> bool:
        return self._raw is not None

    def write_eof(self) -> None:
        if self._raw is None:
            raise NotImplementedError("TLS connections cannot half-close")
        if self._closing or self._eof_wanted:
            return
        self._eof_wanted = True
        if self._pending:
            self._wake_writer()
            return
        self._eof_sent = True
        self._raw.shutdown(socket.SHUT_WR)  # an OSError (the peer is gone) goes to the caller

    # ------------------------------------------------------------------ reading

    def pause_reading(self) -> None:
        self._read_paused = True

    def resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            waiter = self._reader_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def is_reading(self) -> bool:
        return not self._read_paused and not self._closing

    # ------------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._read_scope.cancel()
        if self._pending or self._raw is None:
            self._wake_writer()  # it writes what is queued, then closes
        else:
            self._close_soon()

    async def _finish_close(self) -> None:
        stream = self._stream
        if self._raw is None:  # TLS: send close_notify, for a bounded time
            with trio.move_on_after(TLS_CLOSE_TIMEOUT):
                with contextlib.suppress(*_GONE):
                    await stream.aclose()
        self._close_socket()

    def abort(self) -> None:
        self._closing = True
        self._buffer = []
        self._pending = 0
        self._write_paused = False  # what was queued is dropped: no resume_writing follows
        self._read_scope.cancel()
        self._close_soon()

    def _close_soon(self) -> None:
        """Close the socket once the code running now is done (asyncio closes in its next
        iteration too): whatever the caller does next, a log line or an exception for its app,
        happens before the peer sees the connection end."""
        runtime = self._runtime
        runtime.call_at(runtime.time(), self._close_socket)

    def _close_socket(self) -> None:
        if self._closed.done():
            return
        self._tsock.close()
        self._closed.set_result(None)
        waiter = self._writer_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ the rest of the contract

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        value = self._extra.get(name, default)
        return default if value is None else value

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return self._pending
