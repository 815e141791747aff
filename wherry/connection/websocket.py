"""Drives one WebSocket: the sans-IO session below, the ASGI cycle above, and beside them a carrier:
the connection an HTTP/1.1 Upgrade handed over (``H1Carrier``, here), or an HTTP/2 extended CONNECT
stream (``H2Carrier`` in ``connection/h2websocket.py``).

Rules of this module:

1. ``WebSocketDriver`` knows no HTTP version. A carrier brings it bytes with a transport's
   callbacks (``data_received``, ``eof_received``, ``connection_lost``, ``pause_writing``,
   ``resume_writing``) and takes its bytes with a transport's methods (``write``,
   ``pause_reading``, ``resume_reading``, ``close``, ``abort``); the HTTP answers of the handshake
   (the 101 or the 200, a refusal, the denial response) are the carrier's (``Carrier``). The
   HTTP/1.1 carrier hands its transport's own methods over, so that path costs no extra call.
2. ``take_over`` is the HTTP/1.1 entry: the HTTP/1.1 driver calls it when every request before the
   upgrade is answered, and from then on the transport calls this driver (``set_protocol``). The
   bytes the HTTP/1.1 core read past the request head are this driver's first input.
3. The handshake is checked before the app is called: a broken one is answered 400 (or 426) and
   the app never sees it. Nothing the client sends before the app accepts is parsed; it waits
   (reading pauses past ``PENDING_LIMIT``) and is parsed after the accept, or dropped with a denial.
4. Every buffer has a bound: messages queued for the app (``ws_max_queue``; reading pauses while
   the queue is full and resumes when the app has taken half of it), a message's size
   (``ws_max_size``, also after inflating), and the carrier's write buffer (``send()`` waits while
   it is paused). What the peer's own input makes the server write (pongs, a Close) is not
   queued without bound either: while it cannot be written, reading pauses.
5. Every wait has a deadline, computed by the session: the keepalive ping and its pong, and the
   peer's answer to our Close. No clock runs while reading is paused.
6. After the closing handshake the server ends its side first (RFC 6455 §7.1.1): the TCP
   connection, or the stream (END_STREAM, RFC 8441 §5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from ..asgi.http import ClientDisconnected
from ..asgi.scope import websocket_scope
from ..asgi.websocket import ABNORMAL, WebSocketCycle
from ..contracts import TimerHandle, Transport
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
from .context import ServerContext
from .lifecycle import ConnectionInfo, DeadlineTimer, WriteGate, buffered, half_close, linger

if TYPE_CHECKING:
    from websockets.extensions.base import Extension

    from ..proto.http1 import H1Connection

logger = logging.getLogger("wherry.error")

PENDING_LIMIT: Final = 65536  # bytes held from a client that sends before its handshake is answered
CLOSE_TIMEOUT: Final = 10.0  # the wait for the peer's Close when --ws-ping-timeout is 0


class Carrier(Protocol):
    """What carries one WebSocket for ``WebSocketDriver``: an HTTP/1.1 connection after its
    Upgrade (``H1Carrier``) or an HTTP/2 extended CONNECT stream (``H2Carrier``)."""

    info: ConnectionInfo  # the connection's (scheme http or https: the scope says ws or wss)

    def write(self, data: bytes) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        """The orderly end of the server's side: the TCP connection's, or END_STREAM."""

    def reset(self) -> None:
        """The abrupt end: a TCP reset, or RST_STREAM CANCEL."""

    def check(self, request: Request) -> None:
        """The carrier's half of the handshake; raises ``RemoteProtocolError``."""

    def accept(self, subprotocol: bytes | None, extensions: bytes | None, headers: Headers) -> int:
        """Write the answer that completes the handshake; its status. Raises
        ``LocalProtocolError`` (and writes nothing) for fields that cannot be sent."""

    def refusal(self, status: int, detail: str) -> int:
        """Write a plain-text answer to a handshake refused before the app; its body size."""

    def respond(self, request: Request, status: int, headers: Headers, body: bytes, more_body: bool) -> None:
        """The start of a denial response (the app's, or 403 / 500)."""

    def respond_body(self, body: bytes, more_body: bool, now: float) -> None: ...

    def answered(self) -> bool:
        """The HTTP answer is complete. True: its end is half-closed and input should be dropped
        for a while (``LINGER``) so the peer reads it; False: the carrier has ended."""

    def app_finished(self) -> None:
        """The app's call ended (after ``WebSocketDriver.start`` called it)."""


def take_over(
    ctx: ServerContext,
    transport: Transport,
    core: H1Connection,
    request: Request,
    info: ConnectionInfo,
    read_paused: bool,
) -> WebSocketDriver:
    """Hand ``transport`` (whose HTTP/1.1 driver parsed the upgrade ``request``) to a new driver."""
    carrier = H1Carrier(ctx, transport, core, info)
    driver = WebSocketDriver(ctx, carrier, request)
    driver.registered = True
    transport.set_protocol(driver)
    ctx.connections.add(driver)
    if read_paused:
        transport.resume_reading()
    driver.start(core.trailing_data)
    return driver


class H1Carrier:
    """An HTTP/1.1 connection after its Upgrade: the transport's own methods, the 101 and the
    HTTP/1.1 answers of a refused or denied handshake."""

    __slots__ = (
        "_key",
        "close",
        "core",
        "ctx",
        "info",
        "pause_reading",
        "reset",
        "resume_reading",
        "transport",
        "write",
    )

    def __init__(
        self, ctx: ServerContext, transport: Transport, core: H1Connection, info: ConnectionInfo
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.core = core
        self.info = info
        self.write: Callable[[bytes], None] = transport.write
        self.pause_reading: Callable[[], None] = transport.pause_reading
        self.resume_reading: Callable[[], None] = transport.resume_reading
        self.close: Callable[[], None] = transport.close
        self.reset: Callable[[], None] = transport.abort
        self._key = b""

    def buffered(self) -> int:
        return buffered(self.transport)

    def check(self, request: Request) -> None:
        self._key = h1_key(request.method, request.http_version, request.headers)

    def accept(self, subprotocol: bytes | None, extensions: bytes | None, headers: Headers) -> int:
        self.transport.write(
            h1_accept(self._key, subprotocol, extensions, headers, self.ctx.default_headers.block)
        )
        return 101

    def refusal(self, status: int, detail: str) -> int:
        if status in (400, 426):
            response = h1_refusal(status, detail, self.ctx.default_headers.block)
        else:
            response = self.core.error_response(status, detail)
        self.transport.write(response)
        return len(response) - response.index(b"\r\n\r\n") - 4

    def respond(self, request: Request, status: int, headers: Headers, body: bytes, more_body: bool) -> None:
        core = self.core
        if more_body:
            data = core.response_head(request, status, headers, False)
            if body:
                data += core.response_data(body)
            self.transport.write(data)
        else:
            self.transport.write(
                core.response(request, status, headers, body, False, self.ctx.runtime.time())
            )

    def respond_body(self, body: bytes, more_body: bool, now: float) -> None:
        core = self.core
        data = core.response_data(body) if body else b""
        if not more_body:
            data += core.response_end(now)
        if data:
            self.transport.write(data)

    def answered(self) -> bool:
        """Half-close once the answer is written, where the transport can (lifecycle rule 4);
        otherwise close."""
        if half_close(self.transport, False):
            return True
        self.transport.close()
        return False

    def app_finished(self) -> None:
        pass  # the connection is the WebSocket's alone: its end is the transport's


class WebSocketDriver:
    """One WebSocket on the server side, whatever carries it."""

    __slots__ = (
        "_accepted",
        "_closed",
        "_denied_size",
        "_extensions",
        "_extensions_header",
        "_gate",
        "_linger",
        "_lingering",
        "_lost",
        "_pending",
        "_started_at",
        "_timer",
        "_write_held",
        "carrier",
        "create_future",
        "ctx",
        "cycle",
        "max_queue",
        "read_paused",
        "registered",
        "request",
        "session",
        "write",
        "write_paused",
    )

    def __init__(self, ctx: ServerContext, carrier: Carrier, request: Request) -> None:
        self.ctx = ctx
        self.create_future = ctx.runtime.create_future
        self.max_queue = ctx.config.ws_max_queue
        self.carrier = carrier
        self.write = carrier.write
        self.request = request
        self.registered = False  # in ctx.connections (a connection of its own: HTTP/1.1)
        self.cycle: WebSocketCycle | None = None
        self.session: WebSocketSession | None = None
        self.write_paused = False
        self._gate = WriteGate(ctx, self)
        self._timer = DeadlineTimer(ctx.runtime, self)
        self._linger: TimerHandle | None = None
        self._closed = False
        self._lost = False  # the connection ended other than in order: what was written may be lost
        self._lingering = False
        self._accepted = False
        self.read_paused = False  # reading paused for the queue (the cycle then reports what it takes)
        self._write_held = False  # reading paused until what the peer's input made us write is written
        self._pending = b""
        self._extensions_header: bytes | None = None
        self._extensions: list[Extension] = []
        self._started_at = 0.0
        self._denied_size = 0

    def start(self, pending: bytes) -> bool:
        """Check the handshake and call the app; False when it was refused before the app."""
        ctx = self.ctx
        carrier = self.carrier
        request = self.request
        headers = request.headers
        try:
            offer = parse_offer(headers)
            carrier.check(request)
        except RemoteProtocolError as exc:
            logger.info(
                "Bad WebSocket handshake from %s: %d %s",
                format_client(carrier.info.client),
                exc.status,
                printable(exc.detail.encode("utf-8", "replace")),
            )
            self._refuse(exc.status, exc.detail)
            return False
        self._extensions_header, self._extensions = negotiate(offer, ctx.config.ws_per_message_deflate)
        info = carrier.info
        client, scheme, root_path = info.client, info.scheme, ctx.root_path
        if request.forwarded and info.trusted:
            client, scheme, headers, root_path = ctx.proxy_view(headers, client, scheme)
        tls = info.tls
        scope = websocket_scope(
            request.http_version,
            request.raw_path,
            request.query_string,
            headers,
            scheme,
            client,
            info.server,
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
            self._refuse(503, "Service Unavailable")
            return False
        ctx.tasks += 1
        ctx.total_requests += 1
        ctx.runtime.run_app(ctx.app, scope, cycle.receive, cycle.send, cycle.app_finished)
        return True

    # ------------------------------------------------------------------ the carrier's callbacks

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
        if exc is not None or not self._closed:
            self._lost = True  # (after our orderly close, the carrier flushed what it held)
        self._end()
        if self.registered:
            self.ctx.connection_closed(self)
        linger = self._linger
        if linger is not None:
            linger.cancel()
            self._linger = None
        cycle = self.cycle
        if cycle is not None:
            cycle.feed_closed(ABNORMAL)
        self._gate.ended()  # a drain waiting on it raises (``_lost``)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.registered:  # (an HTTP/2 stream's stalls are the HTTP/2 connection's to bound)
            self._gate.paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._closed:
            self._gate.wake()  # what a closed connection still holds keeps its stall clock
        else:
            self._gate.resumed()
        if self._write_held and not self._closed:
            self._write_held = False
            if not self.read_paused:
                self._resume_reading()

    # ------------------------------------------------------------------ reading

    def _hold(self, data: bytes) -> None:
        """Bytes from before the handshake is answered: kept for the session, bounded."""
        self._pending += data
        if len(self._pending) > PENDING_LIMIT and not self.read_paused:
            self.read_paused = True
            self.carrier.pause_reading()

    def _feed(self, session: WebSocketSession, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        for event in session.receive_data(data, self.ctx.clock()):
            if type(event) is Message:
                cycle.feed_message(event.data)
            else:  # WebSocketClosed, the only other event
                closed = cast(WebSocketClosed, event)
                cycle.feed_closed(closed.code, closed.reason)
                if closed.code == ABNORMAL:
                    self._lost = True  # the input ended with no Close: the peer is gone
        out, close = session.data_to_send()
        if out:
            self.write(out)
            if self.write_paused and not self._write_held and not self._closed:
                # The peer's input made us write (pongs, a Close) and the peer does not read:
                # read no more of it until that is written. (Reading is not paused for the queue:
                # input arrives only while the carrier reads.)
                self._write_held = True
                session.pause_reading()
                self.carrier.pause_reading()
        if close:
            self._close()
            return
        if not self.read_paused and cycle.queued >= self.max_queue:
            self.read_paused = True
            if not self._write_held:
                session.pause_reading()
                self.carrier.pause_reading()
        if not self._timer.armed:  # an armed timer fires at or before the deadline and re-arms
            self._timer.follow(session.deadline)

    def _resume_reading(self) -> None:
        session = self.session
        assert session is not None  # what paused reading came from the session (its messages)
        session.resume_reading(self.ctx.runtime.time())
        self.carrier.resume_reading()
        self._timer.refresh()

    # ------------------------------------------------------------------ WebSocketStream
    # The cycle calls these only while the peer is there (asgi/websocket.py): every way this driver
    # closes before or during the app's session tells the cycle first (feed_closed), or comes
    # after its last answer (a denial's end, a refusal before the app).

    def accept(self, cycle: WebSocketCycle, subprotocol: str | None, headers: Headers) -> int:
        ctx = self.ctx
        status = self.carrier.accept(
            subprotocol.encode("latin-1", "replace") if subprotocol is not None else None,
            self._extensions_header,
            headers,
        )
        self._accepted = True
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
        pending = self._pending
        self._pending = b""
        if self.read_paused:
            self.read_paused = False
            self.carrier.resume_reading()
        if pending:
            self._feed(session, pending)
        else:
            self._timer.follow(session.deadline)
        return status

    def send_message(self, cycle: WebSocketCycle, data: bytes | str) -> None:
        session = self.session
        if self._closed or session is None or not session.can_send:
            raise ClientDisconnected("the WebSocket is closed")
        if isinstance(data, str):
            self.write(session.send_text(data))
        else:
            self.write(session.send_bytes(data))

    def close(self, cycle: WebSocketCycle, code: int, reason: str) -> None:
        session = self.session
        assert session is not None  # a close before the accept is a denial (respond)
        out = session.send_close(code, reason, self.ctx.runtime.time())
        if self._closed:
            # The session failed after the server's own Close (graceful shutdown): the driver
            # closed, and the app learns of it from the connection's loss.
            return
        if out:
            self.write(out)
        if self.read_paused or self._write_held:  # the peer's Close must be read
            self.read_paused = self._write_held = False
            session.resume_reading(self.ctx.runtime.time())
            self.carrier.resume_reading()
        self._timer.follow(session.deadline)

    def respond(
        self, cycle: WebSocketCycle, status: int, headers: Headers, body: bytes, more_body: bool
    ) -> None:
        """The handshake is denied with an HTTP response (403 for a close, or the app's own)."""
        self._pending = b""
        self._denied_size = len(body)
        self.carrier.respond(self.request, status, headers, body, more_body)
        if not more_body:
            self._log(status, len(body))
            self._close_after_answer()

    def respond_body(self, cycle: WebSocketCycle, body: bytes, more_body: bool) -> None:
        try:
            self.carrier.respond_body(body, more_body, self.ctx.runtime.time())
        except LocalProtocolError:
            self.abort(cycle)
            raise
        self._denied_size += len(body)
        if not more_body:
            self._log(cycle.status, self._denied_size)
            self._close_after_answer()

    def message_consumed(self, cycle: WebSocketCycle) -> None:
        if self.read_paused and cycle.queued <= self.max_queue // 2 and not self._closed:
            self.read_paused = False
            if not self._write_held:
                self._resume_reading()

    async def drain(self) -> None:
        """Wait while the carrier holds too much. A send whose bytes the carrier took before the
        WebSocket closed in order (the peer's Close arrived meanwhile) has not failed: the carrier
        still delivers them; only a connection lost (or cut) makes it raise."""
        while self.write_paused and not self._closed:
            await self._gate.wait()
        if self._lost:
            raise ClientDisconnected("the connection is closed")

    def abort(self, cycle: WebSocketCycle) -> None:
        cycle.feed_closed(ABNORMAL)
        self._lost = True
        self._end()
        self.carrier.reset()

    def cycle_finished(self, cycle: WebSocketCycle) -> None:
        self.ctx.tasks -= 1
        if self.ctx.access_log and self._accepted:
            self._log_line(cycle.status, 0)
        self.carrier.app_finished()

    # ------------------------------------------------------------------ time

    def next_deadline(self) -> float | None:
        session = self.session
        return None if session is None or self._closed else session.deadline

    def deadline_passed(self, now: float) -> None:
        """The session's deadline passed, with the frames that had arrived read (lifecycle rule 2)."""
        session = self.session
        assert session is not None
        out, close = session.on_deadline(now)
        if out:
            self.write(out)
        closed = session.closed
        if closed is not None and self.cycle is not None:
            self.cycle.feed_closed(closed.code, closed.reason)
        if close:
            self._close()
            return
        self._timer.follow(session.deadline)

    # ------------------------------------------------------------------ closing

    def _end(self) -> None:
        """This driver is done with the connection: no deadline applies any more."""
        self._closed = True
        self._timer.stop()

    def _close(self) -> None:
        """The session is over (called while open: input is read, and the timer runs, only then)."""
        self._end()
        self.carrier.close()
        if self.registered and (self.write_paused or cast(H1Carrier, self.carrier).buffered()):
            # What is buffered goes out first, but not to a peer that reads none of it. (Only a
            # connection of its own: an HTTP/2 stream's stalls are the HTTP/2 connection's.)
            self._gate.paused()

    def write_stalled(self) -> None:
        """The peer read nothing for ``timeout_send`` seconds while output waited for it."""
        self.ctx.log_write_stalled("WebSocket client", self.carrier.info.client)
        cycle = self.cycle
        if cycle is not None:
            cycle.feed_closed(ABNORMAL)
        self._lost = True
        self._end()
        self.carrier.reset()

    def _refuse(self, status: int, detail: str) -> None:
        size = self.carrier.refusal(status, detail)
        self._log(status, size)
        self._close_after_answer()

    def _close_after_answer(self) -> None:
        """Close once the HTTP answer is written: over HTTP/1.1, half-close and drop input until the
        peer closes or ``LINGER`` passes, then close (the HTTP/1.1 driver's rule 5). Called while
        open."""
        self._end()
        carrier = self.carrier
        if not carrier.answered():
            return
        self._lingering = True
        if self.read_paused or self._write_held:
            self.read_paused = self._write_held = False
            carrier.resume_reading()
        self._linger = linger(self.ctx.runtime, carrier.close)

    def shutdown(self) -> None:
        """Graceful shutdown: a Close with 1001 (going away) to an open session; the app sees it
        as the end of the session once the peer answers."""
        session = self.session
        if self._lingering:
            self.carrier.close()
        elif session is not None and session.can_send and not self._closed:
            self.write(session.send_close(1001, "server shutting down", self.ctx.runtime.time()))
            self._timer.follow(session.deadline)

    def abort_all(self) -> None:
        """The graceful period is over."""
        cycle = self.cycle
        if cycle is not None:
            cycle.feed_closed(ABNORMAL)
        self._lost = True
        if not self._closed or self._lingering:
            self._end()
            self.carrier.reset()

    # ------------------------------------------------------------------ access log

    def _log(self, status: int, size: int = 0) -> None:
        """The access line (and metrics) of a handshake answered with an HTTP response (a denial or
        a refusal); an accepted WebSocket is logged when it ends, with the time it lasted."""
        if self.ctx.access_log:
            self._log_line(status, size)

    def _log_line(self, status: int, size: int) -> None:
        """Through the server's observer, as an HTTP request is (--access-log-format, metrics)."""
        cycle = self.cycle
        record = _AccessRecord(
            cycle.scope if cycle is not None else self._refused_scope(),
            self.request,
            status,
            size,
            self._started_at or perf_counter(),
        )
        self.ctx.observer.request_done(record)

    def _refused_scope(self) -> dict[str, Any]:
        """What the access line reads of a handshake refused before its scope was made."""
        request = self.request
        return {
            "client": self.carrier.info.client,
            "headers": request.headers,
            "http_version": request.http_version,
        }


class _AccessRecord:
    """What the observer reads of a finished request, for a WebSocket handshake."""

    __slots__ = ("request", "response_headers", "scope", "sent_bytes", "started_at", "status")

    def __init__(self, scope: Any, request: Request, status: int, size: int, started_at: float) -> None:
        self.scope = scope
        self.request = request
        self.status = status
        self.sent_bytes = size
        self.started_at = started_at
        self.response_headers = ()  # the response headers an access format may ask for: none kept
