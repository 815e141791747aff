"""WebSocket over HTTP/2 (RFC 8441): one extended CONNECT stream carries one WebSocket, driven by the
same ``WebSocketDriver`` (connection/websocket.py) and ``WebSocketCycle`` (asgi/websocket.py) as an
HTTP/1.1 Upgrade.

Rules of this module:

1. ``open_tunnel`` is the only entry: ``H2Driver`` calls it for a request with ``:protocol`` (the
   core lets one through only when it advertised SETTINGS_ENABLE_CONNECT_PROTOCOL, that is unless
   ``--ws none``). ``websocket`` gets an ``H2Carrier``; any other protocol a 501.
2. ``H2Carrier`` is the WebSocket driver's carrier, and towards the driver it plays a transport:
   ``write`` sends DATA as far as the windows allow (the rest waits with the stream and the
   driver's ``send()`` waits for it: ``pause_writing`` / ``resume_writing``); ``pause_reading``
   holds the DATA that arrives without crediting it, so the client's window closes (this is how
   ``--ws-max-queue`` holds a client back); ``close`` is END_STREAM and ``reset`` RST_STREAM
   CANCEL (RFC 8441 §5); the end of the client's side is ``eof_received``, and its RST_STREAM,
   the send deadline or the connection's loss is ``connection_lost`` (1006 for the app).
3. The handshake's HTTP answers are this stream's response: 200 with the negotiated fields on
   accept (RFC 8441 §5: not 101), and a refusal (400, 426, 503), a 403 or the app's denial
   response, each ending the stream. WebSocket frames go only after the 200.
4. The stream leaves the connection (``H2Driver.stream_closed``) once the app has returned and the
   stream is over for the driver (ended by the server, reset, or lost), with nothing left waiting
   for a window, and the client has ended its side too. A client that does not end its side
   within ``LINGER`` after the server's END_STREAM gets RST_STREAM NO_ERROR (RFC 9113 §8.1).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..contracts import TimerHandle
from ..proto.events import Headers, Request
from ..proto.http2 import CANCEL, REFUSED_STREAM
from ..proto.websocket import accept_fields, h2_check, refusal
from .http2 import H2Stream, default_pairs
from .lifecycle import linger
from .websocket import WebSocketDriver

if TYPE_CHECKING:
    from .http2 import H2Driver


def open_tunnel(conn: H2Driver, request: Request) -> None:
    """Serve the extended CONNECT ``request`` (its stream just opened)."""
    ctx = conn.ctx
    sid = request.stream_id
    core = conn.core
    if len(conn.streams) >= ctx.h2_limits.max_concurrent_streams:
        core.reset(sid, REFUSED_STREAM)  # as for a request stream (H2Driver._start_stream)
        return
    if (request.upgrade or b"").lower() != b"websocket":
        _, fields, body = refusal(501, "no such :protocol here")
        now = ctx.runtime.time()
        core.send_response(sid, 501, fields, default_pairs(ctx.default_headers), False)
        core.send_data(sid, body, True, now)
        core.stream_done(sid, now)
        return
    core.open_tunnel(sid)
    stream = H2Carrier(conn, request)
    driver = stream.driver = WebSocketDriver(ctx, stream, request)
    conn.streams[sid] = stream
    if stream.write_paused:
        driver.pause_writing()
    stream.app_running = True  # before the call: an app can run to its end inside it
    if not driver.start(b""):
        stream.app_running = False  # refused before the app: the refusal ended the stream


class H2Carrier(H2Stream):
    """One RFC 8441 stream: the carrier of a ``WebSocketDriver``."""

    __slots__ = (
        "_answered",
        "_client_ended",
        "_delivering",
        "_done",
        "_ended",
        "_eof_held",
        "_held",
        "_linger",
        "_lost",
        "_paused",
        "_waited",
        "app_running",
        "driver",
        "info",
        "request",
    )

    driver: WebSocketDriver  # set by open_tunnel

    def __init__(self, conn: H2Driver, request: Request) -> None:
        super().__init__(conn, request.stream_id)
        self.request = request
        self.info = conn.info
        self.app_running = False
        self._held: deque[bytes] = deque()  # DATA read while reading is paused, not yet credited
        self._eof_held = False  # the client's END_STREAM came behind held DATA
        self._paused = False
        self._delivering = False  # delivering held DATA is scheduled
        self._answered = False  # the response HEADERS went out: DATA may follow
        self._ended = False  # the server's side is over (END_STREAM queued, reset, or gone)
        self._lost = False  # the driver was told the stream is over
        self._done = False  # the stream left the connection
        self._client_ended = False  # END_STREAM from the client
        self._waited = False  # LINGER passed after the server's end
        self._linger: TimerHandle | None = None

    # ---------------------------------------------------------------- from the connection

    def on_data(self, data: bytes) -> None:
        if (self._paused or self._held) and not self._ended:
            self._held.append(data)
            return
        self.driver.data_received(data)
        self._credit(len(data))

    def on_end(self) -> None:
        self._client_ended = True
        if (self._paused or self._held) and not self._ended:
            self._eof_held = True
            return
        self._end()
        self._maybe_done()

    def on_gone(self) -> None:
        """Reset by the client, past the send deadline, or the connection is lost."""
        self._ended = True
        self._pending = b""
        self._drop_held()
        self._report_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        self.driver.pause_writing()

    def wake(self) -> None:
        """What waited for a window (or for the transport) is written."""
        if not self.write_paused and not self._lost:
            self.driver.resume_writing()
        self._maybe_done()

    def shutdown(self) -> None:
        self.driver.shutdown()

    # ---------------------------------------------------------------- the driver's transport

    def write(self, data: bytes) -> None:
        # (Not once the stream is over: the driver writes only while its session is open, and
        # whatever ends this side ends the session first, or tells the driver as it does.)
        self._send(data, False)
        if self.write_paused:
            self.driver.pause_writing()
        self.conn.flush_soon()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if (self._held or self._eof_held) and not self._delivering:
            # Later, as a transport does: not inside the driver's call.
            self._delivering = True
            runtime = self.conn.ctx.runtime
            runtime.call_at(runtime.time(), self._deliver)

    def close(self) -> None:
        """The server's orderly end (RFC 8441 §5): END_STREAM after what is queued. Before any
        response there is nothing to end in order: the stream is cancelled."""
        if self._ended:
            return
        if not self._answered:
            self.reset()
            return
        self._ended = True
        self._send(b"", True)
        self._drop_held()
        self.conn.flush_soon()
        self._lose_soon()

    def reset(self) -> None:
        """RST_STREAM CANCEL (RFC 8441 §5: a TCP reset). Never on a stream gone already: the
        driver is told at once then (on_gone), and ends."""
        self.gone = True
        conn = self.conn
        conn.blocked.pop(self.sid, None)
        self._pending = b""
        conn.core.reset(self.sid, CANCEL)
        conn.flush_soon()
        self._ended = True
        self._drop_held()
        self._lose_soon()

    # ---------------------------------------------------------------- the handshake's answers
    # The driver calls these only while the stream is there: a stream gone, or a connection
    # closed (which makes every stream gone), tells the driver at once, and its cycle first.

    def check(self, request: Request) -> None:
        h2_check(request.headers)

    def accept(self, subprotocol: bytes | None, extensions: bytes | None, headers: Headers) -> int:
        conn = self.conn
        fields = accept_fields(subprotocol, extensions, headers)
        conn.core.send_response(self.sid, 200, fields, default_pairs(conn.ctx.default_headers), False)
        self._answered = True
        conn.flush_soon()
        return 200

    def refusal(self, status: int, detail: str) -> int:
        _, fields, body = refusal(status, detail)
        conn = self.conn
        conn.core.send_response(self.sid, status, fields, default_pairs(conn.ctx.default_headers), False)
        self._answered = True
        self._send(body, True)
        conn.flush_soon()
        return len(body)

    def respond(self, request: Request, status: int, headers: Headers, body: bytes, more_body: bool) -> None:
        conn = self.conn
        ended = conn.core.send_response(
            self.sid, status, headers, default_pairs(conn.ctx.default_headers), not more_body and not body
        )
        self._answered = True
        if not ended and (body or not more_body):
            self._send(body, not more_body)
            if self.write_paused:
                self.driver.pause_writing()
        conn.flush_soon()

    def respond_body(self, body: bytes, more_body: bool, now: float) -> None:
        self._send(body, not more_body)
        if self.write_paused:
            self.driver.pause_writing()
        self.conn.flush_soon()

    def answered(self) -> bool:
        """The answer ended the stream; nothing lingers on HTTP/2."""
        self._ended = True
        self._drop_held()
        self._lose_soon()
        return False

    def app_finished(self) -> None:
        self.app_running = False
        self._maybe_done()

    # ---------------------------------------------------------------- inside

    def _end(self) -> None:
        self.driver.eof_received()  # (False: the driver never keeps a half-open WebSocket)
        self.close()

    def _deliver(self) -> None:
        """Held DATA, once reading resumes."""
        self._delivering = False
        held = self._held
        delivered = 0
        while held and not self._paused and not self._ended:
            data = held.popleft()
            delivered += len(data)
            self.driver.data_received(data)
        if delivered:
            self._credit(delivered)
        if self._eof_held and not held and not self._paused and not self._ended:
            self._eof_held = False
            self._end()
        self.conn.flush_soon()

    def _credit(self, size: int) -> None:
        """``size`` bytes of DATA were given to the driver, or dropped: the client may send as much
        again. Once the server's side is over, only the connection's window is credited: the
        stream's closes, so a client cannot keep sending into a finished WebSocket."""
        conn = self.conn
        if not conn.closed:
            conn.core.acknowledge(0 if self._ended else self.sid, size, conn.ctx.runtime.time())

    def _drop_held(self) -> None:
        """Held DATA nobody will read: credited, so the connection's window does not shrink."""
        held = self._held
        if held:
            self._credit(sum(len(data) for data in held))
            held.clear()
            self.conn.flush_soon()
        self._eof_held = False

    def _lose_soon(self) -> None:
        """Tell the driver the stream is over, later, as a transport reports its loss (once:
        _report_lost knows whether it was told already)."""
        runtime = self.conn.ctx.runtime
        runtime.call_at(runtime.time(), self._report_lost)

    def _report_lost(self) -> None:
        if not self._lost:
            self._lost = True
            self.driver.connection_lost(None)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._done or self.app_running or not self._lost or (self._pending and not self.gone):
            return
        if not self._client_ended and not self.gone and not self._waited:
            if self._linger is None:
                self._linger = linger(self.conn.ctx.runtime, self._stop_waiting)
            return
        self._done = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.conn.stream_closed(self.sid)

    def _stop_waiting(self) -> None:
        self._waited = True
        self._maybe_done()
