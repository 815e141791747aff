"""Which driver serves a connection: HTTP/1.1 by default (it hands a connection that opens with
the HTTP/2 preface, or upgrades to h2c, to the HTTP/2 driver itself); over TLS, the protocol ALPN
chose once the handshake is done."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..contracts import Transport
from .context import ServerContext
from .http1 import H1Driver

if TYPE_CHECKING:
    from .http2 import H2Driver


class ALPNSwitch:
    """What asyncio attaches to a TLS connection. Its ``connection_made`` runs after the
    handshake, when ALPN is known: it installs the driver for the chosen protocol and steps
    aside, so no call goes through it afterwards."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def connection_made(self, transport: Transport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        driver: H1Driver | H2Driver
        if chosen == "h2" and self.ctx.config.http2:
            from .http2 import H2Driver  # (imported by the first HTTP/2 connection)

            driver = H2Driver(self.ctx)
        else:
            driver = H1Driver(self.ctx)
        transport.set_protocol(driver)
        driver.connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        pass  # only reached if the connection ends before connection_made

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced before any data
        pass

    def eof_received(self) -> bool:  # pragma: no cover
        return False

    def pause_writing(self) -> None:  # pragma: no cover
        pass

    def resume_writing(self) -> None:  # pragma: no cover
        pass
