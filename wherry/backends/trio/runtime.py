"""The trio Runtime: trio's clock, timers on one task, a small future (``TrioFuture``, in
``primitives.py`` beside this module, with trio's other primitives, which code above the backends
may use too), and the application calls as tasks of their connection's nursery.

Rules of this module:

1. ``TrioFuture`` is the whole of what the ASGI cycle and the drivers wait on (``done``,
   ``set_result``, ``await``): one task waits on it, any code in the trio thread resolves it.
   Awaiting a future that is already done does not yield (as on asyncio).
2. Timers (``call_at``) are one heap served by one task, which sleeps in a cancel scope whose
   deadline is the earliest timer: adding an earlier timer moves the deadline, nothing else.
   A cancelled timer stays in the heap until it comes up (or the heap is compacted).
3. Every application call is a task of its connection's nursery (the connection's handler task
   and everything it starts see the connection's transport in ``CONNECTION``): HTTP/2 streams
   run concurrently, an HTTP/1.1 connection's calls one after another (its driver starts the
   next only when the previous one ended). A call started while bytes were being delivered runs
   up to its first wait before the connection reads more (as on asyncio, where it runs inside
   ``data_received``). Each call runs in a fresh copy of the context; ``on_done`` is called
   exactly once with the exception the app ended with, or None; a cancellation or
   ``KeyboardInterrupt``/``SystemExit`` then goes on up.
4. An exception escaping a timer callback, ``on_done`` or a spawned coroutine does not stop the
   server: it goes to ``report`` (logged by default, as asyncio's loop does).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, BinaryIO

import trio

from ...contracts import ASGIApp, OnDone, Scope, Transport
from ..timers import Timer, TimerHeap
from .primitives import TrioFuture

if TYPE_CHECKING:
    from .transport import TrioTransport

logger = logging.getLogger("wherry.error")

# The transport of the connection whose task is running (rule 3).
CONNECTION: contextvars.ContextVar[TrioTransport] = contextvars.ContextVar("wherry_connection")


class Spawned:
    """A coroutine running as a task of its own (``Runtime.spawn``): cancel it, wait for it."""

    __slots__ = ("_callbacks", "_done", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self._done = False
        self._callbacks: list[Callable[[Spawned], object]] = []

    def cancel(self) -> None:
        self.scope.cancel()

    def done(self) -> bool:
        return self._done

    def add_done_callback(self, fn: Callable[[Spawned], object]) -> None:
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def finish(self) -> None:
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)


class TrioRuntime:
    """The Runtime contract over trio (see the module's rules)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery  # the backend's: timers, spawned work, calls with no connection
        self.time = trio.current_time
        self.create_future = TrioFuture
        self.background: set[Spawned] = set()
        self.report: Callable[[dict[str, Any]], None] = _log_error
        self._timers = TimerHeap()
        self._sleep: trio.CancelScope | None = None

    # ------------------------------------------------------------------ timers

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = self._timers.push(when, callback)
        sleep = self._sleep
        if sleep is not None and when < sleep.deadline:
            sleep.deadline = when
        return timer

    async def run_timers(self) -> None:
        """The timer task (rule 2); runs until the backend's nursery is cancelled."""
        timers = self._timers
        while True:
            timers.run_due(trio.current_time(), self.report)
            with trio.CancelScope(deadline=timers.next_when()) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None

    def after_io(self, callback: Callable[[], None]) -> None:
        """``callback`` after the I/O already pending is delivered: the tasks trio woke for input
        in the same batch as the timer task run before this new task passes its checkpoint."""
        self.nursery.start_soon(self._after_io, callback)

    async def _after_io(self, callback: Callable[[], None]) -> None:
        await trio.lowlevel.checkpoint()
        try:
            callback()
        except Exception as exc:
            self.report({"message": "Exception in a timer callback", "exception": exc})

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        """trio has no sendfile: the driver sends the file in pieces."""
        return False

    # ------------------------------------------------------------------ tasks

    def spawn(self, coro: Coroutine[Any, Any, None]) -> Spawned:
        """Run ``coro`` as a task of its own; it is not one of the app calls cut at shutdown."""
        handle = Spawned()
        self.background.add(handle)
        self.nursery.start_soon(self._run_spawned, handle, coro)
        return handle

    async def _run_spawned(self, handle: Spawned, coro: Coroutine[Any, Any, None]) -> None:
        try:
            with handle.scope:
                await coro
        except Exception as exc:
            self.report({"message": "Exception in a background task", "exception": exc})
        finally:
            self.background.discard(handle)
            handle.finish()

    def run_app(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        """One application call, beside the connection's others (an HTTP/2 stream)."""
        conn = CONNECTION.get(None)
        if conn is None:
            self.nursery.start_soon(self.call_app, None, app, scope, receive, send, on_done)
        else:
            conn.start_app(self.call_app, app, scope, receive, send, on_done)

    async def call_app(
        self, conn: TrioTransport | None, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone
    ) -> None:
        if conn is not None:
            conn.app_started()
        try:
            await app(scope, receive, send)
        except BaseException as exc:
            self._done(on_done, exc)
            if not isinstance(exc, Exception):
                raise  # a cancellation (the end of a graceful shutdown), or the process exiting
            return
        self._done(on_done, None)

    def _done(self, on_done: OnDone, exc: BaseException | None) -> None:
        try:
            on_done(exc)
        except Exception as error:
            self.report({"message": "Exception after an application call", "exception": error})


def _log_error(context: dict[str, Any]) -> None:
    logger.error("%s", context.get("message", "Unhandled exception"), exc_info=context.get("exception"))
