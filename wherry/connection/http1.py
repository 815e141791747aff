"""Drives one HTTP/1.1 connection: the sans-IO core below, ASGI cycles above, a backend transport
beside.

Rules of this module:

1. Backends call the driver through ``TransportCallbacks`` and the driver uses the backend's
   ``Transport`` and ``Runtime`` (``wherry/contracts.py``); on asyncio the loop calls the driver
   directly. The connection's addresses are the transport's own unless the driver is made with
   others (``named``: a PROXY header's); a successor (HTTP/2, WebSocket) is handed the same
   ``ConnectionInfo``.
2. Requests are answered strictly in order. At most one application call runs per connection;
   pipelined requests wait in ``_pipeline`` and reading pauses when it is deep.
3. Every read has a deadline (the core computes it; the connection's ``DeadlineTimer`` follows it)
   and every buffer a high-water mark: request body above ``read_high_water`` pauses reading, and the app's
   ``send()`` waits while the transport pauses writing. A request body its app can no longer
   receive (the response is complete) is read and dropped.
4. A rejected request is answered with its status and ``connection: close`` once the responses owed
   before it are written; nothing after it is parsed.
5. Closing while the peer may still be sending is done in stages (``connection/lifecycle.py`` rule 4),
   so that a reset does not destroy the last response before the client has read it.
"""

from __future__ import annotations

import logging
import os
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, cast

from ..asgi.http import ClientDisconnected, HTTPCycle
from ..contracts import FutureLike, TimerHandle, Transport
from ..logs import TRACE, format_client, printable
from ..proto.events import (
    END_OF_MESSAGE,
    AppHeaders,
    ConnectionClosed,
    Data,
    H2Preface,
    Headers,
    LocalProtocolError,
    Rejected,
    Request,
)
from ..proto.http1 import DONE, H2_REFUSAL, IDLE, H1Connection
from .context import ServerContext
from .extensions import CHUNK, accepts_trailers, encode_trailers
from .lifecycle import Addresses, ConnectionInfo, DeadlineTimer, WriteGate, buffered, half_close, linger

if TYPE_CHECKING:
    from .http2 import H2Driver

logger: Final = logging.getLogger("wherry.error")


class H1Driver:
    """One HTTP/1.1 connection on the server side."""

    __slots__ = (
        "_closed",
        "_current",
        "_eof",
        "_extensions",
        "_gate",
        "_in_pipeline",
        "_linger",
        "_lingering",
        "_named",
        "_pipeline",
        "_read_paused",
        "_reading",
        "_reject",
        "_reject_cycle",
        "_timer",
        "_upgrade",
        "core",
        "ctx",
        "info",
        "transport",
        "write_paused",
    )

    # From connection_made on:
    core: H1Connection
    transport: Transport
    info: ConnectionInfo

    def __init__(self, ctx: ServerContext, named: Addresses | None = None) -> None:
        self.ctx = ctx
        self._named = named  # the client and server when they are not the transport's own
        self._current: HTTPCycle | None = None
        self._reading: HTTPCycle | None = None
        self._pipeline: list[HTTPCycle] = []  # short (max_pipeline) and mostly empty
        self._in_pipeline = False
        self._read_paused = False
        self.write_paused = False
        self._gate = WriteGate(ctx, self)
        self._timer = DeadlineTimer(ctx.runtime, self)
        self._linger: TimerHandle | None = None
        self._reject: Rejected | None = None
        self._reject_cycle: HTTPCycle | None = None
        self._closed = False
        self._eof = False
        self._lingering = False
        self._upgrade: Request | None = None
        self._extensions: dict[str, Any] = {}

    # ------------------------------------------------------------------ backend side

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport
        ctx = self.ctx
        info = self.info = ctx.identify(transport, self._named)
        upgrades = ctx.h1_tls_upgrades if info.scheme == "https" else ctx.h1_upgrades
        self.core = H1Connection(ctx.limits, ctx.default_headers, ctx.runtime.time(), upgrades)
        self._extensions = ctx.h1_extensions(info.tls)
        ctx.connections.add(self)
        if ctx.trace:
            logger.log(TRACE, "%s - Connection made", format_client(info.client))
        if ctx.shutting_down:
            self._close()
            return
        self._timer.follow(self.core.deadline)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        events = self.core.receive_data(data, self.ctx.clock())
        for event in events:
            if type(event) is Data:
                reading = self._reading
                if reading is not None:
                    reading.feed_body(event.data)
            elif type(event) is Request:
                self._on_request(event)
            elif event is END_OF_MESSAGE:
                reading = self._reading
                if reading is not None:
                    reading.feed_end()
            elif type(event) is Rejected:
                self._on_reject(event)
            elif type(event) is ConnectionClosed:
                # It comes alone, from a read of its own: the requests of earlier reads are running
                # by now (the one being answered is current, the rest wait in the pipeline).
                current = self._current
                if current is None:
                    self._close()
                    return
                # Half-closed: the answers are still written, but the apps learn the peer is gone.
                current.feed_eof()
                for waiting in self._pipeline:
                    waiting.feed_eof()
            else:
                # H2Preface, the only other event: over TLS, HTTP/2 is what ALPN chose (RFC 9113
                # §3.2; this driver serves a TLS connection only when ALPN chose http/1.1 or
                # nothing): the preface is refused.
                if self.ctx.config.http2 and self.info.scheme == "http":
                    self._switch_to_h2(cast(H2Preface, event).data)
                    return
                self.transport.write(H2_REFUSAL)
                self._close_after_answer()
                return
        if self._current is None and self._pipeline:
            self._run_pipeline()
        if (
            self._read_paused
            or self._reject is not None
            or len(self._pipeline) >= self.ctx.max_pipeline
            or (self._reading is not None and self._reading.buffered > self.ctx.read_high_water)
        ):
            self._flow_control()
        self._timer.follow(self.core.deadline)

    def eof_received(self) -> bool:
        """The peer closed its sending side; answer what it already sent, then close."""
        self._eof = True
        self.data_received(b"")
        return not self._closed

    def connection_lost(self, exc: BaseException | None) -> None:
        self._end()
        self.ctx.connection_closed(self)
        if self.ctx.trace:
            logger.log(TRACE, "%s - Connection lost", format_client(self.info.client))
        linger = self._linger
        if linger is not None:
            linger.cancel()
            self._linger = None
        current = self._current
        if current is not None and not current.response_complete:
            current.feed_disconnect()
        reading = self._reading
        if reading is not None and reading is not current:
            reading.feed_disconnect()
        self._pipeline.clear()
        self.write_paused = False
        self._gate.ended()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._gate.paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._closed:
            self._gate.wake()  # what a closed connection still holds keeps its stall clock
        else:
            self._gate.resumed()

    # ------------------------------------------------------------------ requests

    def _on_request(self, request: Request) -> None:
        if request.upgrade is not None and request.upgrade.lower() == b"h2c":
            self._upgrade_h2c(request)
            return
        if request.upgrade is not None and request.method != b"CONNECT":
            # A WebSocket upgrade the core accepted: the connection changes hands once nothing
            # is owed.
            self._upgrade = request
            if self._current is None and not self._pipeline:
                self._to_websocket()
            return
        ctx = self.ctx
        scope = ctx.request_scope(request, request.http_version, self.info, self._extensions.copy())
        cycle = HTTPCycle(
            scope, self, request, request.expect_continue, perf_counter() if ctx.access_log else 0.0
        )
        self._reading = cycle
        self._pipeline.append(cycle)

    def _on_reject(self, event: Rejected) -> None:
        logger.info(
            "Bad request from %s: %d %s",
            format_client(self.info.client),
            event.status,
            printable(event.detail.encode("utf-8", "replace")),
        )
        self._refuse(event)

    def _refuse(self, event: Rejected) -> None:
        """Answer ``event`` once the responses owed before it are written, then close."""
        reading = self._reading
        if reading is not None and not reading.body_complete:
            self._reading = None
            if reading is not self._current and reading in self._pipeline:
                # Its body broke framing before its app was called: the app never sees it.
                self._pipeline.remove(reading)
            else:
                # The request being read broke framing mid-body: its app sees a disconnect.
                self._reject_cycle = reading
                reading.feed_disconnect()
        self._reject = event
        if self._current is None and not self._pipeline:
            self._write_reject()

    def _write_reject(self) -> None:
        """Answer the pending reject (called while the connection is open, nothing owed before it)."""
        event = self._reject
        assert event is not None
        self._reject = None
        cycle = self._reject_cycle
        if cycle is None or not cycle.response_started:
            response = self.core.error_response(event.status, event.detail)
            self.transport.write(response)
            if cycle is None and self.ctx.access_log:
                self._log_rejected(event.status, response)
            self._close_after_answer()
        else:
            self._close()

    def _run_pipeline(self) -> None:
        # Never re-entered: cycle_finished, which an app started here can call, returns at once
        # while _in_pipeline is set.
        self._in_pipeline = True
        ctx = self.ctx
        try:
            while self._current is None and self._pipeline and not self._closed:
                cycle = self._pipeline.pop(0)
                self._current = cycle
                ctx.call_app(cycle.scope, cycle.receive, cycle.send, cycle.app_finished)
        finally:
            self._in_pipeline = False
        if self._current is None and (
            self._reject is not None or self.core.read_state == DONE or self._upgrade is not None
        ):
            self._nothing_owed()

    def _nothing_owed(self) -> None:
        """Every request read so far is answered: answer a pending reject, or close if the peer
        is done sending."""
        if self._closed:
            return
        if self._upgrade is not None:
            self._to_websocket()
        elif self._reject is not None:
            self._write_reject()
        elif self.core.read_state == DONE:
            self._close()  # the peer half-closed and everything it asked is answered

    def cycle_finished(self, cycle: HTTPCycle) -> None:
        """The app of ``cycle`` returned (its response is complete or the connection is cut)."""
        ctx = self.ctx
        ctx.tasks -= 1
        if ctx.access_log:
            self._log_access(cycle)
        # The cycle is the current one: only the current request's app runs.
        self._current = None
        if cycle is self._reading and cycle.body_complete:
            self._reading = None  # nothing more is read for it: an idle connection holds no request
        if self._closed:
            return
        if cycle is self._reject_cycle:
            self._write_reject()  # its body broke framing: answer with the error, then close
            return
        # The response is complete here: an app that returns without one gets a 500 written for it
        # (app_finished), one cut short aborts the connection (closed), and one whose peer is gone
        # was told so by this driver as it closed, or as it rejected the request (above).
        if not self.core.keep_alive or ctx.shutting_down:
            if cycle.body_complete and not self._pipeline and self.core.read_state in (IDLE, DONE):
                self._close()  # everything the peer sent was read: nothing can turn into a reset
            else:
                self._close_after_answer()
            return
        if self._in_pipeline:
            return  # called from _run_pipeline: it goes on with the next request, and its caller
            # (data_received or the cycle_finished that started it) sees to flow control and time
        if self._pipeline:
            self._run_pipeline()
        else:
            self._nothing_owed()
        self._flow_control()
        self._timer.follow(self.core.deadline)

    def _to_websocket(self) -> None:
        """Give the transport to the WebSocket driver (connection/websocket.py)."""
        request = self._upgrade
        assert request is not None
        self._upgrade = None
        self._end()  # this driver is done with the connection
        self.ctx.connections.discard(self)
        from .websocket import take_over  # (imported by the first upgrade)

        take_over(self.ctx, self.transport, self.core, request, self.info, self._read_paused)

    def _log_access(self, cycle: HTTPCycle) -> None:
        self.ctx.observer.request_done(cycle)  # access line and metrics (wherry/connection/observe.py)

    def _log_rejected(self, status: int, response: bytes) -> None:
        """The access line of a request the server answered itself: its line is unknown, so "-"."""
        size = len(response) - response.index(b"\r\n\r\n") - 4
        self.ctx.observer.request_rejected(self.info.client, status, size)

    # ------------------------------------------------------------------ HTTPStream

    def create_future(self) -> FutureLike:
        return self.ctx.runtime.create_future()

    def write_response(
        self, cycle: HTTPCycle, status: int, headers: AppHeaders, body: bytes, more_body: bool
    ) -> None:
        # Only the current cycle writes, and never once this driver closed: every way it closes
        # while a response is unfinished tells that cycle the client is gone first (feed_disconnect),
        # and its send() then raises ClientDisconnected itself (asgi/http.py rule 3).
        core = self.core
        keep_alive = not self.ctx.shutting_down and (
            core.read_state != DONE or bool(self._pipeline) or self._reject is not None
        )
        if more_body:
            head = core.response_head(cycle.request, status, headers, keep_alive)
            data = core.response_data(body) if body else b""
            self.transport.write(head + data if data else head)
        else:
            self.transport.write(
                core.response(cycle.request, status, headers, body, keep_alive, self.ctx.clock())
            )
            if cycle is self._reading and not cycle.body_complete:
                self._drop_unread_body()

    def _drop_unread_body(self) -> None:
        """The response is complete before the request body: the rest of the body is read and
        dropped (its app can no longer receive it), so the connection can carry the next request."""
        self._reading = None
        if self._read_paused:
            self._flow_control()

    def write_body(self, cycle: HTTPCycle, body: bytes, more_body: bool) -> None:
        core = self.core  # (the connection is open: see write_response and send_file)
        try:
            data = core.response_data(body) if body else b""
            if not more_body:
                data += core.response_end(self.ctx.runtime.time())
        except LocalProtocolError:
            self.abort(cycle)
            raise
        if data:
            self.transport.write(data)
        if not more_body and cycle is self._reading and not cycle.body_complete:
            self._drop_unread_body()

    def write_continue(self, cycle: HTTPCycle) -> None:
        # From the current cycle's receive() while its body is still to come: it is the request
        # being read, on an open connection (see write_response).
        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.core.continue_sent(self.ctx.runtime.time())
        self._timer.follow(self.core.deadline)

    def body_consumed(self, cycle: HTTPCycle, size: int) -> None:
        if self._read_paused:
            self._flow_control()

    async def drain(self) -> None:
        while self.write_paused and not self._closed:
            await self._gate.wait()
        if self._closed:
            raise ClientDisconnected("the connection is closed")

    def abort(self, cycle: HTTPCycle) -> None:
        """The response cannot be finished properly: cut the connection."""
        cycle.feed_disconnect()
        if not self._closed:
            self._end()
            self.transport.abort()

    # ------------------------------------------------------------------ ASGI extensions

    def write_trailers(self, cycle: HTTPCycle, headers: Headers) -> None:
        """End a chunked response with its trailer section when the client accepts trailers;
        otherwise end it as usual and drop them (ASGI: sent only after ``TE: trailers``)."""
        try:
            fields = encode_trailers(headers)
            end = self.core.response_end(self.ctx.runtime.time())
        except LocalProtocolError:
            self.abort(cycle)
            raise
        if end == b"0\r\n\r\n" and fields and accepts_trailers(cycle.request.headers):
            end = b"0\r\n" + fields + b"\r\n"
        if end:
            self.transport.write(end)
        if cycle is self._reading and not cycle.body_complete:
            self._drop_unread_body()

    def write_informational(self, cycle: HTTPCycle, status: int, headers: Headers) -> None:
        """1xx before the head (103 Early Hints); HTTP/1.0 clients do not get them (RFC 9110 §15.2)."""
        if self._closed or cycle is not self._current or cycle.request.http_version != "1.1":
            return
        self.transport.write(self.core.informational(status, headers))

    def push(self, cycle: HTTPCycle, path: bytes, headers: Headers) -> None:
        pass  # HTTP/1.1 has no server push

    async def send_file(self, cycle: HTTPCycle, path: str, more_body: bool) -> None:
        """The body of the response in flight is the file at ``path``: sent by the kernel where the
        backend can (``Runtime.sendfile``: a plain socket on asyncio), in bounded pieces through the
        transport elsewhere. The head is already written."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            framing = self.core.response_file_framing(size)
            if framing is not None and size:
                prefix, suffix = framing
                transport = self.transport
                if prefix:
                    transport.write(prefix)
                sent = False
                if self.info.scheme == "http":
                    try:
                        sent = await self.ctx.runtime.sendfile(transport, f, 0, size)
                    except OSError as exc:
                        self.abort(cycle)
                        raise ClientDisconnected("the connection is closed") from exc
                    if self._closed:  # it ended while the kernel was at it (or declined)
                        raise ClientDisconnected("the connection is closed")
                # Below, the connection can only close while drain() waits, which then raises.
                if not sent:
                    f.seek(0)
                    left = size
                    while left > 0:
                        chunk = f.read(min(CHUNK, left))
                        if not chunk:
                            self.abort(cycle)
                            raise OSError(f"{path} became shorter while being sent")
                        left -= len(chunk)
                        transport.write(chunk)
                        if self.write_paused:
                            await self.drain()
                if suffix:
                    transport.write(suffix)
        if not more_body:
            self.write_body(cycle, b"", False)

    # ------------------------------------------------------------------ switching to HTTP/2

    def _switch_to_h2(self, data: bytes) -> None:
        """The connection opened with the HTTP/2 preface: HTTP/2 takes the transport over."""
        self._hand_over().take_over(self.transport, self.info, data)

    def _upgrade_h2c(self, request: Request) -> None:
        """h2c by Upgrade (RFC 7540 §3.2): the core stopped after the head (a chunked body is
        declined there, and served as HTTP/1.1); HTTP/2 answers 101 and serves the request as
        stream 1, reading its Content-Length body first."""
        settings = [value for name, value in request.headers if name == b"http2-settings"]
        size = 0
        for name, value in request.headers:
            if name == b"content-length":
                size = int(value)
        if len(settings) != 1 or self._current is not None or self._pipeline:
            self._refuse(Rejected(400, "h2c upgrade without one HTTP2-Settings, or behind other requests"))
            return
        if self.ctx.shutting_down:
            # Draining (a worker handing over still reads its idle connections): nothing new is
            # switched, and the answer is HTTP/1.1's, as for a WebSocket handshake then.
            self._refuse(Rejected(503, "the server is shutting down"))
            return
        rest = self.core.trailing_data
        self.core.trailing_data = b""
        request.upgrade = None
        request.keep_alive = True
        self._hand_over().take_over_upgrade(self.transport, self.info, request, settings[0], size, rest)

    def _hand_over(self) -> H2Driver:
        self._end()  # this driver is done; callbacks now go to the HTTP/2 driver
        self.ctx.connections.discard(self)
        from .http2 import H2Driver  # (imported by the first HTTP/2 connection)

        successor = H2Driver(self.ctx)
        self.transport.set_protocol(successor)
        # Reading is not paused: the hand-over happens in data_received, which a paused transport
        # does not call, and which pauses only once its events are handled.
        return successor

    # ------------------------------------------------------------------ flow and time

    def _flow_control(self) -> None:
        if self._closed:
            return
        reading = self._reading
        ctx = self.ctx
        should_pause = (
            (reading is not None and reading.buffered > ctx.read_high_water)
            or len(self._pipeline) >= ctx.max_pipeline
            or self._reject is not None
        )
        if should_pause != self._read_paused:
            self._read_paused = should_pause
            if should_pause:
                self.core.pause_reading()
                self.transport.pause_reading()
            else:
                self.core.resume_reading(ctx.runtime.time())
                self.transport.resume_reading()
                self._timer.follow(self.core.deadline)

    def next_deadline(self) -> float | None:
        return None if self._closed else self.core.deadline

    def deadline_passed(self, now: float) -> None:
        """The core's deadline passed, with the input that had arrived read (lifecycle rule 2)."""
        rejected = self.core.timed_out()
        if rejected is None:
            self._close()  # idle keep-alive connection
            return
        logger.info("Request timeout from %s: %s", format_client(self.info.client), rejected.detail)
        reading = self._reading
        current = self._current
        if reading is not None and not reading.body_complete and reading is current:
            # The app reading the stalled body learns the peer is gone; the 408 is its answer
            # unless it already started one.
            self._reading = None
            reading.feed_disconnect()
            if reading.response_started:
                self._close()
                return
        elif current is not None or self._pipeline:
            # Earlier requests are still being answered: their responses go first, then the 408.
            self._refuse(rejected)
            self._flow_control()
            return
        response = self.core.error_response(rejected.status, rejected.detail)
        self.transport.write(response)
        if current is None and self.ctx.access_log:
            self._log_rejected(rejected.status, response)
        self._close_after_answer()

    # ------------------------------------------------------------------ closing

    def _end(self) -> None:
        """This driver is done with the connection: no deadline applies any more."""
        self._closed = True
        self._timer.stop()

    def _close(self) -> None:
        if not self._closed:
            self._end()
            self._release()

    def _release(self) -> None:
        """Close the transport. What is still buffered goes out first, but a peer that reads none of
        it within ``timeout_send`` has its connection cut: a closed connection holds nothing for
        ever."""
        transport = self.transport
        transport.close()
        if buffered(transport):
            self._gate.paused()

    def write_stalled(self) -> None:
        """The peer read nothing for ``timeout_send`` seconds while output waited for it."""
        self.ctx.log_write_stalled("Client", self.info.client)
        current = self._current
        if current is not None:
            current.feed_disconnect()
        self._end()
        self.transport.abort()

    def _close_after_answer(self) -> None:
        """Close once the last answer is written, in stages (rule 5); called while open."""
        self._end()
        transport = self.transport
        if not half_close(transport, self._eof):
            self._release()
            return
        self._lingering = True
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._linger = linger(self.ctx.runtime, self._release)

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, otherwise after the response in flight."""
        if self._lingering:
            self._release()
        elif self._current is None:
            self._close()

    def abort_all(self) -> None:
        """The graceful period is over."""
        current = self._current
        if current is not None:
            current.feed_disconnect()
        if not self._closed or self._lingering:
            self._end()
            self.transport.abort()
