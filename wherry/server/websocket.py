"""Drives one WebSocket over a connection that an HTTP/1.1 Upgrade handed over: the sans-IO session
below, the ASGI cycle above, the transport beside.

Rules of this module:

1. ``take_over`` is the only entry: the HTTP/1.1 driver calls it when every request before the
   upgrade is answered, and from then on the transport calls this driver (``set_protocol``). The
   bytes the HTTP/1.1 core read past the request head are this driver's first input.
2. The handshake is checked before the app is called: a broken one is answered 400 (or 426) and
   the app never sees it. Nothing the client sends before the app accepts is parsed; it waits
   (reading pauses past ``PENDING_LIMIT``) and is parsed after the 101, or dropped with a denial.
3. Every buffer has a bound: messages queued for the app (``ws_max_queue``; reading pauses while
   the queue is full and resumes when the app has taken half of it), a message's size
   (``ws_max_size``, also after inflating), and the transport's write buffer (``send()`` waits while
   it is paused).
4. Every wait has a deadline, computed by the session: the keepalive ping and its pong, and the
   peer's answer to our Close. No clock runs while reading is paused.
5. After the closing handshake the server closes the TCP connection first (RFC 6455 §7.1.1).
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

from ..asgi.http import ClientDisconnected, FutureLike
from ..asgi.scope import websocket_scope
from ..asgi.websocket import ABNORMAL, WebSocketCycle
from ..logs import format_client, printable
from ..proto.events import Headers, LocalProtocolError, RemoteProtocolError, Request
from ..proto.websocket import (
    Message,
    WebSocketClosed,
    WebSocketSession,
    h1_accept,
    h1_key,
    h1_refusal,
    negotiate,
    parse_offer,
)
from .context import ServerContext, TimerHandle

if TYPE_CHECKING:
    from websockets.extensions.base import Extension

    from ..proto.http1 import H1Connection

logger = logging.getLogger("wherry.error")

PENDING_LIMIT = 65536  # bytes held from a client that sends before its handshake is answered
LINGER = 2.0  # seconds a refused connection keeps dropping input so its answer is read
CLOSE_TIMEOUT = 10.0  # the wait for the peer's Close when --ws-ping-timeout is 0


def take_over(
    ctx: ServerContext,
    transport: Any,
    core: H1Connection,
    request: Request,
    client: tuple[str, int] | None,
    server: tuple[str, int | None] | None,
    scheme: str,
    trusted_peer: bool,
    read_paused: bool,
) -> WebSocketServer:
    """Hand ``transport`` (whose HTTP/1.1 driver parsed the upgrade ``request``) to a new driver."""
    driver = WebSocketServer(ctx, transport, core, request, client, server, scheme)
    transport.set_protocol(driver)
    ctx.connections.add(driver)
    if read_paused:
        transport.resume_reading()
    driver.start(trusted_peer, core.trailing_data)
    return driver


class WebSocketServer:
    """One WebSocket connection on the server side (HTTP/1.1 Upgrade)."""

    __slots__ = (
        "_closed",
        "_denied_size",
        "_drain_waiter",
        "_extensions",
        "_extensions_header",
        "_key",
        "_lingering",
        "_pending",
        "_started_at",
        "_timer",
        "client",
        "core",
        "create_future",
        "ctx",
        "cycle",
        "max_queue",
        "read_paused",
        "request",
        "scheme",
        "server",
        "session",
        "transport",
        "write_paused",
    )

    def __init__(
        self,
        ctx: ServerContext,
        transport: Any,
        core: H1Connection,
        request: Request,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str,
    ) -> None:
        self.ctx = ctx
        self.create_future = ctx.runtime.create_future
        self.max_queue = ctx.config.ws_max_queue
        self.transport = transport
        self.core = core
        self.request = request
        self.client = client
        self.server = server
        self.scheme = scheme
        self.cycle: WebSocketCycle | None = None
        self.session: WebSocketSession | None = None
        self.write_paused = False
        self._drain_waiter: FutureLike | None = None
        self._timer: TimerHandle | None = None
        self._closed = False
        self._lingering = False
        self.read_paused = False  # reading is paused (the cycle then reports what it consumed)
        self._pending = b""
        self._key = b""
        self._extensions_header: bytes | None = None
        self._extensions: list[Extension] = []
        self._started_at = 0.0
        self._denied_size = 0

    def start(self, trusted_peer: bool, pending: bytes) -> None:
        ctx = self.ctx
        request = self.request
        headers = request.headers
        try:
            offer = parse_offer(headers)
            self._key = h1_key(request.method, request.http_version, headers)
        except RemoteProtocolError as exc:
            logger.info(
                "Bad WebSocket handshake from %s: %d %s",
                format_client(self.client),
                exc.status,
                printable(exc.detail.encode("utf-8", "replace")),
            )
            self._refuse(h1_refusal(exc.status, exc.detail, ctx.default_headers.block), exc.status)
            return
        self._extensions_header, self._extensions = negotiate(offer, ctx.config.ws_per_message_deflate)
        client, scheme, root_path = self.client, self.scheme, ctx.root_path
        if request.forwarded and trusted_peer:
            client, scheme, headers, root_path = ctx.proxy_view(headers, client, scheme)
        tls = ctx.tls_extension(self.transport)
        scope = websocket_scope(
            request.http_version,
            request.raw_path,
            request.query_string,
            headers,
            scheme,
            client,
            self.server,
            root_path,
            ctx.lifespan_state,
            offer.subprotocols,
            {"tls": tls} if tls is not None else None,
        )
        cycle = self.cycle = WebSocketCycle(scope, self)
        if pending:
            self._hold(pending)
        if ctx.access_log:
            self._started_at = perf_counter()
        if ctx.shutting_down or (ctx.limit_concurrency is not None and ctx.over_capacity()):
            self._refuse(self.core.error_response(503, "Service Unavailable"), 503)
            return
        ctx.tasks += 1
        ctx.total_requests += 1
        ctx.runtime.run_app(ctx.app, scope, cycle.receive, cycle.send, cycle.app_finished)

    # ------------------------------------------------------------------ backend side

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            if not self._closed:
                self._hold(data)
            return
        if self._closed:
            return
        self._feed(session, data)

    def eof_received(self) -> bool:
        session = self.session
        if session is not None and not self._closed:
            self._feed(session, b"")
        elif self.cycle is not None:
            self.cycle.feed_closed(ABNORMAL)
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed = True
        self.ctx.connection_closed(self)
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        cycle = self.cycle
        if cycle is not None:
            cycle.feed_closed(ABNORMAL)
        waiter = self._drain_waiter  # write_paused stays: a drain waiting on it raises
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ reading

    def _hold(self, data: bytes) -> None:
        """Bytes from before the handshake is answered: kept for the session, bounded."""
        self._pending += data
        if len(self._pending) > PENDING_LIMIT and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _feed(self, session: WebSocketSession, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        for event in session.receive_data(data, self.ctx.runtime.time()):
            if type(event) is Message:
                cycle.feed_message(event.data)
            elif type(event) is WebSocketClosed:
                cycle.feed_closed(event.code, event.reason)
        out, close = session.data_to_send()
        if out:
            self.transport.write(out)
        if close:
            self._close()
            return
        if not self.read_paused and cycle.queued >= self.max_queue:
            self.read_paused = True
            session.pause_reading()
            self.transport.pause_reading()
        if self._timer is None:  # an armed timer fires at or before the deadline and re-arms
            self._arm_timer()

    # ------------------------------------------------------------------ WebSocketStream

    def accept(self, cycle: WebSocketCycle, subprotocol: str | None, headers: Headers) -> None:
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        ctx = self.ctx
        response = h1_accept(
            self._key,
            subprotocol.encode("latin-1", "replace") if subprotocol is not None else None,
            self._extensions_header,
            headers,
            ctx.default_headers.block,
        )
        now = ctx.runtime.time()
        config = ctx.config
        timeout = config.ws_ping_timeout
        session = self.session = WebSocketSession(
            config.ws_max_size,
            self._extensions,
            now,
            config.ws_ping_interval,
            timeout,
            timeout or CLOSE_TIMEOUT,
        )
        self.transport.write(response)
        self._log(101)
        pending = self._pending
        self._pending = b""
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        if pending:
            self._feed(session, pending)
        else:
            self._arm_timer()

    def send_message(self, cycle: WebSocketCycle, data: bytes | str) -> None:
        session = self.session
        if self._closed or session is None or not session.can_send:
            raise ClientDisconnected("the WebSocket is closed")
        if type(data) is str:
            self.transport.write(session.send_text(data))
        else:
            self.transport.write(session.send_bytes(data))  # type: ignore[arg-type]

    def close(self, cycle: WebSocketCycle, code: int, reason: str) -> None:
        session = self.session
        if session is None:
            return
        out = session.send_close(code, reason, self.ctx.runtime.time())
        if self._closed:
            return
        if out:
            self.transport.write(out)
        if self.read_paused:  # the peer's Close must be read
            self.read_paused = False
            session.resume_reading(self.ctx.runtime.time())
            self.transport.resume_reading()
        self._arm_timer()

    def respond(
        self, cycle: WebSocketCycle, status: int, headers: Headers, body: bytes, more_body: bool
    ) -> None:
        """The handshake is denied with an HTTP response (403 for a close, or the app's own)."""
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        core = self.core
        self._pending = b""
        self._denied_size = len(body)
        if more_body:
            data = core.response_head(self.request, status, headers, False)
            if body:
                data += core.response_data(body)
            self.transport.write(data)
        else:
            self.transport.write(
                core.response(self.request, status, headers, body, False, self.ctx.runtime.time())
            )
            self._log(status, len(body))
            self._close_after_answer()

    def respond_body(self, cycle: WebSocketCycle, body: bytes, more_body: bool) -> None:
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        core = self.core
        try:
            data = core.response_data(body) if body else b""
            if not more_body:
                data += core.response_end(self.ctx.runtime.time())
        except LocalProtocolError:
            self.abort(cycle)
            raise
        if data:
            self.transport.write(data)
        self._denied_size += len(body)
        if not more_body:
            self._log(cycle.status, self._denied_size)
            self._close_after_answer()

    def message_consumed(self, cycle: WebSocketCycle) -> None:
        if self.read_paused and cycle.queued <= self.max_queue // 2 and not self._closed:
            session = self.session
            self.read_paused = False
            if session is not None:
                session.resume_reading(self.ctx.runtime.time())
            self.transport.resume_reading()
            self._arm_timer()

    async def drain(self) -> None:
        """Wait until the transport's buffer is written down (``resume_writing``). A session that
        ends meanwhile still writes what was queued before its Close, so only a connection lost
        with bytes queued (``write_paused`` is left set) raises, as does a drain begun after the
        end with the buffer full."""
        while self.write_paused and not self._closed:
            waiter = self._drain_waiter
            if waiter is None or waiter.done():
                waiter = self._drain_waiter = self.ctx.runtime.create_future()
            await waiter
        if self.write_paused:
            raise ClientDisconnected("the connection is closed")

    def abort(self, cycle: WebSocketCycle) -> None:
        cycle.feed_closed(ABNORMAL)
        if not self._closed:
            self._closed = True
            self.transport.abort()

    def cycle_finished(self, cycle: WebSocketCycle) -> None:
        self.ctx.tasks -= 1
        if self.ctx.access_log and cycle.status == 101:
            self._log_line(101, 0)

    # ------------------------------------------------------------------ time

    def _arm_timer(self) -> None:
        session = self.session
        if session is None or self._closed:
            return
        deadline = session.deadline
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires early and re-arms then
            timer.cancel()
        self._timer = self.ctx.runtime.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        session = self.session
        if self._closed or session is None:
            return
        out, close = session.on_deadline(self.ctx.runtime.time())
        if out:
            self.transport.write(out)
        closed = session.closed
        if closed is not None and self.cycle is not None:
            self.cycle.feed_closed(closed.code, closed.reason)
        if close:
            self._close()
            return
        self._arm_timer()

    # ------------------------------------------------------------------ closing

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.transport.close()

    def _refuse(self, response: bytes, status: int) -> None:
        self.transport.write(response)
        self._log(status, len(response) - response.index(b"\r\n\r\n") - 4)
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        """Close once the HTTP answer is written: half-close, drop input until the peer closes or
        ``LINGER`` passes, then close (the HTTP/1.1 driver's rule 5)."""
        if self._closed:
            return
        self._closed = True
        transport = self.transport
        try:
            can_linger = transport.can_write_eof() and not transport.is_closing()
            if can_linger:
                transport.write_eof()
        except (AttributeError, NotImplementedError, OSError):
            can_linger = False
        if not can_linger:
            transport.close()
            return
        self._lingering = True
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        runtime = self.ctx.runtime
        self._timer = runtime.call_at(runtime.time() + LINGER, transport.close)

    def shutdown(self) -> None:
        """Graceful shutdown: a Close with 1001 (going away) to an open session; the app sees it
        as the end of the session once the peer answers."""
        session = self.session
        if self._lingering:
            self.transport.close()
        elif session is not None and session.can_send and not self._closed:
            self.transport.write(session.send_close(1001, "server shutting down", self.ctx.runtime.time()))
            self._arm_timer()

    def abort_all(self) -> None:
        """The graceful period is over."""
        cycle = self.cycle
        if cycle is not None:
            cycle.feed_closed(ABNORMAL)
        if not self._closed or self._lingering:
            self._closed = True
            self.transport.abort()

    # ------------------------------------------------------------------ access log

    def _log(self, status: int, size: int = 0) -> None:
        """The access line (and metrics) of a handshake answered with an HTTP response (a denial or
        a refusal); an accepted WebSocket is logged as 101 when it ends, with the time it lasted."""
        if self.ctx.access_log and status != 101:
            self._log_line(status, size)

    def _log_line(self, status: int, size: int) -> None:
        """Through the server's observer, as an HTTP request is (--access-log-format, metrics)."""
        record = _AccessRecord(
            self.cycle.scope if self.cycle is not None else {"client": self.client, "headers": []},
            self.request,
            status,
            size,
            self._started_at or perf_counter(),
        )
        self.ctx.observer.request_done(cast(Any, record))


class _AccessRecord:
    """What the observer reads of a finished request, for a WebSocket handshake."""

    __slots__ = ("_start", "request", "scope", "sent_bytes", "started_at", "status")

    def __init__(self, scope: Any, request: Request, status: int, size: int, started_at: float) -> None:
        self.scope = scope
        self.request = request
        self.status = status
        self.sent_bytes = size
        self.started_at = started_at
        self._start = None  # the response headers an access format may ask for: none kept
