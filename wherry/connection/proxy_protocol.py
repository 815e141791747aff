"""The PROXY protocol in front of the HTTP/1.1 driver: read the header, then step aside.

Rules of this module:

1. Only peers in ``--forwarded-allow-ips`` may send a PROXY header, and from them it is required
   (a load balancer configured for it always sends one). A connection from any other peer is handed
   to the HTTP/1.1 driver at once, untouched: a PROXY line from it is just a bad request.
2. The header must arrive whole within ``--timeout-request-head``; a malformed or late header
   closes the connection with nothing written (there is no protocol yet in which to answer).
3. Once the header is read, the driver is made with the addresses the header names (its
   ``named``; they pass on to a WebSocket or HTTP/2 successor), the transport is pointed at the
   driver (``set_protocol``) and given to it as it is, and the bytes that followed the header are
   passed on: from then on this stage is out of the path, and requests cost what they cost
   without the PROXY protocol.
4. The transport is never wrapped: every driver uses the backend's transport itself, so all of it
   works behind a PROXY header as without one (``set_protocol`` for an upgrade, the socket that
   ``loop.sendfile`` needs for ``http.response.pathsend``, the write buffer's size).
"""

from __future__ import annotations

import logging

from ..contracts import TimerHandle, Transport
from ..proto.proxy_protocol import ProxyHeaderParser, ProxyProtocolError
from .context import ServerContext
from .http1 import H1Driver
from .lifecycle import Addresses, address_pair

logger = logging.getLogger("wherry.error")


class ProxyProtocolStage:
    """The protocol a listener runs with ``--proxy-protocol``; becomes an ``H1Driver`` (rule 3)."""

    __slots__ = ("_closed", "_parser", "_peer", "_timer", "ctx", "transport")

    transport: Transport  # from connection_made on

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self._parser = ProxyHeaderParser()
        self._timer: TimerHandle | None = None
        self._closed = False
        self._peer = "-"

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        ctx = self.ctx
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and len(peer) >= 2 else "unix"
        if host not in ctx.trusted:
            self._hand_over(None, b"")  # rule 1: no PROXY header from this peer
            return
        self._peer = f"{peer[0]}:{peer[1]}" if host != "unix" else "unix"
        ctx.connections.add(self)
        if ctx.shutting_down:
            self._close()
            return
        runtime = ctx.runtime
        self._timer = runtime.call_at(runtime.time() + ctx.limits.head_timeout, self._on_timeout)

    def data_received(self, data: bytes) -> None:
        # (never called once closed: a closed transport reads no more, and after the hand-over
        # the transport calls the HTTP/1.1 driver)
        try:
            header = self._parser.feed(data)
        except ProxyProtocolError as exc:
            logger.info("Bad PROXY protocol header from %s: %s", self._peer, exc)
            self._close()
            return
        if header is None:
            return
        named: Addresses | None = None  # None: the connection's own addresses stand
        source, destination = header.source, header.destination
        if source is not None and destination is not None:
            if header.family == "UNIX":
                named = address_pair(None, destination[0])
            else:
                named = address_pair(source, destination)
        self._cancel_timer()
        self.ctx.connections.discard(self)
        self._hand_over(named, self._parser.rest)

    def _hand_over(self, named: Addresses | None, rest: bytes) -> None:
        driver = H1Driver(self.ctx, named)
        transport = self.transport
        transport.set_protocol(driver)
        driver.connection_made(transport)
        if rest:
            driver.data_received(rest)

    def eof_received(self) -> bool:
        logger.info("Connection from %s closed before a complete PROXY header", self._peer)
        self._close()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed = True
        self._cancel_timer()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        pass  # nothing is written before the header is read

    def resume_writing(self) -> None:
        pass

    def _on_timeout(self) -> None:
        self._timer = None  # (a closed stage has cancelled its timer: it is open here)
        logger.info("PROXY protocol header timeout from %s", self._peer)
        self._close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._closed = True
        self._cancel_timer()
        self.transport.close()  # (closing a transport twice does nothing)

    def shutdown(self) -> None:
        self._close()  # nothing is owed on a connection that has not sent its first request

    def abort_all(self) -> None:
        if not self._closed:
            self._closed = True
            self.transport.abort()
