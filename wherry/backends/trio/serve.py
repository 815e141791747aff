"""Serving on trio: what the shared serve sequence (``wherry.backends.serving``) needs from the
loop, and each connection from accept to close.

Rules of this module:

1. Everything runs in one nursery that ``serve`` opens and cancels on its way out: the timer
   task, the accept loops, the connection handlers, spawned work (the lifespan) and the signal
   watcher. ``serve`` returns or raises only once they are all gone.
2. The listening sockets are the ones the options bound (TCP, Unix, inherited fds); each has an
   accept loop in a cancel scope of its own, accepting a burst per readiness. Stopping to accept
   cancels those scopes; connections already accepted still reach their driver, see the
   shutdown and close.
3. A connection's handler wraps its socket in a ``trio.SocketStream`` (and a ``trio.SSLStream``,
   handshake bounded by ``--ssl-handshake-timeout``), then runs a ``TrioTransport`` with the
   driver: ``H1Driver`` (``ProxyProtocolStage`` with ``--proxy-protocol``), or over TLS the
   protocol ALPN chose (``ALPNSwitch`` of ``wherry.connection.alpn``, as on asyncio).
4. Each handler runs in a cancel scope: cancelling it (the end of the graceful shutdown) cancels
   the application calls of that connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

from ...connection.alpn import ALPNSwitch
from ...connection.context import ServerContext
from ...connection.http1 import H1Driver
from ...connection.proxy_protocol import ProxyProtocolStage
from ...sockets import HANDLED_SIGNALS
from ..serving import (
    ACCEPT_BURST,
    ACCEPT_RETRY_DELAY,
    OUT_OF_RESOURCES,
    Backend,
    Waitable,
    in_main_thread,
)
from .runtime import Spawned, TrioRuntime
from .transport import TrioTransport

logger = logging.getLogger("wherry.error")


class TrioBackend(Backend):
    loop_name = "trio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runtime: TrioRuntime | None = None
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._accepting: list[trio.CancelScope] = []
        self._handlers: set[Spawned] = set()
        self._listeners_closed = False

    async def serve(
        self,
        sockets: list[socket.socket],
        on_started: Callable[[list[socket.socket]], Any] | None = None,
    ) -> None:
        error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            runtime = self.runtime = TrioRuntime(nursery)
            nursery.start_soon(runtime.run_timers)
            try:
                await self._run(runtime, sockets, on_started)
            except BaseException as exc:  # raised as itself below, not in an exception group
                error = exc
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error

    def _call_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):  # served and gone already
            self._token.run_sync_soon(fn, *args)

    # ------------------------------------------------------------------ accepting

    async def _listen(self, ctx: ServerContext, sockets: list[socket.socket]) -> None:
        assert self._nursery is not None
        for sock in sockets:
            scope = trio.CancelScope()
            self._accepting.append(scope)
            self._nursery.start_soon(self._accept, ctx, sock, scope)
            self.sockets.append(sock)

    async def _accept(self, ctx: ServerContext, sock: socket.socket, scope: trio.CancelScope) -> None:
        assert self._nursery is not None and self.runtime is not None
        start = self._nursery.start_soon
        handle = self._handle
        with scope:
            while True:
                await trio.lowlevel.wait_readable(sock)
                for _ in range(ACCEPT_BURST):
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        break
                    except OSError as exc:
                        self.runtime.report({"message": "socket.accept() failed", "exception": exc})
                        if exc.errno in OUT_OF_RESOURCES:
                            await trio.sleep(ACCEPT_RETRY_DELAY)
                        break
                    conn.setblocking(False)
                    start(handle, ctx, conn)

    async def _stop_accepting(self) -> None:
        for scope in self._accepting:
            scope.cancel()
        # Connections accepted in the last burst have handler tasks that have not run yet: let
        # them reach their driver (which sees the shutdown and closes).
        for _ in range(2):
            await trio.lowlevel.checkpoint()

    def _close_listeners(self) -> None:
        if self._listeners_closed:
            return
        self._listeners_closed = True
        for scope in self._accepting:
            scope.cancel()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                trio.lowlevel.notify_closing(sock)
            sock.close()

    # ------------------------------------------------------------------ connections

    async def _handle(self, ctx: ServerContext, conn: socket.socket) -> None:
        runtime = self.runtime
        assert runtime is not None
        handler = Spawned()
        self._handlers.add(handler)
        try:
            with handler.scope:
                await self._connection(ctx, runtime, conn)
        except Exception as exc:
            runtime.report({"message": "Exception in a connection handler", "exception": exc})
        finally:
            conn.close()
            self._handlers.discard(handler)
            handler.finish()

    async def _connection(self, ctx: ServerContext, runtime: TrioRuntime, conn: socket.socket) -> None:
        tls = ctx.tls
        transport = await open_transport(
            conn, runtime, None if tls is None else tls.context, self.config.ssl_handshake_timeout
        )
        if transport is None:
            return
        protocol: Any
        if tls is not None:
            protocol = ALPNSwitch(ctx)
        elif self.config.proxy_protocol:
            protocol = ProxyProtocolStage(ctx)
        else:
            protocol = H1Driver(ctx)
        await transport.run(protocol)

    def _cancel_apps(self) -> None:
        for handler in list(self._handlers):
            handler.cancel()

    def _app_work(self) -> Iterable[Waitable]:
        return list(self._handlers)

    # ------------------------------------------------------------------ signals and the channel

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if self._nursery is None or not in_main_thread():
            yield
            return
        with trio.open_signal_receiver(*HANDLED_SIGNALS) as received:
            scope = trio.CancelScope()

            async def watch() -> None:
                with scope:
                    async for sig in received:
                        self._on_signal(sig)

            self._nursery.start_soon(watch)
            try:
                yield
            finally:
                scope.cancel()

    def watch_readable(self, sock: socket.socket, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever ``sock`` is readable, until the returned function is called."""
        assert self._nursery is not None
        scope = trio.CancelScope()

        async def watch() -> None:
            with scope:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    callback()

        self._nursery.start_soon(watch)
        return scope.cancel


async def open_transport(
    conn: socket.socket, runtime: TrioRuntime, tls: ssl.SSLContext | None, handshake_timeout: float
) -> TrioTransport | None:
    """The transport of an accepted connection (rule 3): a ``trio.SocketStream``, inside a
    ``trio.SSLStream`` once its handshake is done when ``tls`` is given. None, with the socket
    closed, when the handshake failed or took longer than ``handshake_timeout``."""
    tsock = trio.socket.from_stdlib_socket(conn)
    stream = trio.SocketStream(tsock)
    if tls is None:
        return TrioTransport(stream, tsock, conn, runtime)
    secure = trio.SSLStream(stream, tls, server_side=True)
    with trio.move_on_after(handshake_timeout):
        try:
            await secure.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            logger.debug("TLS handshake failed: %r", exc)
        else:
            return TrioTransport(secure, tsock, conn, runtime, tls)
    tsock.close()
    return None
