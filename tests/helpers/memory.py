"""A connection driver with no socket and no wall clock: ``MemoryTransport`` stands where the event
loop's transport stands, ``ManualRuntime`` is the Runtime with a clock that moves only when told.

The application runs as on the asyncio backend: ``ManualRuntime`` owns an asyncio event loop and
hands application calls to the real asyncio runtime (``AsyncioRuntime.run_app``: the app starts
inside the I/O callback that completed its request and goes on in a runner task once it waits).
The loop never waits: it runs until nothing is ready (``settle``) and stops there, whatever real
time says. Deadlines are the runtime's own timers, run in order by ``advance``; the loop's timers
are never used, so an app under test waits on the ASGI calls and the runtime's futures only.

Bytes the peer sends go in through ``MemoryTransport.receive`` (delivered from a loop callback, as
a real transport delivers them); what the server wrote comes out of ``MemoryTransport.take``.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, BinaryIO, cast

from wherry.asgi.http import ASGIApp, Scope
from wherry.backends.asyncio.runtime import AsyncioRuntime
from wherry.backends.timers import Timer, TimerHeap
from wherry.config import Config
from wherry.connection.context import ServerContext
from wherry.connection.http1 import H1Driver
from wherry.contracts import Transport

OnDone = Callable[[BaseException | None], None]


class _IdleSelector(selectors.DefaultSelector):
    """The loop's selector: never blocks. When the loop would wait (nothing ready, so a timeout
    other than 0) the loop is stopped instead: it has settled."""

    loop: asyncio.AbstractEventLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if (timeout is None or timeout > 0) and self.loop is not None:
            self.loop.stop()
            timeout = 0
        return super().select(timeout)


class ManualRuntime:
    """The Runtime contract (``wherry.connection.context.Runtime``) over a clock moved by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        selector = _IdleSelector()
        self.loop = asyncio.SelectorEventLoop(selector)
        selector.loop = self.loop
        self.errors: list[dict[str, Any]] = []  # what the loop's exception handler was given
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.apps = AsyncioRuntime(self.loop)
        self.timers = TimerHeap()
        self._now = start

    # ------------------------------------------------------------------ the Runtime contract

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        return self.timers.push(when, callback)

    def after_io(self, callback: Callable[[], None]) -> None:
        """As on asyncio: behind the callbacks already queued, one loop turn later."""
        self.apps.after_io(callback)

    def create_future(self) -> asyncio.Future[None]:
        return self.loop.create_future()

    def run_app(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        self.apps.run_app(app, scope, receive, send, on_done)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        return self.apps.spawn(coro)

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        return False  # a memory transport has no socket: files go through write()

    # ------------------------------------------------------------------ driving it

    def call(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` from a loop callback (no task current, as the loop calls a protocol), then
        settle."""
        self.loop.call_soon(fn)
        self.settle()

    def settle(self) -> None:
        """Run until nothing is left to do at the current time: ready callbacks, app steps, the
        after-I/O calls and the timers already due."""
        while True:
            self.loop.run_forever()  # returns once the loop would wait (_IdleSelector)
            if self.timers.next_when() > self._now:
                return
            self.loop.call_soon(self.timers.run_due, self._now, self.loop.call_exception_handler)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on, stopping at each timer due on the way to run it (in
        order, with the clock at its deadline) and to settle after it."""
        target = self._now + seconds
        self.settle()
        while (when := self.timers.next_when()) <= target:
            self._now = max(self._now, when)
            self.settle()
        self._now = target
        self.settle()

    def close(self) -> None:
        """End the runner tasks (cancelling apps still waiting) and close the loop."""
        for runner in list(self.apps.busy):
            runner.cancel()
        self.settle()
        for task in self.apps.close():
            task.cancel()
        for work in list(self.apps.background):
            work.cancel()
        self.settle()
        self.loop.close()


class MemoryTransport:
    """What the drivers call on a transport, in memory. The peer's side: ``receive`` (bytes in),
    ``receive_eof`` (the peer half-closes), ``take`` (bytes out), ``stall``/``drain`` (the peer
    stops and starts reading: output is buffered and the protocol's ``pause_writing`` comes once
    the buffer passes ``high_water``, as from a real transport's ``write``)."""

    def __init__(
        self,
        runtime: ManualRuntime,
        protocol: Any,
        peername: tuple[str, int] = ("127.0.0.1", 50000),
        sockname: tuple[str, int] = ("127.0.0.1", 8000),
    ) -> None:
        self.runtime = runtime
        self.protocol = protocol
        self.extra: dict[str, Any] = {
            "peername": peername,
            "sockname": sockname,
            "ssl_object": None,
            "sslcontext": None,
            "socket": None,
        }
        self.output = bytearray()  # written and delivered: the peer reads it with take()
        self.buffer = bytearray()  # written while the peer does not read (stall)
        self.inbound: list[bytes] = []  # sent by the peer while reading is paused
        self.log: list[str] = []  # pause_reading, resume_reading, write_eof, close, abort, lost
        self.high_water = 0
        self.stalled = False
        self.writing_paused = False  # the protocol was told pause_writing
        self.reading = True
        self.eof_written = False
        self.closing = False
        self.aborted = False
        self.lost = False
        self.peer_eof = False  # the peer has half-closed

    # ------------------------------------------------------------------ what the drivers call

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof_written:
            raise RuntimeError("write() after write_eof()")
        if self.lost or not data:
            return
        if not self.stalled:
            self.output += data
            return
        self.buffer += data
        if len(self.buffer) > self.high_water and not self.writing_paused:
            self.writing_paused = True
            self.protocol.pause_writing()

    def writelines(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.closing or self.eof_written:
            return
        self.eof_written = True
        self.log.append("write_eof")

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reading = False
        self.log.append("close")
        if not self.buffer:
            self.runtime.loop.call_soon(self._connection_lost)

    def abort(self) -> None:
        if self.lost:
            return
        self.aborted = True
        self.buffer.clear()
        self.log.append("abort")
        if not self.closing:
            self.closing = True
            self.reading = False
        self.runtime.loop.call_soon(self._connection_lost)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        if self.reading and not self.closing:
            self.reading = False
            self.log.append("pause_reading")

    def resume_reading(self) -> None:
        if not self.reading and not self.closing:
            self.reading = True
            self.log.append("resume_reading")
            if self.inbound:
                self.runtime.loop.call_soon(self._deliver_held)

    def is_reading(self) -> bool:
        return self.reading

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    # ------------------------------------------------------------------ the peer's side

    def receive(self, data: bytes) -> None:
        """The peer sends ``data``: delivered from a loop callback, or held while reading is
        paused; then settle."""
        self._send(data)

    def receive_eof(self) -> None:
        """The peer half-closes its side (after what it sent before)."""
        self._send(b"")

    def _send(self, data: bytes) -> None:
        if self.closing or self.peer_eof:
            return  # a closed transport reads nothing more
        self.peer_eof = not data
        self.inbound.append(data)
        if self.reading and len(self.inbound) == 1:
            self.runtime.call(self._deliver_held)
        else:
            self.runtime.settle()

    def take(self) -> bytes:
        """Everything the peer has been able to read since the last call."""
        data = bytes(self.output)
        self.output.clear()
        return data

    def stall(self, high_water: int = 0) -> None:
        """The peer stops reading: writes are buffered, and past ``high_water`` bytes the protocol
        is told ``pause_writing``."""
        self.stalled = True
        self.high_water = high_water

    def drain(self) -> None:
        """The peer reads again: the buffer is delivered, the protocol told ``resume_writing``,
        and a transport closed meanwhile is lost now; then settle."""
        self.stalled = False

        def flush() -> None:
            self.output += self.buffer
            self.buffer.clear()
            if self.writing_paused:
                self.writing_paused = False
                self.protocol.resume_writing()
            if self.closing and not self.lost:
                self._connection_lost()

        self.runtime.call(flush)

    # ------------------------------------------------------------------ inside

    def _deliver_held(self) -> None:
        """What the peer sent arrives as one read (as a socket read takes what is there)."""
        inbound = self.inbound
        while inbound and self.reading and not self.closing:
            if not inbound[0]:
                inbound.pop(0)
                if not self.protocol.eof_received():
                    self.close()
                return
            end = inbound.index(b"") if b"" in inbound else len(inbound)
            data = b"".join(inbound[:end])
            del inbound[:end]
            self.protocol.data_received(data)

    def _connection_lost(self) -> None:
        if self.lost:
            return
        self.lost = True
        self.log.append("lost")
        self.protocol.connection_lost(None)


def server_context(
    app: Callable[..., Awaitable[None]], runtime: ManualRuntime, **options: Any
) -> ServerContext:
    """The context a server shares between its connections, made from a real ``Config``
    (``options`` are its keyword options: ``timeout_keep_alive=2.0``...)."""
    options.setdefault("access_log", False)
    return ServerContext(Config(**options), cast(ASGIApp, app), runtime)


def connect(ctx: ServerContext, **extra: Any) -> MemoryTransport:
    """A new connection, as the asyncio backend makes one: the HTTP/1.1 driver (it hands the
    transport over to HTTP/2 or WebSocket when the peer asks) made by the listener's factory,
    then ``connection_made`` from a loop callback."""
    runtime = ctx.runtime
    assert isinstance(runtime, ManualRuntime)
    driver = H1Driver(ctx)
    transport = MemoryTransport(runtime, driver, **extra)
    runtime.call(lambda: driver.connection_made(transport))
    return transport
