"""Serving on asyncio: what the shared serve sequence (``wherry.backends.serving``) needs from the
loop. Connections are the loop's own transports calling the drivers directly (no adapter)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...server.context import ServerContext
from ...server.dispatch import TLSConnection
from ...server.http1 import H1Server
from ...server.proxy_protocol import ProxyProtocolStage
from ...sockets import HANDLED_SIGNALS
from ..serving import ServerBase, Waitable, in_main_thread
from .runtime import AsyncioRuntime


class AsyncioServer(ServerBase):
    loop_name = "asyncio"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[asyncio.base_events.Server] = []
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

    async def _stop_accepting(self) -> None:
        # Close the listening sockets only once the connections already accepted have their
        # transports (two loop iterations): asyncio cannot attach a transport to a closed Server,
        # and would leave such a socket open with nobody to close it.
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            with contextlib.suppress(NotImplementedError):  # loops without add_reader
                loop.remove_reader(sock.fileno())
        for _ in range(2):
            await asyncio.sleep(0)

    def _close_listeners(self) -> None:
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
