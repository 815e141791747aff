"""Serving on asyncio: what the shared serve sequence (``wherry.backends.serving``) needs from the
loop. Connections are the loop's own transports calling the drivers directly (no adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

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
from .runtime import AsyncioRuntime


class AsyncioBackend(Backend):
    loop_name = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.base_events.Server] = []  # listeners the loop's server runs
        self._readers: list[socket.socket] = []  # plain listeners on asyncio, accepted by _accept
        self._connecting: set[asyncio.Task[Any]] = set()  # accepted, transport being made
        self.runtime: AsyncioRuntime | None = None

    async def serve(
        self,
        sockets: list[socket.socket],
        on_started: Callable[[list[socket.socket]], Any] | None = None,
    ) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.runtime = AsyncioRuntime(loop)
        await self._run(self.runtime, sockets, on_started)

    def _call_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    async def _listen(self, ctx: ServerContext, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> H1Driver:
            return H1Driver(ctx)

        if self.config.proxy_protocol:

            def factory() -> ProxyProtocolStage:  # type: ignore[misc]
                return ProxyProtocolStage(ctx)

        def tls_factory() -> ALPNSwitch:
            return ALPNSwitch(ctx)

        tls = ctx.tls
        # uvloop's server accepts and makes each transport in C, within the loop turn that sees
        # the listener readable: a flood of 10,000 connects leaves the kernel's queue empty (no
        # SYN is dropped and retried) where accepting here, a task per connection, kept it full
        # for seconds (docs/discussion/performance.md, "Accepting"). asyncio's own server makes
        # a task per connection too, so on its loop plain listeners accept in bursts here.
        burst_here = tls is None and not type(loop).__module__.startswith("uvloop")
        for sock in sockets:
            if burst_here:
                sock.setblocking(False)
                loop.add_reader(sock.fileno(), self._accept, sock, factory)
                self._readers.append(sock)
            else:
                # TLS: a handshake costs far more than a loop turn; the loop's server runs it,
                # with its timeout.
                server = await loop.create_server(
                    factory if tls is None else tls_factory,  # type: ignore[arg-type]
                    sock=sock,
                    backlog=self.config.backlog,
                    ssl=None if tls is None else tls.context,
                    ssl_handshake_timeout=None if tls is None else self.config.ssl_handshake_timeout,
                )
                self._servers.append(server)
            self.sockets.append(sock)

    def _accept(self, sock: socket.socket, factory: Callable[[], Any]) -> None:
        """The listening socket is readable: accept every waiting connection, up to a burst."""
        loop = self._loop
        assert loop is not None
        for _ in range(ACCEPT_BURST):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                loop.call_exception_handler({"message": "socket.accept() failed", "exception": exc})
                if exc.errno in OUT_OF_RESOURCES:
                    # Out of descriptors: stop accepting for a while (connections wait in the
                    # kernel's queue) rather than spin on a readable socket.
                    fd = sock.fileno()
                    loop.remove_reader(fd)
                    loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting, sock, factory)
                return
            conn.setblocking(False)
            connecting = loop.create_task(loop.connect_accepted_socket(factory, conn))
            self._connecting.add(connecting)
            connecting.add_done_callback(self._connected)

    def _resume_accepting(self, sock: socket.socket, factory: Callable[[], Any]) -> None:
        if sock in self._readers and self._loop is not None:
            self._loop.add_reader(sock.fileno(), self._accept, sock, factory)

    def _connected(self, connecting: asyncio.Task[Any]) -> None:
        self._connecting.discard(connecting)
        if not connecting.cancelled():
            connecting.exception()  # (a peer gone before its transport was made: nothing to do)

    async def _stop_accepting(self) -> None:
        # Close the listening sockets only once the connections already accepted have their
        # transports: asyncio cannot attach a transport to a closed Server, and would leave such a
        # socket open with nobody to close it.
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            with contextlib.suppress(NotImplementedError, ValueError, OSError):
                loop.remove_reader(sock.fileno())
        for _ in range(2):
            await asyncio.sleep(0)
        if self._connecting:
            await asyncio.wait(list(self._connecting), timeout=1.0)

    def _close_listeners(self) -> None:
        for sock in self._readers:
            with contextlib.suppress(ValueError, OSError):
                assert self._loop is not None
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._readers = []
        for server in self._servers:
            server.close()

    def _cancel_apps(self) -> None:
        assert self.runtime is not None
        for runner in list(self.runtime.busy):
            runner.cancel()

    def _app_work(self) -> Iterable[Waitable]:
        assert self.runtime is not None
        # The runners' tasks end (each once its app returned); free ones end now.
        return self.runtime.close()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        loop = self._loop
        if loop is None or not in_main_thread():
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

    def watch_readable(self, sock: socket.socket, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever ``sock`` is readable, until the returned function is called."""
        loop = self._loop
        assert loop is not None
        fd = sock.fileno()
        loop.add_reader(fd, callback)

        def stop() -> None:
            with contextlib.suppress(ValueError, OSError):  # already closed
                loop.remove_reader(fd)

        return stop
