"""Serving on asyncio: lifespan, listening, the per-second tick, signals and graceful shutdown.

The shutdown sequence: stop accepting; close idle connections and let each busy one close after
its response in flight; wait up to ``timeout_graceful_shutdown`` for them; then cut what is left and
cancel the apps still running; finally run the lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from ...asgi.http import ASGIApp
from ...asgi.lifespan import Lifespan
from ...config import Config
from ...server.context import ServerContext
from ...server.dispatch import TLSConnection
from ...server.http1 import H1Server
from ...server.proxy_protocol import ProxyProtocolStage
from ...tls import create_tls_context
from .runtime import AsyncioRuntime

logger = logging.getLogger("wherry.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AsyncioServer:
    def __init__(self, app: ASGIApp, config: Config) -> None:
        self.app = app
        self.config = config
        self.sockets: list[socket.socket] = []
        self.ctx: ServerContext | None = None
        self.should_exit = False
        self.force_exit = False
        self.drain = False
        self._exit_event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._tick: asyncio.TimerHandle | None = None
        self._idle: asyncio.Future[None] | None = None

    def request_exit(self, force: bool = False, drain: bool = False) -> None:
        """Ask the server to shut down; safe from any thread. ``drain`` (a worker handing over
        to its replacement) keeps idle keep-alive connections open: each is closed after its
        next response or when its keep-alive deadline passes, so a client never sends a request
        on a connection the server is closing."""
        if drain and not self.should_exit:
            self.drain = True
        loop = self._loop
        if loop is None:
            self.should_exit = True
            return
        if threading.get_ident() == getattr(loop, "_thread_id", None):
            self._set_exit(force)
        else:
            loop.call_soon_threadsafe(self._set_exit, force)

    def _set_exit(self, force: bool) -> None:
        self.should_exit = True
        self.force_exit = self.force_exit or force
        if self._exit_event is not None:
            self._exit_event.set()
        if self.force_exit and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def serve(
        self,
        sockets: list[socket.socket],
        on_started: Callable[[list[socket.socket]], Any] | None = None,
    ) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._exit_event = asyncio.Event()
        if self.should_exit:
            self._exit_event.set()
        runtime = AsyncioRuntime(loop)
        ctx = self.ctx = ServerContext(self.config, self.app, runtime)
        ctx.tls = create_tls_context(self.config)
        lifespan = Lifespan(self.app, self.config.lifespan, loop.create_future, runtime.spawn)
        with self._signals(loop):
            if not await self._startup(lifespan, runtime):
                return
            if lifespan.supported:
                ctx.lifespan_state = lifespan.state
            try:
                await self._listen(ctx, sockets)
                self._schedule_tick(ctx)
                if on_started is not None:
                    on_started(self.sockets)
                await self._exit_event.wait()
                await self._shutdown(ctx, runtime)
            finally:
                if self._tick is not None:
                    self._tick.cancel()
                for server in self._servers:
                    server.close()
            await lifespan.shutdown()

    async def _startup(self, lifespan: Lifespan, runtime: AsyncioRuntime) -> bool:
        """Run the lifespan startup (raising LifespanFailure when it fails). False when a shutdown
        was asked for before it completed: the app's startup is then cancelled and nothing is
        served, so a signal stops a server whose startup hangs."""
        assert self._exit_event is not None
        startup = asyncio.ensure_future(lifespan.startup())
        stop = asyncio.ensure_future(self._exit_event.wait())
        try:
            await asyncio.wait((startup, stop), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            startup.cancel()
            raise
        finally:
            stop.cancel()
        if startup.done():
            startup.result()
            return True
        logger.warning("Shutdown requested before the application startup completed")
        pending = [startup, *(task for task in runtime.background if not task.done())]
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=5)
        return False

    async def _listen(self, ctx: ServerContext, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> H1Server:
            return H1Server(ctx)

        if self.config.proxy_protocol:

            def factory() -> ProxyProtocolStage:  # type: ignore[misc]
                return ProxyProtocolStage(ctx)

        def tls_factory() -> TLSConnection:
            return TLSConnection(ctx)

        tls = ctx.tls
        for sock in sockets:
            if tls is None:
                server = await loop.create_server(
                    factory,  # type: ignore[arg-type]
                    sock=sock,
                    backlog=self.config.backlog,
                )
            else:
                server = await loop.create_server(
                    tls_factory,  # type: ignore[arg-type]
                    sock=sock,
                    backlog=self.config.backlog,
                    ssl=tls.context,
                    ssl_handshake_timeout=self.config.ssl_handshake_timeout,
                )
            self._servers.append(server)
            self.sockets.append(sock)

    def _schedule_tick(self, ctx: ServerContext) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Refresh just after each second boundary of the wall clock, so the date header is exact.
        delay = 1.0 - (time.time() % 1.0) + 0.001

        def tick() -> None:
            ctx.refresh_date()
            self._schedule_tick(ctx)

        self._tick = loop.call_at(now + delay, tick)

    async def _shutdown(self, ctx: ServerContext, runtime: AsyncioRuntime) -> None:
        loop = asyncio.get_running_loop()
        drain = self.drain
        if not drain:
            ctx.shutting_down = True
        # Stop accepting first, and close the listening sockets only once the connections already
        # accepted have their transports (two loop iterations): asyncio cannot attach a transport
        # to a closed Server, and would leave such a socket open with nobody to close it. Each of
        # them reaches connection_made, sees shutting_down and closes; it is waited for below.
        # Idle connections are closed after the listening sockets, so a client that sees its idle
        # connection closed also sees new connections refused.
        for sock in self.sockets:
            with contextlib.suppress(NotImplementedError):  # loops without add_reader
                loop.remove_reader(sock.fileno())
        for _ in range(2):
            await asyncio.sleep(0)
        # A worker handing over to its replacement (drain) serves the connections it accepted:
        # from here each response says connection: close, and idle keep-alive connections are
        # left to their deadline, since closing one races with a request being sent on it
        # (docs/discussion/processes.md).
        ctx.shutting_down = True
        for server in self._servers:
            server.close()
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
        for runner in list(runtime.busy):
            runner.cancel()
        # A closed or aborted transport releases its socket in a later loop iteration: wait for
        # that, so no connection outlives serve() (or is left to the garbage collector).
        await self._connections_closed(ctx, 1.0)
        # Each connection's runner task ends once its connection is gone and its app returned.
        runners = [task for task in runtime.runners if not task.done()]
        if runners:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(runners, timeout=5)

    async def _connections_closed(self, ctx: ServerContext, timeout: float) -> bool:
        """Wait until every connection is gone (True), or ``timeout`` or a forced exit (False)."""
        if not ctx.connections:
            return True
        idle = self._idle = asyncio.get_running_loop().create_future()

        def on_empty() -> None:
            if not idle.done():
                idle.set_result(None)

        ctx.on_empty = on_empty
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle, timeout)
        return not ctx.connections

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop) -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        installed = []
        for sig in HANDLED_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                pass
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        logger.info("Received %s, shutting down", signal.Signals(sig).name)
        self._set_exit(self.should_exit)  # a second signal cuts the grace period short
