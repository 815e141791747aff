"""Drives one HTTP/2 connection: the sans-IO core below, one ASGI ``HTTPCycle`` per stream above.

Rules of this module:

1. A connection reaches this driver three ways: ALPN ``h2`` over TLS (``connection_made``), the
   client preface on a plain connection (``H1Driver`` hands the transport over with the bytes it
   read), and h2c Upgrade (``H1Driver`` hands over the upgraded request, which becomes stream 1).
2. Each stream is an ``HTTPCycle`` of ``wherry.asgi.http`` with an ``H2Stream`` as its
   ``HTTPStream``: the ASGI rules are the same objects as on HTTP/1.1. Streams run concurrently;
   the core bounds how many.
3. Backpressure, both ways. Reading: the body a stream's app has not read stays unacknowledged,
   so the client's window closes; nothing here buffers more than the windows allow. Writing: a
   response message that does not fit the peer's windows is kept (one per stream) and the app's
   ``send()`` waits until a WINDOW_UPDATE takes it; while the transport pauses writing every
   ``send()`` waits and the connection stops reading (a client that does not read gets no more
   PING or SETTINGS answers queued for it).
4. Deadlines come from the core (header blocks, body gaps, zero-window stalls, idle) and the h2c
   Upgrade body's gap, followed by the connection's ``DeadlineTimer``; a transport that stays
   paused (the client stopped reading) for ``timeout_send`` ends the connection (``WriteGate``).
   Both are ``connection/lifecycle.py``'s, as on HTTP/1.1.
5. App errors reset their stream (RST_STREAM INTERNAL_ERROR), never the connection. Graceful
   shutdown sends GOAWAY naming the last stream served and closes once the open ones finish.
6. An extended CONNECT stream (RFC 8441, ``Request.upgrade`` holds ``:protocol``) is handed to
   ``connection/h2websocket.py`` in ``_start_stream``: its ``H2Carrier`` (an ``H2Stream``) takes the
   stream's events through ``on_data``/``on_end``/``on_gone`` and sends through the same
   flow-controlled ``_send`` as a response body, for the WebSocket driver every HTTP/1.1 Upgrade
   uses. The core advertises SETTINGS_ENABLE_CONNECT_PROTOCOL unless ``--ws none``.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from time import perf_counter
from typing import Any, Final

from ..asgi.http import ClientDisconnected, HTTPCycle
from ..contracts import FutureLike, TimerHandle, Transport
from ..logs import format_client, printable
from ..proto.events import (
    AppHeaders,
    Data,
    EndOfMessage,
    GoAway,
    Headers,
    LocalProtocolError,
    Rejected,
    Request,
    StreamReset,
    WindowOpened,
)
from ..proto.http1 import DefaultHeaders
from ..proto.http2 import INTERNAL_ERROR, NO_ERROR, REFUSED_STREAM, H2Connection
from .context import ServerContext
from .extensions import read_chunks
from .lifecycle import ConnectionInfo, DeadlineTimer, WriteGate, half_close, linger

logger: Final = logging.getLogger("wherry.error")

_SWITCHING: Final = b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
_BAD_UPGRADE: Final = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
_UPGRADE_TIMEOUT: Final = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


def default_pairs(
    defaults: DefaultHeaders,
    cache: dict[bytes, tuple[tuple[bytes, bytes], ...]] = {},  # noqa: B006
) -> tuple[tuple[bytes, bytes], ...]:
    """The server/date/--header lines of ``DefaultHeaders`` as HTTP/2 fields (cached per block:
    the block changes once a second, with the date). A tuple: the core keys its caches on it."""
    block = defaults.block
    pairs = cache.get(block)
    if pairs is None:
        cache.clear()
        found = []
        for line in block.split(b"\r\n"):
            name, sep, value = line.partition(b": ")
            if sep:
                found.append((name.lower(), value))
        pairs = cache[block] = tuple(found)
    return pairs


class H2Stream:
    """The ``HTTPStream`` of one HTTP/2 stream: the cycle's writes go to the connection."""

    __slots__ = (
        "_pending",
        "_pending_end",
        "_trailers",
        "_waiter",
        "conn",
        "cycle",
        "gone",
        "sid",
        "untracked",
        "write_paused",
    )

    def __init__(self, conn: H2Driver, sid: int) -> None:
        self.conn = conn
        self.sid = sid
        self.cycle: HTTPCycle | None = None  # an HTTP request's; dropped once it is done
        self.write_paused = conn.transport_paused
        self.gone = False  # reset by either side, or the connection is lost
        self.untracked = 0  # body bytes outside HTTP/2 flow control (an h2c Upgrade's body)
        self._pending = b""
        self._pending_end = False
        self._trailers: Headers | None = None
        self._waiter: FutureLike | None = None

    # ---------------------------------------------------------------- from the connection
    # What arrives for the stream. An HTTP request feeds its HTTPCycle; a stream handed to
    # another session (an RFC 8441 WebSocket) takes these three instead. They are called for the
    # streams in ``H2Driver.streams`` only: a stream's cycle is set before it joins them, and
    # dropped (app_done) once it has left.

    def on_data(self, data: bytes) -> None:
        cycle = self.cycle
        assert cycle is not None
        cycle.feed_body(data)

    def on_end(self) -> None:
        cycle = self.cycle
        assert cycle is not None
        cycle.feed_end()

    def on_gone(self) -> None:
        cycle = self.cycle
        assert cycle is not None
        cycle.feed_disconnect()
        self.wake()

    def http_cycle(self) -> HTTPCycle:
        """The cycle of a stream that carries an HTTP request, until its app is done."""
        cycle = self.cycle
        assert cycle is not None
        return cycle

    def pause_writing(self) -> None:
        """The connection's transport stopped taking writes."""
        self.write_paused = True

    def shutdown(self) -> None:
        """Graceful shutdown: a request stream simply finishes."""

    # ---------------------------------------------------------------- HTTPStream
    # The cycle calls these only while its client is there (asgi/http.py rule 3): the stream is
    # not gone and the connection not closed, since both tell the cycle first (on_gone, _lost).

    def create_future(self) -> FutureLike:
        return self.conn.ctx.runtime.create_future()

    def write_response(
        self, cycle: HTTPCycle, status: int, headers: AppHeaders, body: bytes, more_body: bool
    ) -> None:
        conn = self.conn
        core = conn.core
        # A body that cannot match the content-length is refused here, before the HEADERS are
        # queued: the stream still carries a clean 500. What follows them then cannot fail.
        ended = core.send_response(
            self.sid,
            status,
            headers,
            default_pairs(conn.ctx.default_headers),
            not more_body and not body,
            len(body),
            not more_body,
        )
        if not ended and (body or not more_body):
            self._send(body, not more_body)
        conn.flush_soon()

    def write_body(self, cycle: HTTPCycle, body: bytes, more_body: bool) -> None:
        conn = self.conn
        try:
            self._send(body, not more_body)
        except LocalProtocolError:
            self.abort(cycle)
            raise
        conn.flush_soon()

    def _send(self, data: bytes, end: bool) -> None:
        conn = self.conn
        if self._pending:  # only after a cut-short drain; keep the order
            data = self._pending + data
        rest = conn.core.send_data(self.sid, data, end, conn.ctx.clock())
        conn.unflushed += len(data) - len(rest)
        self._pending = rest
        self._pending_end = end
        if rest:
            self.write_paused = True
            conn.blocked[self.sid] = self
            conn.follow_deadline()  # the stall has a deadline

    def window_opened(self) -> None:
        # Only for a stream in H2Driver.blocked: its bytes wait for this window. A stream aborted
        # while its app still runs stays there until the app returns; the core has forgotten it
        # (reset), so its bytes go nowhere then, and it leaves blocked.
        data, self._pending = self._pending, b""
        self._send(data, self._pending_end)
        if not self._pending:
            self.conn.blocked.pop(self.sid, None)
            if self._trailers is not None:
                self._send_trailers()
            self.write_paused = self.conn.transport_paused
            self.wake()

    def write_trailers(self, cycle: HTTPCycle, headers: Headers) -> None:
        self._trailers = list(headers)
        if not self._pending:
            self._send_trailers()
            self.conn.flush_soon()

    def _send_trailers(self) -> None:
        headers, self._trailers = self._trailers, None
        self.conn.core.send_trailers(self.sid, headers or [])

    def write_informational(self, cycle: HTTPCycle, status: int, headers: Headers) -> None:
        self.conn.core.informational(self.sid, status, headers)
        self.conn.flush_soon()

    def write_continue(self, cycle: HTTPCycle) -> None:
        self.write_informational(cycle, 100, [])

    def push(self, cycle: HTTPCycle, path: bytes, headers: Headers) -> None:
        self.conn.push(self, path, headers)

    async def send_file(self, cycle: HTTPCycle, path: str, more_body: bool) -> None:
        """A file body (pathsend): read in window-sized pieces, never whole."""
        if self.conn.core.bodyless(self.sid):
            self.write_body(cycle, b"", more_body)  # HEAD, 204, 304: the file is not read
            return
        # Closed at once when the stream ends early (the peer gone while waiting in drain()).
        async with aclosing(read_chunks(path, 65536)) as chunks:
            async for chunk, last in chunks:
                self.write_body(cycle, chunk, more_body or not last)
                if self.write_paused:
                    await self.drain()

    def body_consumed(self, cycle: HTTPCycle, size: int) -> None:
        conn = self.conn
        if self.untracked:
            # An h2c Upgrade's body (stream 1): all of that stream's body, outside flow control.
            self.untracked -= size
            conn.upgrade_body_read(cycle)
            return
        conn.core.acknowledge(self.sid, size, conn.ctx.runtime.time())
        conn.flush_soon()
        conn.follow_deadline()  # the app waits for the body again: its gap deadline runs

    async def drain(self) -> None:
        while self.write_paused and not self.gone and not self.conn.closed:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = self.conn.ctx.runtime.create_future()
            await waiter
        if self.gone or self.conn.closed:
            raise ClientDisconnected("the stream is closed")

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self, cycle: HTTPCycle) -> None:
        """The response cannot be finished: reset the stream (the connection goes on)."""
        cycle.feed_disconnect()
        if not self.gone:
            self.gone = True
            self.conn.core.reset(self.sid, INTERNAL_ERROR)
            self.conn.flush_soon()
        self.wake()

    def cycle_finished(self, cycle: HTTPCycle) -> None:
        self.conn.stream_finished(self)

    def app_done(self, exc: BaseException | None) -> None:
        """The app's call ended: the cycle decides the answer."""
        self.http_cycle().app_finished(exc)
        # The stream has left the connection (cycle_finished): nothing reaches the cycle any more.
        # Dropping it breaks the stream <-> cycle reference cycle, so both go with their last
        # reference instead of waiting for the garbage collector (a collection's cost grows with
        # every request it has to find).
        self.cycle = None


class H2Driver:
    """One HTTP/2 connection on the server side."""

    # From connection_made (or the hand-over from HTTP/1.1) on:
    core: H2Connection
    transport: Transport
    info: ConnectionInfo

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.streams: dict[int, H2Stream] = {}
        self.blocked: dict[int, H2Stream] = {}  # streams with a message waiting for a window
        self.transport_paused = False
        self.closed = False
        self._read_paused = False
        self._timer = DeadlineTimer(ctx.runtime, self)
        self._gate = WriteGate(ctx, self)
        self._linger: TimerHandle | None = None
        self._upgrade_body: H2Stream | None = None  # h2c Upgrade: stream 1 still reading its body
        self._upgrade_left = 0
        self._upgrade_since = 0.0  # when upgrade body bytes last arrived
        self._upgrade_paused = False  # reading paused: the app has not read the upgrade body
        self._before_101: list[bytes] | None = None  # HTTP/2 output held until the 101 is sent
        self._lingering = False
        self._eof = False
        self._flush_scheduled = False
        self._reading = False  # starting the apps of one read: data_received flushes after them
        self.unflushed = 0  # DATA bytes queued since the last write
        self._extensions: dict[str, Any] | None = None

    # ------------------------------------------------------------------ starting

    def connection_made(self, transport: Transport) -> None:
        """ALPN chose h2."""
        self._attach(transport, self.ctx.identify(transport))
        if self.closed:
            return
        self.core.initiate()
        self.flush()
        self.follow_deadline()

    def take_over(self, transport: Transport, info: ConnectionInfo, data: bytes) -> None:
        """A plain connection that opened with the client preface (``data`` holds what was read)."""
        self._attach(transport, info)
        if self.closed:
            return
        self.core.initiate()
        self.flush()
        self.data_received(data)

    def take_over_upgrade(
        self,
        transport: Transport,
        info: ConnectionInfo,
        request: Request,
        settings: bytes,
        body_size: int,
        rest: bytes,
    ) -> None:
        """h2c Upgrade (RFC 7540 §3.2): answer 101, then serve ``request`` as stream 1. Its body
        (``body_size`` bytes, still HTTP/1.1 framing) comes before the client preface, and the
        101 comes after the body: a client takes the 101 as the switch for both directions (curl
        stops uploading at the 101), so nothing of HTTP/2 is written before the body is in. The
        app runs meanwhile and reads the body as it arrives; what it answers waits with the 101.
        Never while the server shuts down (the HTTP/1.1 driver answers 503 then)."""
        self._attach(transport, info)
        now = self.ctx.runtime.time()
        try:
            self.core.initiate_upgrade(settings, request, now)
        except ValueError as exc:  # a malformed HTTP2-Settings: nothing was switched yet
            logger.info("Bad h2c upgrade from %s: %s", format_client(info.client), exc)
            self.transport.write(_BAD_UPGRADE)
            self._close()
            return
        if body_size:
            self._before_101 = []
        else:
            self.transport.write(_SWITCHING)
        self.flush()
        stream = self._start_stream(request)
        assert stream is not None  # a plain request, and the first stream (the limit is at least 1)
        if body_size:
            self._upgrade_body = stream
            self._upgrade_left = body_size
            self._upgrade_since = now
        else:
            stream.http_cycle().feed_end()
        self._run(stream)
        if rest:
            self.data_received(rest)
        else:
            self.follow_deadline()

    def _attach(self, transport: Transport, info: ConnectionInfo) -> None:
        self.transport = transport
        self.info = info
        ctx = self.ctx
        self.core = H2Connection(ctx.h2_limits, ctx.runtime.time())
        ctx.connections.add(self)
        if ctx.shutting_down:
            self.core.close(NO_ERROR)
            self.flush()
            self._close()

    # ------------------------------------------------------------------ backend side

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._upgrade_left:
            data = self._upgrade_body_data(data)
            if not data:
                self.follow_deadline()
                return
        core = self.core
        events = core.receive_data(data, self.ctx.clock())
        started: list[H2Stream] = []
        streams = self.streams
        for event in events:
            if type(event) is Data:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_data(event.data)
            elif type(event) is Request:
                stream = self._start_stream(event)
                if stream is not None:
                    started.append(stream)
            elif type(event) is EndOfMessage:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.on_end()
            elif type(event) is WindowOpened:
                self._window_opened(event.stream_id)
            elif type(event) is StreamReset:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    self._stream_gone(stream)
            elif type(event) is Rejected:
                self._rejected(event)
            elif type(event) is GoAway:
                pass  # the core stops pushing; open streams go on
            else:  # ConnectionClosed, the only other event
                self._lost()
                self._close()
                return
        if started:
            # The apps that answer at once do so inside this call: their frames leave with the
            # flush below, and the timer is set once for all of them (``_reading``).
            self._reading = True
            try:
                for stream in started:
                    self._run(stream)
            finally:
                self._reading = False
        self.flush()
        if core.closed and not self.closed:
            self._close()
            return
        self.follow_deadline()

    def _upgrade_body_data(self, data: bytes) -> bytes:
        """Body bytes of the upgraded request (HTTP/1.1 framing); returns what follows them."""
        take = min(len(data), self._upgrade_left)
        stream = self._upgrade_body
        self._upgrade_left -= take
        self._upgrade_since = self.ctx.runtime.time()
        if stream is not None and not stream.gone and stream.cycle is not None:
            stream.untracked += take
            cycle = stream.cycle
            cycle.feed_body(data[:take])
            if not self._upgrade_left:
                cycle.feed_end()
            elif cycle.buffered > self.ctx.read_high_water and not self._upgrade_paused:
                # Outside HTTP/2 flow control: held back the HTTP/1.1 way, by not reading.
                self._upgrade_paused = True
                self.transport.pause_reading()
        # (A body whose app has returned is read and dropped: the 101 waits for its end.)
        if not self._upgrade_left:
            self._upgrade_body = None
            held = self._before_101
            assert held is not None  # set with the body's size: the 101 waits for its end
            self._before_101 = None
            self.transport.write(b"".join([_SWITCHING, *held]))
        return data[take:]

    def upgrade_body_read(self, cycle: HTTPCycle) -> None:
        """The app read some of the upgrade body: read more once it is below the mark."""
        if self._upgrade_paused and cycle.buffered <= self.ctx.read_high_water and not self.closed:
            self._upgrade_paused = False
            self._upgrade_since = self.ctx.runtime.time()
            self.transport.resume_reading()
            self.follow_deadline()

    def eof_received(self) -> bool:
        self._eof = True
        if self._lingering:
            self.transport.close()
            return False
        self.data_received(b"")
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._end()
        self.ctx.connection_closed(self)
        linger = self._linger
        if linger is not None:
            linger.cancel()
            self._linger = None
        self._gate.ended()
        self._lost()

    def pause_writing(self) -> None:
        self.transport_paused = True
        for stream in self.streams.values():
            stream.pause_writing()
        if not self.closed:
            # (Not paused already: a transport alternates pause_writing and resume_writing, and
            # resume_writing resumes reading.)
            self._gate.paused()
            self._read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport_paused = False
        self._gate.resumed()
        for stream in list(self.streams.values()):
            if not stream._pending:
                stream.write_paused = False
                stream.wake()
        if self._read_paused and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------------ streams

    def _start_stream(self, request: Request) -> H2Stream | None:
        ctx = self.ctx
        sid = request.stream_id
        if request.upgrade is not None:
            # Extended CONNECT (RFC 8441): the core lets :protocol through only when it advertised
            # SETTINGS_ENABLE_CONNECT_PROTOCOL (WebSocket is on). The stream starts at once.
            from .h2websocket import open_tunnel

            open_tunnel(self, request)
            return None
        if len(self.streams) >= ctx.h2_limits.max_concurrent_streams:
            # Streams the client reset still count while their apps run: resetting streams does
            # not get a client more running apps than it may have open streams.
            self.core.reset(sid, REFUSED_STREAM)
            return None
        extensions = self._extensions
        if extensions is None:
            extensions = self._extensions = {
                "http.response.trailers": {},
                "http.response.early_hint": {},
                "http.response.pathsend": {},
            }
            if self.info.tls is not None:
                extensions["tls"] = self.info.tls
        extensions = extensions.copy()  # one per request, as on HTTP/1.1
        if self.core.push_allowed:
            extensions["http.response.push"] = {}
        scope = ctx.request_scope(request, "2", self.info, extensions)
        stream = H2Stream(self, sid)
        stream.cycle = HTTPCycle(
            scope, stream, request, request.expect_continue, perf_counter() if ctx.access_log else 0.0
        )
        self.streams[sid] = stream
        return stream

    def _run(self, stream: H2Stream) -> None:
        cycle = stream.http_cycle()
        self.ctx.call_app(cycle.scope, cycle.receive, cycle.send, stream.app_done)

    def push(self, parent: H2Stream, path: bytes, headers: Headers) -> None:
        """Promise ``path`` on ``parent`` and serve it as a request of its own."""
        parent_cycle = parent.http_cycle()
        request = parent_cycle.request
        authority = b""
        for name, value in request.headers:
            if name == b"host":
                authority = value
                break
        scheme = parent_cycle.scope["scheme"].encode("ascii")
        promised = self.core.push(parent.sid, path, authority, scheme, headers, self.ctx.runtime.time())
        self.flush()
        if promised is None:
            return
        stream = self._start_stream(promised)
        if stream is not None:
            stream.http_cycle().feed_end()
            self._run(stream)

    def _window_opened(self, sid: int) -> None:
        if sid == 0:
            for blocked in list(self.blocked.values()):
                blocked.window_opened()
        else:
            stream = self.blocked.get(sid)
            if stream is not None:
                stream.window_opened()

    def _stream_gone(self, stream: H2Stream) -> None:
        stream.gone = True
        self.blocked.pop(stream.sid, None)
        stream.on_gone()

    def _rejected(self, event: Rejected) -> None:
        stream = self.streams.get(event.stream_id) if event.stream_id else None
        if stream is None:
            logger.info(
                "HTTP/2 connection error from %s: %s",
                format_client(self.info.client),
                printable(event.detail.encode("utf-8", "replace")),
            )
            self._lost()
            return
        # One stream broke a limit (its body is too large): a status if nothing was answered yet.
        cycle = stream.http_cycle()
        if not cycle.response_started:
            body = b"Request Entity Too Large\n"
            self.core.send_response(
                stream.sid,
                event.status,
                [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))],
                default_pairs(self.ctx.default_headers),
                False,
            )
            self.core.send_data(stream.sid, body, True, self.ctx.runtime.time())
        self.core.reset(stream.sid, NO_ERROR if not cycle.response_started else INTERNAL_ERROR)
        self._stream_gone(stream)

    def stream_finished(self, stream: H2Stream) -> None:
        """The app of ``stream`` returned."""
        ctx = self.ctx
        ctx.tasks -= 1
        if ctx.access_log:
            ctx.observer.request_done(stream.http_cycle())  # access line and metrics (connection/observe.py)
        if stream is self._upgrade_body and self._upgrade_paused and not self.closed:
            # Its app is done without reading the whole upgrade body: the rest is read (and
            # dropped), or the 101 and the answer would never go.
            self._upgrade_paused = False
            self._upgrade_since = ctx.runtime.time()
            self.transport.resume_reading()
        self.stream_closed(stream.sid)

    def stream_closed(self, sid: int) -> None:
        """Nothing more is sent or read on stream ``sid``: it leaves the connection."""
        ctx = self.ctx
        self.streams.pop(sid, None)
        self.blocked.pop(sid, None)
        if self.closed:
            return
        self.core.stream_done(sid, ctx.runtime.time())
        if ctx.shutting_down and not self.streams:
            self.flush()
            self._close()
            return
        if not self._reading:
            self.flush_soon()
            self.follow_deadline()

    # ------------------------------------------------------------------ writing and time

    def flush(self) -> None:
        self.unflushed = 0
        data = self.core.data_to_send()
        if data and not self.closed:
            if self._before_101 is not None:
                self._before_101.append(data)  # an h2c Upgrade whose body is still arriving
            else:
                self.transport.write(data)

    def flush_soon(self) -> None:
        """Write what the streams queued once per loop iteration: responses of many streams
        finishing together leave in one write, not one each. Past 64 KiB it is written at once,
        so the transport's backpressure reaches an app that sends without pausing."""
        if self.unflushed > 65536:
            self.flush()
        elif not self._flush_scheduled and not self._reading and not self.closed:
            self._flush_scheduled = True
            runtime = self.ctx.runtime
            runtime.call_at(runtime.time(), self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def follow_deadline(self) -> None:
        """The connection's next deadline may have come earlier: the timer follows it."""
        self._timer.follow(self.next_deadline())

    def next_deadline(self) -> float | None:
        # (Once closed, the timer is stopped: it neither asks this nor follows it.)
        deadline = self.core.deadline
        if self._upgrade_left and not self._upgrade_paused:
            gap = self._upgrade_since + self.ctx.config.timeout_request_body
            deadline = gap if deadline is None else min(deadline, gap)
        return deadline

    def deadline_passed(self, now: float) -> None:
        """A deadline passed, with the frames that had arrived read (lifecycle rule 2)."""
        if (
            self._upgrade_left
            and not self._upgrade_paused
            and now >= self._upgrade_since + self.ctx.config.timeout_request_body
        ):
            logger.info("h2c upgrade body from %s not received in time", format_client(self.info.client))
            self._lost()
            self._end()
            # The 101 waits for the body's end: nothing was switched, so the answer is HTTP/1.1's.
            self.transport.write(_UPGRADE_TIMEOUT)
            self.transport.close()
            return
        # Otherwise the core's deadline is the one that passed (next_deadline).
        expired, reason = self.core.timed_out(now)
        for sid in expired:
            # A stream the core expires is still the driver's: it leaves the core only after it
            # left the driver (stream_closed), or when the core is told to reset it.
            self._stream_gone(self.streams[sid])
        if reason == "idle":
            if self.streams:
                # An app is still running after its stream ended (the client reset it): the
                # idle deadline is judged again when it returns (``stream_closed``), not
                # re-armed now, when it has passed and would fire again at once.
                return
            self.core.close(NO_ERROR)
        elif reason is not None:
            logger.info("HTTP/2 timeout from %s: %s", format_client(self.info.client), reason)
        self.flush()
        if self.core.closed:
            self._lost()
            self._close()
            return
        self.follow_deadline()

    def write_stalled(self) -> None:
        """The client read nothing for ``timeout_send`` seconds while output waited for it."""
        self.ctx.log_write_stalled("HTTP/2 client", self.info.client)
        self._lost()
        self._end()
        self.transport.abort()

    # ------------------------------------------------------------------ closing

    def _lost(self) -> None:
        """Every stream's app learns the peer is gone."""
        for stream in list(self.streams.values()):
            self._stream_gone(stream)
        self.blocked.clear()

    def _end(self) -> None:
        """This driver is done with the connection: no deadline applies any more."""
        self.closed = True
        self._timer.stop()

    def _close(self) -> None:
        """Close once what is written is sent; half-close first where possible, so that input
        still arriving does not turn into a reset that destroys the last frames (lifecycle
        rule 4); called while open."""
        self._end()
        transport = self.transport
        if not half_close(transport, self._eof):
            transport.close()
            return
        self._lingering = True
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        self._linger = linger(self.ctx.runtime, transport.close)

    def shutdown(self) -> None:
        """Graceful shutdown: GOAWAY now; close when the streams in flight are done."""
        if self._lingering:
            self.transport.close()
            return
        if self.closed:
            return
        self.core.graceful_shutdown()
        for stream in list(self.streams.values()):
            stream.shutdown()  # a WebSocket says going away (1001); requests finish
        self.flush()
        if not self.streams:
            self._close()

    def abort_all(self) -> None:
        self._lost()
        if not self.closed or self._lingering:
            self._end()
            self.transport.abort()
