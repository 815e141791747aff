"""The server side of one HTTP/2 connection (RFC 9113), sans I/O, on the h2 state machine.

Rules of this module:

1. Bytes in, events out: ``receive_data(data, now)`` returns events of ``events.py``, each carrying
   its stream id (``Request``, ``Data``, ``EndOfMessage``, ``StreamReset``, ``WindowOpened``,
   ``GoAway``, ``ConnectionClosed``, ``Rejected``). ``receive_data(b"", now)`` means the peer closed
   its side, as for every core. Bytes to write are collected and taken with ``data_to_send()``.
2. h2 checks what RFC 9113 defines: frame sizes, stream states, HPACK, header blocks (pseudo-header
   set and order, lowercase names, CR/LF/NUL in values, connection-specific fields,
   content-length). What h2 leaves to the server is checked here: budgets for peer resets
   (CVE-2023-44487), SETTINGS and PING frames; the size and deadline of a header block still
   arriving in CONTINUATION frames (CVE-2023-45288 class); read and send deadlines per stream.
3. A connection error queues GOAWAY and becomes one ``Rejected``; nothing after it is parsed. The
   driver writes what is queued and closes.
4. DATA never exceeds the peer's windows: ``send_data`` sends what the windows allow and returns
   the rest, which the driver keeps (one message per stream) until a ``WindowOpened``. Received
   DATA is credited back to the peer only when the application has read it (``acknowledge``), so
   a client that sends faster than the app reads is held by its window.
5. Responses to HEAD and 204/304 carry no DATA; connection-specific response fields are removed.
6. No ASGI, no loop, no socket, no clock: time is passed in and deadlines are handed back.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    GoAway,
    Headers,
    LocalProtocolError,
    Rejected,
    Request,
    StreamReset,
    WindowOpened,
)

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
ENHANCE_YOUR_CALM: Final = 0xB

# Response fields that only mean something on one HTTP/1.1 connection (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te")
)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+")
_BAD_VALUE = re.compile(rb"[\x00\x0a\x0d]|^[ \t]|[ \t]$")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_STATUS: Final = {code: b"%d" % code for code in range(100, 600)}


class H2Limits:
    """What one HTTP/2 connection allows its peer; from the options (``ServerContext``)."""

    __slots__ = (
        "body_timeout",
        "head_timeout",
        "initial_window_size",
        "keep_alive_timeout",
        "max_body",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
        "ping_budget",
        "reset_budget",
        "send_timeout",
        "settings_budget",
    )

    def __init__(
        self,
        max_concurrent_streams: int = 100,
        initial_window_size: int = 65535,
        max_frame_size: int = 16384,
        max_header_list_size: int = 65536,
        max_body: int | None = None,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keep_alive_timeout: float = 5.0,
        send_timeout: float = 30.0,
        reset_budget: tuple[int, float] = (200, 20.0),
        settings_budget: tuple[int, float] = (100, 10.0),
        ping_budget: tuple[int, float] = (100, 10.0),
    ) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.initial_window_size = initial_window_size
        self.max_frame_size = max_frame_size
        self.max_header_list_size = max_header_list_size
        self.max_body = max_body
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.send_timeout = send_timeout
        # (burst, refill per second): a token bucket per connection for each kind of frame the
        # peer can make the server work for without opening a stream that counts.
        self.reset_budget = reset_budget
        self.settings_budget = settings_budget
        self.ping_budget = ping_budget


class _Budget:
    """A token bucket: ``take(now)`` is False once the peer spent more than it was given."""

    __slots__ = ("_last", "_rate", "_size", "_tokens")

    def __init__(self, spec: tuple[int, float], now: float) -> None:
        self._size = float(spec[0])
        self._rate = spec[1]
        self._tokens = self._size
        self._last = now

    def take(self, now: float) -> bool:
        tokens = min(self._size, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class _Stream:
    """What the core remembers of one stream it serves."""

    __slots__ = (
        "body_seen",
        "bodyless",
        "held",
        "read_since",
        "refused",
        "remaining",
        "sent_end",
        "stalled_since",
    )

    def __init__(self, now: float) -> None:
        self.bodyless = False  # HEAD, 204, 304: the response headers end the stream
        self.remaining = -1  # response bytes still owed to its content-length (-1: none given)
        self.sent_end = False
        self.body_seen = 0
        self.refused = False  # the body broke a limit: the rest of it is dropped
        self.held = 0  # body bytes received and not yet read by the app (not credited back)
        # The request body gap clock (None: the body is complete). It runs only while the app
        # has read everything: a peer whose window is full waits on the app, not the reverse.
        self.read_since: float | None = now
        self.stalled_since: float | None = None  # response data waiting for a window


def settings_payload(limits: H2Limits) -> dict[h2.settings.SettingCodes, int]:
    codes = h2.settings.SettingCodes
    return {
        codes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        codes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        codes.MAX_FRAME_SIZE: limits.max_frame_size,
        codes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        codes.ENABLE_PUSH: 0,
    }


class H2Connection:
    """One server-side HTTP/2 connection: frames in, stream events out, and back."""

    def __init__(self, limits: H2Limits, now: float) -> None:
        self.limits = limits
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            normalize_inbound_headers=False,
            validate_outbound_headers=False,  # checked here, with errors the app can see
            normalize_outbound_headers=False,  # names are lowercased here already
        )
        conn = self._conn = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(client=False, initial_values=settings_payload(limits))
        # h2 applies the advertised header list size only once the peer acknowledges it; an
        # HPACK bomb in the first request must meet the limit too.
        conn.decoder.max_header_list_size = limits.max_header_list_size
        conn.max_inbound_frame_size = limits.max_frame_size
        self._streams: dict[int, _Stream] = {}
        self._resets = _Budget(limits.reset_budget, now)
        self._settings = _Budget(limits.settings_budget, now)
        self._pings = _Budget(limits.ping_budget, now)
        self._idle_since = now
        self._head_since: float | None = None
        self._closed = False
        self._last_accepted: int | None = None  # after a graceful GOAWAY: streams above are refused
        self._out: list[bytes] = []
        self.peer_goaway = False

    # ------------------------------------------------------------------ starting

    def initiate(self) -> None:
        """The server preface (SETTINGS), for prior knowledge and ALPN."""
        self._conn.initiate_connection()
        self._boost_connection_window()

    def initiate_upgrade(self, settings_header: bytes, request: Request, now: float) -> None:
        """h2c by Upgrade (RFC 7540 §3.2): the HTTP/1.1 request becomes stream 1, half-closed by
        the peer; its body, read as HTTP/1.1, is already with the driver."""
        self._conn.initiate_upgrade_connection(settings_header)
        self._boost_connection_window()
        stream = self._streams[1] = _Stream(now)
        stream.read_since = None
        request.stream_id = 1
        self._note_bodyless(stream, request)

    def _boost_connection_window(self) -> None:
        """The connection window grows with the streams that may share it, so one slow stream
        does not hold back the others (the stream windows still bound each one)."""
        want = self.limits.initial_window_size * min(self.limits.max_concurrent_streams, 16)
        boost = min(want, 2**31 - 1) - 65535
        if boost > 0:
            self._conn.increment_flow_control_window(boost)

    # ------------------------------------------------------------------ reading

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closed:
            return []
        if not data:
            self._closed = True
            return [ConnectionClosed()]
        try:
            h2_events: list[Any] = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return [self._failed(f"protocol error: {exc}")]
        out: list[Event] = []
        for ev in h2_events:
            kind = type(ev)
            if kind is h2.events.DataReceived:
                sid = ev.stream_id
                flow = ev.flow_controlled_length or 0
                body = ev.data or b""
                if flow > len(body):
                    self._ack(sid, flow - len(body))  # padding is nobody's to read
                stream = self._streams.get(sid)
                if stream is None or stream.refused:
                    self._ack(sid, len(body))
                    continue
                stream.read_since = now
                max_body = self.limits.max_body
                if max_body is not None:
                    stream.body_seen += len(body)
                    if stream.body_seen > max_body:
                        stream.refused = True
                        stream.read_since = None
                        self._ack(sid, len(body))
                        out.append(Rejected(413, "request body too large", sid))
                        continue
                stream.held += len(body)
                out.append(Data(body, sid))
            elif kind is h2.events.RequestReceived:
                event = self._request(ev, now)
                if event is not None:
                    out.append(event)
            elif kind is h2.events.StreamEnded:
                stream = self._streams.get(ev.stream_id)
                if stream is not None and not stream.refused:
                    stream.read_since = None
                    out.append(EndOfMessage(ev.stream_id))
            elif kind is h2.events.StreamReset:
                sid = ev.stream_id
                if ev.remote_reset and not self._resets.take(now):
                    return [*out, self._calm("too many streams reset by the peer")]
                if self._streams.pop(sid, None) is not None:
                    out.append(StreamReset(sid, int(ev.error_code or 0)))
            elif kind is h2.events.WindowUpdated:
                out.append(WindowOpened(ev.stream_id))
            elif kind is h2.events.RemoteSettingsChanged:
                if not self._settings.take(now):
                    return [*out, self._calm("too many SETTINGS frames")]
                window = ev.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
                if window is not None and window.new_value != window.original_value:
                    out.append(WindowOpened(0))
            elif kind is h2.events.PingReceived:
                if not self._pings.take(now):
                    return [*out, self._calm("too many PING frames")]
            elif kind is h2.events.ConnectionTerminated:
                if ev.error_code:
                    self._closed = True
                    out.append(Rejected(400, f"the peer ended the connection ({ev.error_code!r})"))
                    return out
                self.peer_goaway = True
                # RFC 9113 §6.8: the streams the peer already opened still complete; h2 would
                # refuse to send anything more after a GOAWAY, so its state is put back.
                self._conn.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN
                out.append(GoAway())
            # TrailersReceived (ASGI has no request trailers; StreamEnded follows),
            # SettingsAcknowledged, PriorityUpdated, UnknownFrameReceived: nothing to do.
        self._check_buffered(now)
        if self._closed:
            out.append(Rejected(400, "frame or header block too large"))
        return out

    def _request(self, ev: h2.events.RequestReceived, now: float) -> Request | None:
        sid = ev.stream_id
        last = self._last_accepted
        if last is not None and sid > last:
            # Opened after our GOAWAY: never processed, the client may retry it elsewhere.
            self.reset(sid, REFUSED_STREAM)
            return None
        method = path = authority = b""
        headers: Headers = []
        has_host = False
        expect = False
        forwarded = False
        protocol: bytes | None = None
        for name, value in ev.headers or ():
            if name[:1] == b":":
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    protocol = value
                continue
            headers.append((name, value))
            if name == b"host":
                has_host = True
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    self.reset(sid, PROTOCOL_ERROR)
                    return None
                expect = True
            elif name in (b"x-forwarded-for", b"x-forwarded-proto", b"forwarded"):
                forwarded = True
        if authority and not has_host:
            headers.insert(0, (b"host", authority))
        if method == b"CONNECT" and protocol is None:
            raw_path, query = authority, b""
            target = authority
        else:
            target = path
            raw_path, _, query = path.partition(b"?")
        stream = self._streams[sid] = _Stream(now)
        self._idle_since = now
        request = Request(method, target, raw_path, query, "2", headers, True, expect, protocol, sid)
        request.forwarded = forwarded
        self._note_bodyless(stream, request)
        return request

    @staticmethod
    def _note_bodyless(stream: _Stream, request: Request) -> None:
        if request.method == b"HEAD":
            stream.bodyless = True

    def _check_buffered(self, now: float) -> None:
        """What h2 holds of frames not yet complete is bounded here; h2 keeps no public view of
        it, so its buffer is read directly. A frame announcing more than SETTINGS_MAX_FRAME_SIZE
        is refused from its header (h2 would buffer up to 16 MiB before checking). A header
        block spread over CONTINUATION frames is bounded in size (h2 bounds only the number of
        frames) and in time (``deadline``)."""
        buffer = self._conn.incoming_buffer
        data = buffer._data
        if len(data) >= 9 and int.from_bytes(data[:3], "big") > self.limits.max_frame_size:
            self.close(FRAME_SIZE_ERROR)
            return
        pending = buffer._headers_buffer
        if not pending:
            self._head_since = None
            return
        if self._head_since is None:
            self._head_since = now
        if sum(len(frame.data) for frame in pending) > self.limits.max_header_list_size:
            self._calm("header block larger than the header list limit")

    def _failed(self, detail: str) -> Rejected:
        """h2 found a connection error and queued GOAWAY."""
        self._closed = True
        return Rejected(400, detail)

    def _calm(self, detail: str) -> Rejected:
        self.close(ENHANCE_YOUR_CALM)
        return Rejected(400, detail)

    def _ack(self, sid: int, size: int) -> None:
        if size <= 0:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.acknowledge_received_data(size, sid)

    # ------------------------------------------------------------------ writing

    def data_to_send(self) -> bytes:
        data = self._conn.data_to_send()
        if self._out:
            data = b"".join(self._out) + data
            self._out.clear()
        return data

    def acknowledge(self, sid: int, size: int, now: float) -> None:
        """The application read ``size`` bytes of stream ``sid``'s body: open the windows again."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.held = max(0, stream.held - size)
            if not stream.held and stream.read_since is not None:
                stream.read_since = now
        self._ack(sid, size)

    def _response_block(self, status: int, headers: Headers, default: Headers) -> tuple[Headers, int]:
        code = _STATUS.get(status)
        if code is None:
            raise LocalProtocolError(f"invalid status code {status!r}")
        block: Headers = [(b":status", code)]
        length = -1
        own: set[bytes] = set()
        for name, value in headers:
            lname = name.lower()
            if lname in CONNECTION_SPECIFIC:
                continue
            if not _TOKEN.fullmatch(lname):
                raise LocalProtocolError(f"invalid response header name {name!r}")
            if value and _BAD_VALUE.search(value):
                raise LocalProtocolError(f"invalid response header value for {name!r}")
            if lname == b"content-length":
                if not _DIGITS.fullmatch(value) or length >= 0:
                    raise LocalProtocolError(f"invalid content-length {value!r}")
                length = int(value)
            elif lname == b"server" or lname == b"date":
                own.add(lname)
            block.append((lname, value))
        for name, value in default:
            if name not in own:
                block.append((name, value))
        return block, length

    def send_response(
        self, sid: int, status: int, headers: Headers, default: Headers, end_stream: bool
    ) -> bool:
        """Queue the response headers; True when they end the stream (no body can follow)."""
        stream = self._streams.get(sid)
        if stream is None or self._closed:
            return True
        block, length = self._response_block(status, headers, default)
        if status == 204:
            block = [(n, v) for n, v in block if n != b"content-length"]
        if status in (204, 304) or stream.bodyless:
            stream.bodyless = True
            end_stream = True
        elif length >= 0:
            stream.remaining = length
        if end_stream and stream.remaining > 0:
            raise LocalProtocolError("response body shorter than its Content-Length")
        self._conn.send_headers(sid, block, end_stream=end_stream)
        if end_stream:
            self._ended(sid, stream)
        return end_stream

    def informational(self, sid: int, status: int, headers: Headers) -> None:
        """A 1xx response (100 Continue, 103 Early Hints) before the final one."""
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status")
        if sid not in self._streams or self._closed:
            return
        block, _ = self._response_block(status, headers, [])
        self._conn.send_headers(sid, block)

    def send_data(self, sid: int, data: bytes, end_stream: bool, now: float) -> bytes:
        """Send what the windows allow of ``data`` (ending the stream with the last of it);
        return the rest, to be sent after a ``WindowOpened``."""
        stream = self._streams.get(sid)
        if stream is None or stream.sent_end or stream.bodyless or self._closed:
            return b""
        if stream.remaining >= 0 and len(data) > stream.remaining:
            raise LocalProtocolError("response body longer than its Content-Length")
        conn = self._conn
        size = len(data)
        allowed = min(size, conn.local_flow_control_window(sid)) if size else 0
        if stream.remaining >= 0:
            stream.remaining -= allowed
            if end_stream and allowed == size and stream.remaining:
                stream.remaining += allowed
                raise LocalProtocolError("response body shorter than its Content-Length")
        frame = conn.max_outbound_frame_size
        ends = end_stream and allowed == size
        if allowed == size and size <= frame:
            if size:
                conn.send_data(sid, data, end_stream=ends)
        else:
            offset = 0
            while offset < allowed:
                step = min(frame, allowed - offset)
                conn.send_data(
                    sid, data[offset : offset + step], end_stream=ends and offset + step >= allowed
                )
                offset += step
        if allowed < size:
            if stream.stalled_since is None:
                stream.stalled_since = now
            return data[allowed:]
        stream.stalled_since = None
        if end_stream:
            if not size:
                conn.send_data(sid, b"", end_stream=True)
            self._ended(sid, stream)
        return b""

    def send_trailers(self, sid: int, headers: Headers) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.sent_end or self._closed:
            return
        if stream.remaining > 0:
            raise LocalProtocolError("response body shorter than its Content-Length")
        block: Headers = []
        for name, value in headers:
            lname = name.lower()
            if lname in CONNECTION_SPECIFIC or lname[:1] == b":":
                continue
            if not _TOKEN.fullmatch(lname) or (value and _BAD_VALUE.search(value)):
                raise LocalProtocolError(f"invalid trailer field {name!r}")
            block.append((lname, value))
        self._conn.send_headers(sid, block, end_stream=True)
        self._ended(sid, stream)

    @staticmethod
    def _ended(sid: int, stream: _Stream) -> None:
        stream.sent_end = True
        stream.stalled_since = None

    def stream_done(self, sid: int, now: float) -> None:
        """The driver is done with stream ``sid`` (its app returned)."""
        stream = self._streams.get(sid)
        if stream is None:
            return
        if not stream.sent_end:
            self.reset(sid, INTERNAL_ERROR)
        elif stream.read_since is not None:
            # Answered before the request body ended: stop the upload (RFC 9113 §8.1).
            self.reset(sid, NO_ERROR)
        self._streams.pop(sid, None)
        if not self._streams:
            self._idle_since = now

    def reset(self, sid: int, code: int) -> None:
        self._streams.pop(sid, None)
        if self._closed:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self._conn.reset_stream(sid, code)

    def bodyless(self, sid: int) -> bool:
        """The response on ``sid`` carries no DATA (HEAD, 204, 304), or the stream is gone."""
        stream = self._streams.get(sid)
        return stream is None or stream.bodyless

    @property
    def push_allowed(self) -> bool:
        return bool(self._conn.remote_settings.enable_push) and not self.peer_goaway and not self._closed

    def push(
        self, sid: int, path: bytes, authority: bytes, scheme: bytes, headers: Headers, now: float
    ) -> Request | None:
        """PUSH_PROMISE a GET of ``path`` on stream ``sid``; the promised request, or None when the
        client does not take pushes now."""
        if not self.push_allowed or sid not in self._streams:
            return None
        conn = self._conn
        if conn.open_outbound_streams >= conn.remote_settings.max_concurrent_streams:
            return None
        promised = conn.get_next_available_stream_id()
        method = b"GET"
        block: Headers = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", path),
        ]
        fields: Headers = [(b"host", authority)]
        for name, value in headers:
            lname = name.lower()
            if lname[:1] == b":" or lname in CONNECTION_SPECIFIC or lname == b"host":
                continue
            if not _TOKEN.fullmatch(lname) or (value and _BAD_VALUE.search(value)):
                raise LocalProtocolError(f"invalid push header {name!r}")
            block.append((lname, value))
            fields.append((lname, value))
        try:
            conn.push_stream(sid, promised, block)
        except h2.exceptions.ProtocolError:
            return None  # the parent stream can no longer carry a promise
        raw_path, _, query = path.partition(b"?")
        request = Request(method, path, raw_path, query, "2", fields, True, False, None, promised)
        stream = self._streams[promised] = _Stream(now)
        stream.read_since = None
        self._note_bodyless(stream, request)
        return request

    # ------------------------------------------------------------------ closing

    def close(self, code: int = NO_ERROR) -> None:
        """GOAWAY with ``code``: the connection ends once the bytes are written."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._conn.close_connection(code)

    def graceful_shutdown(self) -> None:
        """GOAWAY NO_ERROR naming the last stream that will be served; open streams finish."""
        if self._last_accepted is not None or self._closed:
            return
        last = self._last_accepted = self._conn.highest_inbound_stream_id
        frame = GoAwayFrame(0)
        frame.last_stream_id = last
        frame.error_code = NO_ERROR
        # Written beside h2, not through it: h2 stops sending on every stream after its GOAWAY.
        self._out.append(self._conn.data_to_send() + frame.serialize())

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ deadlines

    @property
    def deadline(self) -> float | None:
        """The earliest time the peer runs out of time: a header block in CONTINUATION frames,
        a stalled request body, a response waiting for a window, or an idle connection."""
        limits = self.limits
        best: float | None = None
        if self._head_since is not None:
            best = self._head_since + limits.head_timeout
        for stream in self._streams.values():
            if stream.read_since is not None and not stream.held:
                when = stream.read_since + limits.body_timeout
                if best is None or when < best:
                    best = when
            if stream.stalled_since is not None:
                when = stream.stalled_since + limits.send_timeout
                if best is None or when < best:
                    best = when
        if not self._streams:
            when = self._idle_since + limits.keep_alive_timeout
            if best is None or when < best:
                best = when
        return best

    def timed_out(self, now: float) -> tuple[list[int], str | None]:
        """Called when the deadline passed: the streams to reset (their read or send stalled),
        and the reason to close the whole connection (None: it goes on)."""
        limits = self.limits
        if self._head_since is not None and now >= self._head_since + limits.head_timeout:
            self.close(PROTOCOL_ERROR)
            return [], "header block not received in time"
        expired = []
        for sid, stream in list(self._streams.items()):
            reading = stream.read_since is not None and not stream.held
            if (reading and now >= stream.read_since + limits.body_timeout) or (  # type: ignore[operator]
                stream.stalled_since is not None and now >= stream.stalled_since + limits.send_timeout
            ):
                expired.append(sid)
                self.reset(sid, CANCEL)
        if not self._streams and not expired and now >= self._idle_since + limits.keep_alive_timeout:
            return [], "idle"  # the driver closes it unless an app is still running
        return expired, None
