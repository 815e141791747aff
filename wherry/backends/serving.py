"""The serve sequence every backend shares: lifespan, the per-second tick, exit requests, signals
and the graceful shutdown, written once over the Runtime contract (futures and timers).

Rules of this module:

1. Everything here waits through the runtime's own futures and timers (``create_future``,
   ``call_at``): the sequence runs unchanged on asyncio, uvloop and trio. A backend subclass
   supplies only what touches its event loop: listening and accepting, stopping to accept,
   closing the listeners, cancelling the application calls still running, watching the signals
   and reaching the loop from another thread (the ``_``-prefixed hooks below).
2. The shutdown sequence (docs/discussion/closing.md): stop accepting; close idle connections
   and let each busy one close after its response in flight; wait up to
   ``timeout_graceful_shutdown`` for them; then cut what is left and cancel the apps still
   running; wait until every socket is released; finally run the lifespan shutdown.
3. ``request_exit`` is safe from any thread and before ``serve`` has started.
4. No SIGINT/SIGTERM is lost or turned into an abort once the sockets listen: ``held_signals``
   (``wherry.sockets``) records them until a backend's own handlers are in place, and the backend
   acts on them once its application's startup has completed (so a startup that ran is matched
   by its shutdown).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..asgi.http import ASGIApp, FutureLike
from ..asgi.lifespan import Lifespan, LifespanFailure
from ..config import Config
from ..connection.context import ServerContext
from ..contracts import Runtime, TimerHandle
from ..sockets import take_held_signals
from ..tls import create_tls_context
from .primitives import foreign_loop

logger = logging.getLogger("wherry.error")

GIVE_UP_AFTER = 5.0  # seconds to wait for cancelled work to end before serve() returns
# Accepting: every waiting connection up to a burst per readiness of a listening socket, so a
# loop turn that is long under load does not hold new connections in the kernel's queue.
ACCEPT_BURST = 64
ACCEPT_RETRY_DELAY = 1.0  # seconds without accepting after running out of descriptors
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Waitable(Protocol):
    """A spawned piece of work (an asyncio Task, or the trio backend's handle of one)."""

    def cancel(self) -> Any: ...

    def done(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> Any: ...


class ServingRuntime(Runtime, Protocol):
    background: Any  # the spawned work not yet finished (the lifespan driver)


async def wait_all(runtime: Runtime, work: Iterable[Waitable], timeout: float) -> None:
    """Wait until every piece of ``work`` is done, or ``timeout`` seconds."""
    pending = [item for item in work if not item.done()]
    if not pending:
        return
    finished = runtime.create_future()
    left = len(pending)

    def one_done(_item: Any) -> None:
        nonlocal left
        left -= 1
        if not left and not finished.done():
            finished.set_result(None)

    for item in pending:
        item.add_done_callback(one_done)
    await wait_for(runtime, finished, timeout)


async def wait_for(runtime: Runtime, future: FutureLike, timeout: float) -> None:
    """Wait until ``future`` is done or ``timeout`` seconds pass (it is then resolved)."""

    def expire() -> None:
        if not future.done():
            future.set_result(None)

    timer = runtime.call_at(runtime.time() + timeout, expire)
    try:
        await future
    finally:
        timer.cancel()


class Backend:
    """Serving one app on one event loop: the serve sequence, once; a subclass (``AsyncioBackend``,
    ``TrioBackend``) supplies the loop-specific hooks. ``wherry.Server`` makes one per ``serve()``."""

    loop_name = ""  # the event loop library the backend runs on

    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.sockets: list[socket.socket] = []
        self.ctx: ServerContext | None = None
        self.should_exit = False
        self.force_exit = False
        self.drain = False
        self._thread: int | None = None  # the thread serve() runs in, once it has started
        self._exit: FutureLike | None = None
        self._startup_waiter: FutureLike | None = None
        self._tick: TimerHandle | None = None
        self._idle: FutureLike | None = None
        self.max_requests: int | None = None  # a single server stops after this many requests

    # ------------------------------------------------------------------ exit requests

    def request_exit(self, force: bool = False, drain: bool = False) -> None:
        """Ask for a shutdown; safe from any thread. ``drain`` (a worker handing over
        to its replacement) keeps idle keep-alive connections open: each is closed after its
        next response or when its keep-alive deadline passes, so a client never sends a request
        on a connection the server is closing."""
        if drain and not self.should_exit:
            self.drain = True
        if self._thread is None:
            self.should_exit = True
            return
        if threading.get_ident() == self._thread:
            self._set_exit(force)
        else:
            self._call_threadsafe(self._set_exit, force)

    def _set_exit(self, force: bool) -> None:
        self.should_exit = True
        self.force_exit = self.force_exit or force
        if self.ctx is not None and not self.drain:
            # From now on every response says connection: close, whichever task the loop runs
            # next (trio does not run them in the order they were woken).
            self.ctx.shutting_down = True
        for waiter in (self._exit, self._startup_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        if self.force_exit and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def _on_signal(self, sig: int) -> None:
        logger.info("Received %s, shutting down", signal.Signals(sig).name)
        self._set_exit(self.should_exit)  # a second signal cuts the grace period short

    # ------------------------------------------------------------------ the sequence

    async def _run(
        self,
        runtime: ServingRuntime,
        sockets: list[socket.socket],
        on_started: Callable[[list[socket.socket]], Any] | None,
    ) -> None:
        """Serve until asked to exit; the backend's ``serve`` calls this inside its loop."""
        self._thread = threading.get_ident()
        self._exit = runtime.create_future()
        if self.should_exit:
            self._exit.set_result(None)
        ctx = self.ctx = ServerContext(self.config, self.app, runtime)
        ctx.tls = create_tls_context(self.config)
        lifespan = Lifespan(self.app, self.config.lifespan, runtime.create_future, runtime.spawn)
        with self._signals():
            if not await self._startup(lifespan, runtime):
                return
            if lifespan.supported:
                ctx.lifespan_state = lifespan.state
            try:
                await self._listen(ctx, sockets)
                self._schedule_tick(ctx)
                if on_started is not None:
                    on_started(self.sockets)
                for sig in take_held_signals():  # arrived before the handlers above were in place
                    self._on_signal(sig)
                await self._exit
                await self._shutdown(ctx)
            finally:
                if self._tick is not None:
                    self._tick.cancel()
                self._close_listeners()
            await lifespan.shutdown()

    async def _startup(self, lifespan: Lifespan, runtime: ServingRuntime) -> bool:
        """Run the lifespan startup (raising LifespanFailure when it fails). False when a shutdown
        was asked for before it completed: the app's startup is then cancelled and nothing is
        served, so a signal stops a server whose startup hangs."""
        done = self._startup_waiter = runtime.create_future()
        outcome: list[BaseException | None] = []

        async def startup() -> None:
            try:
                await lifespan.startup()
            except Exception as exc:
                outcome.append(exc)
            else:
                outcome.append(None)
            finally:
                if not done.done():
                    done.set_result(None)

        task: Waitable = runtime.spawn(startup())  # type: ignore[assignment]
        if self.should_exit:
            done.set_result(None)
        try:
            await done
        except BaseException:
            task.cancel()
            raise
        finally:
            self._startup_waiter = None
        if outcome:
            self._check_loop(lifespan, outcome[0])
            return True
        logger.warning("Shutdown requested before the application startup completed")
        pending = [task, *runtime.background]
        for work in pending:
            work.cancel()
        await wait_all(runtime, pending, GIVE_UP_AFTER)
        return False

    def _check_loop(self, lifespan: Lifespan, error: BaseException | None) -> None:
        """Raise the startup's error, or LifespanFailure with a clear message when the app is
        written for another event loop than the one serving it (detected by the error its
        lifespan raised, even under ``--lifespan auto``)."""
        needed = foreign_loop(lifespan.app_error, self.loop_name)
        if needed is not None:
            raise LifespanFailure(
                f"the application runs on {needed}, not {self.loop_name}: serve it with --loop {needed}"
                f" ({lifespan.app_error!r})"
            )
        if error is not None:
            raise error

    def _schedule_tick(self, ctx: ServerContext) -> None:
        runtime = ctx.runtime
        # Refresh just after each second boundary of the wall clock, so the date header is exact.
        delay = 1.0 - (time.time() % 1.0) + 0.001

        def tick() -> None:
            ctx.refresh_date()
            limit = self.max_requests
            if limit is not None and ctx.total_requests >= limit and not self.should_exit:
                logger.info("Maximum request limit of %d exceeded. Terminating process.", limit)
                self._set_exit(False)
            self._schedule_tick(ctx)

        self._tick = runtime.call_at(runtime.time() + delay, tick)

    async def _shutdown(self, ctx: ServerContext) -> None:
        logger.info("Shutting down")
        drain = self.drain
        if not drain:
            ctx.shutting_down = True
        # Stop accepting first; every connection already accepted reaches connection_made, sees
        # shutting_down and closes (it is waited for below). Idle connections are closed after the
        # listening sockets, so a client that sees its idle connection closed also sees new
        # connections refused.
        await self._stop_accepting()
        # A worker handing over to its replacement (drain) serves the connections it accepted:
        # from here each response says connection: close, and idle keep-alive connections are
        # left to their deadline, since closing one races with a request being sent on it
        # (docs/discussion/processes.md).
        ctx.shutting_down = True
        self._close_listeners()
        if not drain:
            for conn in list(ctx.connections):
                conn.shutdown()
        if not self.force_exit:
            closed = await self._connections_closed(ctx, self.config.timeout_graceful_shutdown)
            if not closed and not self.force_exit:
                logger.warning(
                    "Graceful shutdown timed out with %d connection(s) open; closing them",
                    len(ctx.connections),
                )
        for conn in list(ctx.connections):
            conn.abort_all()
        self._cancel_apps()
        # A closed or aborted transport releases its socket a little later: wait for that, so no
        # connection outlives serve() (or is left to the garbage collector).
        await self._connections_closed(ctx, 1.0)
        # The application calls end once their connections are gone and the apps returned.
        await wait_all(ctx.runtime, self._app_work(), GIVE_UP_AFTER)

    async def _connections_closed(self, ctx: ServerContext, timeout: float) -> bool:
        """Wait until every connection is gone (True), or ``timeout`` or a forced exit (False)."""
        if not ctx.connections:
            return True
        idle = self._idle = ctx.runtime.create_future()

        def on_empty() -> None:
            if not idle.done():
                idle.set_result(None)

        ctx.on_empty = on_empty
        await wait_for(ctx.runtime, idle, timeout)
        return not ctx.connections

    # ------------------------------------------------------------------ backend hooks

    async def serve(
        self,
        sockets: list[socket.socket],
        on_started: Callable[[list[socket.socket]], Any] | None = None,
    ) -> None:
        """Serve on ``sockets`` in the running loop until asked to exit (calls ``_run``)."""
        raise NotImplementedError

    def _call_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` soon in the loop serving, from another thread."""
        raise NotImplementedError

    def _signals(self) -> contextlib.AbstractContextManager[None]:
        """SIGINT/SIGTERM call ``_on_signal`` while the context is open (main thread only)."""
        raise NotImplementedError

    async def _listen(self, ctx: ServerContext, sockets: list[socket.socket]) -> None:
        """Accept connections on ``sockets`` (adding each to ``self.sockets``)."""
        raise NotImplementedError

    async def _stop_accepting(self) -> None:
        """Stop accepting; return once every accepted connection has reached its driver."""
        raise NotImplementedError

    def _close_listeners(self) -> None:
        """Close the listening sockets (idempotent)."""
        raise NotImplementedError

    def _cancel_apps(self) -> None:
        """Cancel the application calls still running (their connections are cut)."""
        raise NotImplementedError

    def _app_work(self) -> Iterable[Waitable]:
        """What must end before serve() returns: the tasks that run application calls."""
        raise NotImplementedError

    def watch_readable(self, sock: socket.socket, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever ``sock`` is readable, until the returned function is called
        (the supervisor's control channel)."""
        raise NotImplementedError


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
