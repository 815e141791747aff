"""The server side of one HTTP/2 connection (RFC 9113), sans I/O: frames, stream states, flow control.

Rules of this module:

1. Bytes in, events out: ``receive_data(data, now)`` returns events of ``events.py``, each carrying
   its stream id (``Request``, ``Data``, ``EndOfMessage``, ``StreamReset``, ``WindowOpened``,
   ``GoAway``, ``ConnectionClosed``, ``Rejected``). ``receive_data(b"", now)`` means the peer closed
   its side, as for every core. Bytes to write are collected and taken with ``data_to_send()``.
2. Everything RFC 9113 defines is checked here, from the 9-byte frame header up: frame sizes and
   the stream each frame type may name, stream states (the table ``_INBOUND`` below), flow-control
   windows both ways, SETTINGS values, header blocks (pseudo-header set and order,
   connection-specific fields, ``te``, ``content-length`` and ``host``; names and values as
   ``fields.py`` rule 5 says) and a body that must match its ``content-length``. HPACK is the
   ``hpack`` library's (RFC 7541); ``_HeaderCodec`` puts a per-connection cache in front of it.
3. What RFC 9113 leaves to a server is checked here too: budgets for peer resets
   (CVE-2023-44487), SETTINGS and PING frames, and frames that make no progress (CVE-2019-9518
   class: empty DATA, PRIORITY, WINDOW_UPDATE beyond the DATA sent, ACKs of nothing, unknown
   types; see ``_idle_frame``); the size, frame count and deadline of a header block
   still arriving in CONTINUATION frames (CVE-2023-45288 class); the decoded size of a header list
   (HPACK bomb), from the first request on; read and send deadlines per stream.
4. A connection error queues GOAWAY and becomes one ``Rejected``; nothing after it is parsed. The
   driver writes what is queued and closes. A stream error queues RST_STREAM and, for a stream the
   driver knows, becomes ``StreamReset``.
5. DATA never exceeds the peer's windows: ``send_data`` sends what the windows allow and returns
   the rest, which the driver keeps (one message per stream) until a ``WindowOpened``. Received
   DATA is credited back to the peer only when the application has read it (``acknowledge``), so
   a client that sends faster than the app reads is held by its window.
6. Responses to HEAD and 204/304 carry no DATA. The fields sent (responses, trailers, pushes)
   follow ``fields.py`` (rules 1-4): RFC 9110's rule, plus RFC 9113's lowercase names, and
   connection-specific fields removed.
7. No ASGI, no loop, no socket, no clock: time is passed in and deadlines are handed back.
8. Extended CONNECT (RFC 8441) only when ``H2Limits.connect_protocol`` is set: SETTINGS then
   carries ENABLE_CONNECT_PROTOCOL=1 and a request with ``:protocol`` (which needs ``:scheme``,
   ``:path`` and ``:authority``) reaches the driver with ``Request.upgrade`` set; without it such a
   request is malformed (RST_STREAM PROTOCOL_ERROR). A stream the driver turns into a tunnel
   (``open_tunnel``) is a byte stream both ways: no body deadline, no body size limit.

Stream states (RFC 9113 §5.1), server side. A stream the client opens starts ``OPEN`` (or
``HALF_CLOSED_REMOTE`` when its HEADERS carry END_STREAM); a promised stream starts
``HALF_CLOSED_REMOTE`` (reserved (local) needs no state of its own: the server sends its HEADERS at
once). END_STREAM received moves ``OPEN`` to ``HALF_CLOSED_REMOTE`` and ``HALF_CLOSED_LOCAL`` to
``CLOSED``; END_STREAM sent moves ``OPEN`` to ``HALF_CLOSED_LOCAL`` and ``HALF_CLOSED_REMOTE`` to
``CLOSED``; RST_STREAM either way closes. ``_INBOUND`` says what each frame type does in each state;
a pair not in it is a protocol error.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from struct import Struct
from typing import Any, Final, cast

import hpack

from .events import (
    AppHeaders,
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
from .fields import h2_field, h2_received_name, h2_received_value, trailer_fields

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6) and flags.
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

# SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441 §3).
HEADER_TABLE_SIZE: Final = 0x1
ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE: Final = 0x5
MAX_HEADER_LIST_SIZE: Final = 0x6
ENABLE_CONNECT_PROTOCOL: Final = 0x8

MAX_WINDOW: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65535
MAX_CONTINUATIONS: Final = 64  # CONTINUATION frames one header block may take
# Frames that make no progress a peer earns with useful work (``H2Connection._idle_frame``): a
# browser's PRIORITY frames per stream opened; the WINDOW_UPDATEs for DATA sent earn two a frame.
EARNED_PER_STREAM: Final = 4
MAX_EARNED: Final = 16384
RECENT_RESETS: Final = 128  # streams reset by the server whose late frames are ignored

OPEN: Final = 0
HALF_CLOSED_REMOTE: Final = 1
HALF_CLOSED_LOCAL: Final = 2
CLOSED: Final = 3

# What a frame received on a known stream does, by state (RFC 9113 §5.1). "ok": processed;
# "closed": a stream error STREAM_CLOSED. PRIORITY, RST_STREAM and WINDOW_UPDATE are allowed in
# every state; a pair missing here is a connection error PROTOCOL_ERROR.
_INBOUND: Final = {
    (OPEN, DATA): "ok",
    (OPEN, HEADERS): "trailers",
    (HALF_CLOSED_LOCAL, DATA): "ok",
    (HALF_CLOSED_LOCAL, HEADERS): "trailers",
    (HALF_CLOSED_REMOTE, DATA): "closed",
    (HALF_CLOSED_REMOTE, HEADERS): "closed",
    (CLOSED, DATA): "closed",
    (CLOSED, HEADERS): "closed",
}

_FRAME_HEAD: Final = Struct(">HBBBL")  # length (24 bits as 16 + 8), type, flags, R + stream id
_PACK_HEAD: Final = Struct(">HBBBL")
_SETTING: Final = Struct(">HL")
_U32: Final = Struct(">L")
_GOAWAY: Final = Struct(">LL")

_REQUEST_CONNECTION_SPECIFIC: Final = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_DIGITS: Final = re.compile(rb"[0-9]{1,18}")
_STATUS: Final = {code: b"%d" % code for code in range(100, 600)}
_PSEUDO: Final = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
# A header block made only of one-byte indexed fields (RFC 7541 §6.1, indexes 1-126) neither
# reads nor changes anything but the tables: what it decodes to can be remembered.
_ONE_BYTE_INDEXES: Final = bytes(range(0x81, 0xFF))


class H2Limits:
    """What one HTTP/2 connection allows its peer; from the options (``ServerContext``)."""

    __slots__ = (
        "body_rate_window",
        "body_timeout",
        "connect_protocol",
        "head_timeout",
        "idle_frame_budget",
        "initial_window_size",
        "keep_alive_timeout",
        "max_body",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
        "min_body_rate",
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
        idle_frame_budget: tuple[int, float] = (1000, 100.0),
        connect_protocol: bool = False,
        min_body_rate: float | None = None,
        body_rate_window: float = 5.0,
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
        # A request body must bring min_body_rate * body_rate_window bytes within
        # body_rate_window seconds of the last time it did, while its app has read all it got.
        self.min_body_rate = min_body_rate
        self.body_rate_window = body_rate_window
        # (burst, refill per second): a token bucket per connection for each kind of frame the
        # peer can make the server work for without opening a stream that counts.
        self.reset_budget = reset_budget
        self.settings_budget = settings_budget
        self.ping_budget = ping_budget
        self.idle_frame_budget = idle_frame_budget
        self.connect_protocol = connect_protocol  # extended CONNECT (RFC 8441) is offered


class _Budget:
    """A token bucket: ``take(now)`` is False once the peer spent more than it was given."""

    __slots__ = ("_last", "_rate", "_size", "_tokens")

    def __init__(self, spec: tuple[int, float], now: float) -> None:
        self._size = float(spec[0])
        self._rate = spec[1]
        self._tokens = self._size
        self._last = now

    def take(self, now: float) -> bool:
        if self._tokens >= 1.0 and now == self._last:
            self._tokens -= 1.0  # a flood arrives in one read: no refill to compute
            return True
        tokens = min(self._size, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


class _ConnectionError(Exception):
    """A connection error (RFC 9113 §5.4.1): GOAWAY with ``code``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code


class _Stream:
    """What the core remembers of one stream it serves."""

    __slots__ = (
        "answered",
        "body_seen",
        "bodyless",
        "drop_left",
        "expected",
        "held",
        "rate_bytes",
        "rate_since",
        "read_since",
        "received",
        "recv_window",
        "refused",
        "remaining",
        "send_window",
        "sent_end",
        "stalled_since",
        "state",
        "tunnel",
    )

    def __init__(self, now: float, send_window: int, recv_window: int) -> None:
        self.state = OPEN
        self.send_window = send_window  # what the peer lets the server send on this stream
        self.recv_window = recv_window  # what the peer may still send before a WINDOW_UPDATE
        self.bodyless = False  # HEAD, 204, 304: the response headers end the stream
        self.remaining = -1  # response bytes still owed to its content-length (-1: none given)
        self.expected = -1  # request body bytes its content-length announces (-1: none given)
        self.received = 0  # request body bytes received
        self.sent_end = False
        self.body_seen = 0
        self.refused = False  # the body broke a limit: the rest of it is dropped
        self.held = 0  # body bytes received and not yet read by the app (not credited back)
        # The request body gap clock (None: the body is complete). It runs only while the app
        # has read everything: a peer whose window is full waits on the app, not the reverse.
        self.read_since: float | None = now
        self.rate_since = now  # the start of the body's current rate window (--min-body-rate)
        self.rate_bytes = 0  # body bytes received in it
        self.stalled_since: float | None = None  # response data waiting for a window
        self.tunnel = False  # an extended CONNECT the driver accepted: a byte stream, not a body
        # Answered in full and the driver done with it, while the request body may still come
        # (half-closed (local); ``stream_done``): nobody reads what arrives on it.
        self.answered = False
        self.drop_left = 0  # answered: body bytes still dropped before the upload is stopped


class _RequestHead:
    """A validated request header block: what a ``Request`` is made of (shared by the requests
    that repeat the same block, so never handed out without copying ``headers``)."""

    __slots__ = (
        "authority",
        "content_length",
        "expect",
        "forwarded",
        "headers",
        "method",
        "path",
        "protocol",
    )

    def __init__(self) -> None:
        self.method = b""
        self.path = b""
        self.authority = b""
        self.protocol: bytes | None = None
        self.headers: Headers = []
        self.expect = False
        self.forwarded = False
        self.content_length = -1


def settings_payload(limits: H2Limits) -> dict[int, int]:
    payload = {
        MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        INITIAL_WINDOW_SIZE: limits.initial_window_size,
        MAX_FRAME_SIZE: limits.max_frame_size,
        MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
        ENABLE_PUSH: 0,
    }
    if limits.connect_protocol:
        payload[ENABLE_CONNECT_PROTOCOL] = 1
    return payload


def _frame(kind: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _PACK_HEAD.pack(length >> 8, length & 0xFF, kind, flags, sid) + payload


def _parse_request(fields: list[tuple[bytes, bytes]]) -> _RequestHead:
    """Validate a request header block (RFC 9113 §8.2, §8.3, RFC 9110 §8.6) and split it."""
    head = _RequestHead()
    headers = head.headers
    seen: set[bytes] = set()
    regular = False
    host: bytes | None = None
    for name, value in fields:
        if not h2_received_value(value):
            raise _ConnectionError(PROTOCOL_ERROR, f"invalid value in header field {name!r}")
        if name[:1] == b":":
            if regular:
                raise _ConnectionError(PROTOCOL_ERROR, f"pseudo-header {name!r} after regular fields")
            if name not in _PSEUDO:
                raise _ConnectionError(PROTOCOL_ERROR, f"unknown pseudo-header {name!r}")
            if name in seen:
                raise _ConnectionError(PROTOCOL_ERROR, f"duplicate pseudo-header {name!r}")
            seen.add(name)
            if name == b":method":
                head.method = value
            elif name == b":path":
                if not value:
                    raise _ConnectionError(PROTOCOL_ERROR, "empty :path")
                head.path = value
            elif name == b":authority":
                head.authority = value
            elif name == b":protocol":
                head.protocol = value
            continue
        regular = True
        if not h2_received_name(name):
            raise _ConnectionError(PROTOCOL_ERROR, f"invalid header field name {name!r}")
        if name in _REQUEST_CONNECTION_SPECIFIC:
            raise _ConnectionError(PROTOCOL_ERROR, f"connection-specific field {name!r}")
        if name == b"te":
            if value.lower() != b"trailers":
                raise _ConnectionError(PROTOCOL_ERROR, "te other than trailers")
        elif name == b"host":
            if host is not None:
                raise _ConnectionError(PROTOCOL_ERROR, "duplicate host")
            host = value
        elif name == b"content-length":
            if head.content_length >= 0 or not _DIGITS.fullmatch(value):
                raise _ConnectionError(PROTOCOL_ERROR, f"invalid content-length {value!r}")
            head.content_length = int(value)
        elif name == b"expect":
            head.expect = True
        elif name in _FORWARDED:
            head.forwarded = True
        headers.append((name, value))
    if b":method" not in seen:
        raise _ConnectionError(PROTOCOL_ERROR, "no :method")
    connect = head.method == b"CONNECT"
    if head.protocol is not None and not connect:
        raise _ConnectionError(PROTOCOL_ERROR, ":protocol without CONNECT")
    if connect and head.protocol is None:
        if b":scheme" in seen or b":path" in seen:
            raise _ConnectionError(PROTOCOL_ERROR, "CONNECT with :scheme or :path")
    elif b":scheme" not in seen or b":path" not in seen:
        raise _ConnectionError(PROTOCOL_ERROR, "no :scheme or :path")
    if head.protocol is not None and not head.authority:
        # RFC 8441 §4 with RFC 9113 §8.3.1: the target of an extended CONNECT names its authority.
        raise _ConnectionError(PROTOCOL_ERROR, "extended CONNECT without :authority")
    if b":authority" in seen:
        if host is not None and host != head.authority:
            raise _ConnectionError(PROTOCOL_ERROR, ":authority and host differ")
        if host is None and head.authority:
            headers.insert(0, (b"host", head.authority))
    elif host is None:
        raise _ConnectionError(PROTOCOL_ERROR, "no :authority and no host")
    return head


_FORWARDED: Final = frozenset(
    (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix", b"forwarded")
)


def _check_trailers(fields: list[tuple[bytes, bytes]]) -> None:
    """Request trailers (RFC 9113 §8.1): no pseudo-headers; the same field rules as a head."""
    for name, value in fields:
        if name[:1] == b":" or not h2_received_name(name) or name in _REQUEST_CONNECTION_SPECIFIC:
            raise _ConnectionError(PROTOCOL_ERROR, f"invalid trailer field {name!r}")
        if not h2_received_value(value):
            raise _ConnectionError(PROTOCOL_ERROR, f"invalid value in trailer field {name!r}")


def _check_response(
    status: int, headers: AppHeaders
) -> tuple[tuple[tuple[bytes, bytes], ...], int, frozenset[bytes]]:
    """Check and lowercase an app's response fields, dropping connection-specific ones (RFC 9113
    §8.2.2); return them after ``:status``, the content-length (-1: none) and which of the
    server's own fields (server, date) the app set."""
    code = _STATUS.get(status)
    if code is None:
        raise LocalProtocolError(f"invalid status code {status!r}")
    block: Headers = [(b":status", code)]
    length = -1
    own: set[bytes] = set()
    for name, value in headers:
        field = h2_field(name, value, "response header")
        if field is None:
            continue
        lname, value = field
        if lname == b"content-length":
            if not _DIGITS.fullmatch(value) or length >= 0:
                raise LocalProtocolError(f"invalid content-length {value!r}")
            length = int(value)
        elif lname == b"server" or lname == b"date":
            own.add(lname)
        block.append((lname, bytes(value)))
    return tuple(block), length, frozenset(own)


def _check_first_body(size: int, ends: bool, length: int) -> None:
    """The body sent with the response headers against their content-length."""
    if size > length:
        raise LocalProtocolError("response body longer than its Content-Length")
    if ends and size < length:
        raise LocalProtocolError("response body shorter than its Content-Length")


# Checked response fields by (status, fields): apps send the same few again and again.
_CHECKED: Final[dict[tuple[Any, ...], tuple[tuple[tuple[bytes, bytes], ...], int, frozenset[bytes]]]] = {}


class _HeaderCodec:
    """HPACK for one connection (the ``hpack`` library), with two caches in front of it.

    A request header block made only of one-byte indexed fields decodes to the same fields as long
    as the decoder's dynamic table is unchanged, so its validated head is remembered; any other
    block may change the table and forgets what was remembered. The same holds for encoding: a
    response block whose encoding came out as one-byte indexes only (it changed nothing) encodes to
    the same bytes until the encoder's table changes. Clients that repeat their requests (every
    browser and load tool after the first request) and responses that repeat their fields (most,
    within a second: the date changes) take the caches; the rest take the library. HPACK state is
    per connection, and so are the caches."""

    __slots__ = ("_decoded", "_encoded", "decoder", "encoder", "responses")

    def __init__(self, max_header_list_size: int) -> None:
        self.decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self.encoder = hpack.Encoder()
        self._decoded: dict[bytes, _RequestHead] = {}
        self._encoded: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}
        # The same for a whole response head, by (status, the app's fields, the server's fields):
        # its encoded block and content-length, with no field list built at all.
        self.responses: dict[tuple[Any, ...], tuple[bytes, int]] = {}

    def decode_raw(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            fields = self.decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as oversized:
            raise _ConnectionError(ENHANCE_YOUR_CALM, "header list larger than allowed") from oversized
        except (hpack.HPACKError, ValueError, IndexError, UnicodeError) as error:
            # hpack reports a bad block as HPACKError; the others are kept should a version of it
            # let one escape: whatever the peer sends, a bad block is a connection error.
            raise _ConnectionError(COMPRESSION_ERROR, f"HPACK: {error}") from error
        if block.translate(None, _ONE_BYTE_INDEXES):
            self._decoded.clear()  # the table may have changed
        # hpack declares Iterable[HeaderTuple]; with raw=True it is a list of (bytes, bytes) tuples.
        return cast("list[tuple[bytes, bytes]]", fields)

    def request_head(self, block: bytes) -> _RequestHead:
        head = self._decoded.get(block)
        if head is not None:
            return head
        head = _parse_request(self.decode_raw(block))
        if not block.translate(None, _ONE_BYTE_INDEXES):
            if len(self._decoded) >= 64:
                self._decoded.clear()
            self._decoded[block] = head
        return head

    def encode(self, fields: Headers) -> bytes:
        key = tuple(fields)
        cache = self._encoded
        block = cache.get(key)
        if block is not None:
            return block
        block = self.encoder.encode(fields, huffman=True)
        if block.translate(None, _ONE_BYTE_INDEXES):
            cache.clear()  # the table changed
            self.responses.clear()
        else:
            if len(cache) >= 64:
                cache.clear()
            cache[key] = block
        return block

    def remember_response(self, key: tuple[Any, ...], block: bytes, length: int) -> None:
        if not block.translate(None, _ONE_BYTE_INDEXES):  # it changed nothing: valid until a change
            if len(self.responses) >= 64:
                self.responses.clear()
            self.responses[key] = (block, length)

    def set_encoder_table_size(self, size: int) -> None:
        self.encoder.header_table_size = size
        self._encoded.clear()
        self.responses.clear()


class H2Connection:
    """One server-side HTTP/2 connection: frames in, stream events out, and back."""

    def __init__(self, limits: H2Limits, now: float) -> None:
        self.limits = limits
        self._codec = _HeaderCodec(limits.max_header_list_size)
        self._streams: dict[int, _Stream] = {}
        self._resets = _Budget(limits.reset_budget, now)
        self._settings = _Budget(limits.settings_budget, now)
        self._pings = _Budget(limits.ping_budget, now)
        self._idle_frames = _Budget(limits.idle_frame_budget, now)
        # Frames that make no progress but answer useful work: a WINDOW_UPDATE for each DATA frame
        # sent (stream and connection), PRIORITY for each stream opened. They are free up to what
        # was earned; beyond it each spends the idle-frame budget.
        self._earned = 0
        self._idle_since = now
        self._head_since: float | None = None
        self._closed = False
        self._last_accepted: int | None = None  # after a graceful GOAWAY: streams above are refused
        self._out: list[bytes] = []
        self.peer_goaway = False
        # Reading.
        self._buffer = b""  # less than a frame header
        self._parts: list[bytes] = []  # a frame whose header was read: the bytes so far
        self._have = 0
        self._need = 0  # the size of that frame, header included (0: none pending)
        self._preface = False  # the client preface was read
        self._first_settings = False  # the client's first frame (SETTINGS) was read
        self._highest_inbound = 0
        self._open_inbound = 0  # client streams not closed (SETTINGS_MAX_CONCURRENT_STREAMS)
        self._recent_resets: dict[int, None] = {}
        self._opened: set[int] = set()  # windows a WindowOpened was given for in this read
        self._block_sid = 0  # a header block continues in CONTINUATION frames on this stream
        self._block_end = False
        self._block: list[bytes] = []
        self._block_frames = 0
        # Flow control: what the peer may still send us (connection), and our stream windows.
        self._recv_window = DEFAULT_WINDOW
        self._recv_unacked = 0
        self._stream_unacked: dict[int, int] = {}
        self._local_window = limits.initial_window_size
        self._settings_acked = False
        # The peer's settings.
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = 16384
        self._peer_max_streams = 2**31 - 1
        self._peer_push = True
        # Server-initiated (pushed) streams.
        self._next_push = 2
        self._open_outbound = 0

    # ------------------------------------------------------------------ starting

    def initiate(self) -> None:
        """The server preface (SETTINGS), for prior knowledge and ALPN."""
        payload = b"".join(_SETTING.pack(k, v) for k, v in settings_payload(self.limits).items())
        self._out.append(_frame(SETTINGS, 0, 0, payload))
        self._boost_connection_window()

    def initiate_upgrade(self, settings_header: bytes, request: Request, now: float) -> None:
        """h2c by Upgrade (RFC 7540 §3.2): the HTTP/1.1 request becomes stream 1, half-closed by
        the peer; its body, read as HTTP/1.1, is already with the driver. A malformed
        HTTP2-Settings (not base64url, not a SETTINGS payload, a value out of range) raises
        ValueError before anything is queued."""
        raw = settings_header.strip()
        # binascii.Error (a ValueError) for anything outside base64url's alphabet.
        payload = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        if len(payload) % 6:
            raise ValueError("HTTP2-Settings is not a SETTINGS payload")
        try:
            self._apply_settings(payload)
        except _ConnectionError as exc:
            raise ValueError(f"HTTP2-Settings: {exc}") from exc
        self.initiate()
        stream = self._streams[1] = _Stream(now, self._peer_initial_window, self._local_window)
        stream.state = HALF_CLOSED_REMOTE
        stream.read_since = None
        self._highest_inbound = 1
        self._open_inbound = 1
        request.stream_id = 1
        self._note_bodyless(stream, request)

    def _boost_connection_window(self) -> None:
        """The connection window grows with the streams that may share it, so one slow stream
        does not hold back the others (the stream windows still bound each one)."""
        want = self.limits.initial_window_size * min(self.limits.max_concurrent_streams, 16)
        boost = min(want, MAX_WINDOW) - DEFAULT_WINDOW
        if boost > 0:
            self._recv_window += boost
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(boost)))

    # ------------------------------------------------------------------ reading

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self._closed:
            return []
        if not data:
            self._closed = True
            return [ConnectionClosed()]
        out: list[Event] = []
        if self._opened:
            self._opened.clear()
        if self._need:
            # The rest of a frame whose header was read: gathered, joined once it is complete
            # (a large frame in many small reads is not copied again with each read).
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return out
            data = b"".join(self._parts)
            self._parts = []
            self._have = self._need = 0
        buffer = self._buffer + data if self._buffer else data
        try:
            if not self._preface:
                if len(buffer) < 24:
                    if not PREFACE.startswith(buffer):
                        raise _ConnectionError(PROTOCOL_ERROR, "not the HTTP/2 client preface")
                    self._buffer = buffer
                    return out
                if buffer[:24] != PREFACE:
                    raise _ConnectionError(PROTOCOL_ERROR, "not the HTTP/2 client preface")
                self._preface = True
                buffer = buffer[24:]
            rest = self._frames(buffer, now, out)
            if len(rest) >= 9:
                self._need = 9 + (int.from_bytes(rest[:3], "big"))
                self._parts = [rest]
                self._have = len(rest)
                self._buffer = b""
            else:
                self._buffer = rest
        except _ConnectionError as exc:
            self._buffer = b""
            self._parts = []
            self.close(exc.code)
            out.append(Rejected(400, str(exc)))
            return out
        if self._closed:  # a defence closed it (its Rejected is in ``out``)
            return out
        if self._block_sid:
            if self._head_since is None:
                self._head_since = now
        else:
            self._head_since = None
        return out

    def _frames(self, buffer: bytes, now: float, out: list[Event]) -> bytes:
        """Parse and act on every complete frame of ``buffer``; return what is left of it."""
        pos = 0
        size = len(buffer)
        unpack = _FRAME_HEAD.unpack_from
        max_frame = self.limits.max_frame_size
        streams = self._streams
        while size - pos >= 9:
            high, low, kind, flags, sid = unpack(buffer, pos)
            length = high << 8 | low
            if length > max_frame:
                # Refused from its header: nothing of a frame above the limit is buffered.
                raise _ConnectionError(FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
            end = pos + 9 + length
            if end > size:
                break
            payload = buffer[pos + 9 : end]
            pos = end
            sid &= 0x7FFFFFFF
            if self._block_sid and kind != CONTINUATION:
                raise _ConnectionError(PROTOCOL_ERROR, "header block interrupted")
            if not self._first_settings:
                if kind != SETTINGS or flags & ACK:
                    raise _ConnectionError(PROTOCOL_ERROR, "the client preface must end with SETTINGS")
                self._first_settings = True
            if kind == HEADERS:
                if not sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
                if flags & PADDED:
                    payload = self._unpad(payload)
                if flags & PRIORITY_FLAG:
                    if len(payload) < 5:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "HEADERS priority fields cut short")
                    if _U32.unpack_from(payload)[0] & 0x7FFFFFFF == sid:
                        # A stream error (§5.3.1) taken as a connection error (§5.4.1): the
                        # block is never decoded, so the HPACK tables could not stay in step.
                        raise _ConnectionError(PROTOCOL_ERROR, "stream depends on itself")
                    payload = payload[5:]
                if flags & END_HEADERS:
                    self._header_block(sid, payload, bool(flags & END_STREAM), now, out)
                else:
                    self._block_sid = sid
                    self._block_end = bool(flags & END_STREAM)
                    self._block = [payload]
                    self._block_frames = 0
                    if not self._check_block():
                        self._calm("header block larger than the header list limit", out)
                        break
            elif kind == DATA:
                if not sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
                self._data(sid, flags, payload, now, out)
            elif kind == WINDOW_UPDATE:
                if length != 4:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
                if not self._idle_frame(now, out):
                    break
                self._window_update(sid, _U32.unpack(payload)[0] & 0x7FFFFFFF, out)
            elif kind == SETTINGS:
                if sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
                if flags & ACK:
                    if length:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
                    if self._settings_acked and not self._idle_frame(now, out):
                        break  # one SETTINGS is sent, so one ACK is due
                    self._settings_acked = True
                    continue
                if length % 6:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
                if not self._settings.take(now):
                    self._calm("too many SETTINGS frames", out)
                    break
                if self._apply_settings(payload):
                    self._opened_window(0, out)
                self._out.append(_frame(SETTINGS, ACK, 0))
            elif kind == CONTINUATION:
                if not self._block_sid or sid != self._block_sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without a header block")
                self._block.append(payload)
                self._block_frames += 1
                if flags & END_HEADERS:
                    block = b"".join(self._block)
                    self._block = []
                    self._block_sid = 0
                    self._header_block(sid, block, self._block_end, now, out)
                elif not self._check_block():
                    self._calm("header block larger than the header list limit", out)
                    break
            elif kind == RST_STREAM:
                if not sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
                if length != 4:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
                if self._idle(sid):
                    raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on an idle stream")
                if not self._resets.take(now):
                    self._calm("too many streams reset by the peer", out)
                    break
                stream = streams.pop(sid, None)
                if stream is not None:
                    self._set_closed(sid, stream)
                    self._release(stream)
                    if stream.answered:
                        if not streams:
                            self._idle_since = now
                    else:
                        out.append(StreamReset(sid, _U32.unpack(payload)[0]))
            elif kind == PING:
                if sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "PING on a stream")
                if length != 8:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "PING of the wrong size")
                if not flags & ACK:
                    if not self._pings.take(now):
                        self._calm("too many PING frames", out)
                        break
                    self._out.append(_frame(PING, ACK, 0, payload))
                elif not self._idle_frame(now, out):
                    break  # the server sends no PING: an ACK answers nothing
            elif kind == PRIORITY:
                if not sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
                if not self._idle_frame(now, out):
                    break
                if length != 5:
                    self._stream_error(sid, FRAME_SIZE_ERROR, out)
                elif _U32.unpack_from(payload)[0] & 0x7FFFFFFF == sid:
                    self._stream_error(sid, PROTOCOL_ERROR, out)
            elif kind == GOAWAY:
                if sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
                if length < 8:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "GOAWAY of the wrong size")
                code = _GOAWAY.unpack_from(payload)[1]
                if code:
                    self._closed = True
                    out.append(Rejected(400, f"the peer ended the connection ({code})"))
                    break
                # RFC 9113 §6.8: the streams the peer already opened still complete.
                if self.peer_goaway and not self._idle_frame(now, out):
                    break
                self.peer_goaway = True
                out.append(GoAway())
            elif kind == PUSH_PROMISE:
                raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
            elif not self._idle_frame(now, out):
                break  # unknown frame types are ignored (RFC 9113 §5.5), within the budget
            if self._closed:
                break
        return buffer[pos:] if pos < size else b""

    @staticmethod
    def _unpad(payload: bytes) -> bytes:
        if not payload or payload[0] >= len(payload):
            raise _ConnectionError(PROTOCOL_ERROR, "padding as long as the frame")
        return payload[1 : len(payload) - payload[0]]

    def _check_block(self) -> bool:
        """A header block still arriving: bounded in bytes and in frames (h2 bounded only the
        frames); the head deadline bounds it in time."""
        if self._block_frames > MAX_CONTINUATIONS:
            return False
        return sum(len(piece) for piece in self._block) <= self.limits.max_header_list_size

    def _idle(self, sid: int) -> bool:
        if sid & 1:
            return sid > self._highest_inbound
        return sid >= self._next_push

    def _header_block(self, sid: int, block: bytes, end: bool, now: float, out: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            if not sid & 1:
                raise _ConnectionError(PROTOCOL_ERROR, "a client opened a stream with an even id")
            if sid <= self._highest_inbound:
                self._codec.decode_raw(block)  # keeps the HPACK table in step
                if sid in self._recent_resets:
                    return  # RFC 9113 §5.1: frames after our RST_STREAM are ignored
                raise _ConnectionError(STREAM_CLOSED, "HEADERS on a closed stream")
            self._new_stream(sid, block, end, now, out)
            return
        action = _INBOUND.get((stream.state, HEADERS))
        if action == "trailers":
            _check_trailers(self._codec.decode_raw(block))
            if not end:
                raise _ConnectionError(PROTOCOL_ERROR, "trailers without END_STREAM")
            self._remote_end(sid, stream, now, out)
        else:  # "closed": _INBOUND names HEADERS in every state a known stream can be in
            self._codec.decode_raw(block)
            raise _ConnectionError(STREAM_CLOSED, "HEADERS on a half-closed stream")

    def _new_stream(self, sid: int, block: bytes, end: bool, now: float, out: list[Event]) -> None:
        self._highest_inbound = sid
        head = self._codec.request_head(block)
        if self._open_inbound >= self.limits.max_concurrent_streams:
            # RFC 9113 §5.1.2, §8.7: a stream error, REFUSED_STREAM: never processed, so the
            # client may retry it (one that sent its first flight before our SETTINGS keeps the
            # streams it has). Its block is decoded (HPACK in step); its late frames are ignored
            # (``_recent_resets``). A refusal makes no progress: it is paid from the idle-frame
            # budget, so a flood of them ends the connection (ENHANCE_YOUR_CALM).
            if self._idle_frame(now, out):
                self._reset_frame(sid, REFUSED_STREAM)
            return
        last = self._last_accepted
        if last is not None and sid > last:
            # Opened after our GOAWAY: never processed, the client may retry it elsewhere.
            self._reset_frame(sid, REFUSED_STREAM)
            return
        if end and head.content_length > 0:
            raise _ConnectionError(PROTOCOL_ERROR, "request body shorter than its content-length")
        if head.expect and head.headers and not _expect_ok(head.headers):
            self._reset_frame(sid, PROTOCOL_ERROR)
            return
        if head.protocol is not None and not self.limits.connect_protocol:
            # RFC 8441 §4: :protocol before the server enabled it is a malformed request, a stream
            # error (its header block decoded, so HPACK is in step).
            self._reset_frame(sid, PROTOCOL_ERROR)
            return
        stream = self._streams[sid] = _Stream(now, self._peer_initial_window, self._local_window)
        self._open_inbound += 1
        self._earn(EARNED_PER_STREAM)
        self._idle_since = now
        stream.expected = head.content_length
        method = head.method
        protocol = head.protocol
        if method == b"CONNECT" and protocol is None:
            target = raw_path = head.authority
            query = b""
        else:
            target = head.path
            raw_path, _, query = target.partition(b"?")
        request = Request(
            method, target, raw_path, query, "2", list(head.headers), True, head.expect, protocol, sid
        )
        request.forwarded = head.forwarded
        if method == b"HEAD":
            stream.bodyless = True
        out.append(request)
        if end:
            stream.state = HALF_CLOSED_REMOTE
            stream.read_since = None
            out.append(EndOfMessage(sid))

    def _data(self, sid: int, flags: int, payload: bytes, now: float, out: list[Event]) -> None:
        flow = len(payload)
        if flags & PADDED:
            payload = self._unpad(payload)
        if not payload and not flags & END_STREAM and not self._idle_frame(now, out):
            return
        self._recv_window -= flow
        if self._recv_window < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        stream = self._streams.get(sid)
        if stream is None or stream.state == CLOSED:
            if self._idle(sid):
                raise _ConnectionError(PROTOCOL_ERROR, "DATA on an idle stream")
            self._credit(0, flow)
            if sid not in self._recent_resets:
                self._stream_error(sid, STREAM_CLOSED, out)
            return
        if _INBOUND.get((stream.state, DATA)) != "ok":
            self._credit(0, flow)
            self._stream_error(sid, STREAM_CLOSED, out)
            return
        if stream.answered:
            # Dropped, but still the request's body: it must match its content-length (§8.1.1),
            # and it may end with trailers, checked as any (§8.1). The client may send what its
            # stream window already allows (up to 64 KiB); once that is spent, RST_STREAM
            # NO_ERROR stops the upload (§8.1) rather than leaving it waiting for a window.
            self._credit(0, flow)
            stream.received += len(payload)
            if stream.expected >= 0 and stream.received > stream.expected:
                raise _ConnectionError(PROTOCOL_ERROR, "request body longer than its content-length")
            if flags & END_STREAM:
                self._remote_end(sid, stream, now, out)
                return
            stream.drop_left -= flow
            if stream.drop_left <= 0:
                self.reset(sid, NO_ERROR)
            return
        stream.recv_window -= flow
        if stream.recv_window < 0:
            floor = self.limits.initial_window_size - DEFAULT_WINDOW
            if self._settings_acked or stream.recv_window < min(floor, 0):
                raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the stream window")
        body = payload
        size = len(body)
        stream.received += size
        if stream.expected >= 0 and stream.received > stream.expected:
            raise _ConnectionError(PROTOCOL_ERROR, "request body longer than its content-length")
        if flow > size:
            self._credit(sid, flow - size)  # padding is nobody's to read
        if stream.refused:
            self._credit(sid, size)
        elif stream.tunnel:
            if size:
                stream.held += size
                out.append(Data(body, sid))
        elif size:
            stream.read_since = now
            rate = self.limits.min_body_rate
            if rate is not None:
                stream.rate_bytes += size
                if stream.rate_bytes >= rate * self.limits.body_rate_window:
                    stream.rate_since = now  # kept up: a new window starts
                    stream.rate_bytes = 0
            max_body = self.limits.max_body
            refused = False
            if max_body is not None:
                stream.body_seen += size
                if stream.body_seen > max_body:
                    refused = stream.refused = True
                    stream.read_since = None
                    self._credit(sid, size)
                    out.append(Rejected(413, "request body too large", sid))
            if not refused:
                stream.held += size
                out.append(Data(body, sid))
        if flags & END_STREAM:
            self._remote_end(sid, stream, now, out)

    def _remote_end(self, sid: int, stream: _Stream, now: float, out: list[Event]) -> None:
        """The request ends (DATA with END_STREAM, or trailers): its body must have the size its
        content-length announced (RFC 9113 §8.1.1)."""
        if stream.expected >= 0 and stream.received != stream.expected:
            raise _ConnectionError(PROTOCOL_ERROR, "request body shorter than its content-length")
        if stream.answered:
            self._forget(sid, stream, now)
            return
        if stream.state == HALF_CLOSED_LOCAL:
            self._set_closed(sid, stream)
        else:
            stream.state = HALF_CLOSED_REMOTE
        if not stream.refused:
            stream.read_since = None
            out.append(EndOfMessage(sid))

    def _window_update(self, sid: int, increment: int, out: list[Event]) -> None:
        if not sid:
            if not increment:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._opened_window(0, out)
            return
        stream = self._streams.get(sid)
        if stream is None or stream.state == CLOSED:
            if self._idle(sid):
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if not increment:
            self._stream_error(sid, PROTOCOL_ERROR, out)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._stream_error(sid, FLOW_CONTROL_ERROR, out)
            return
        self._opened_window(sid, out)

    def _opened_window(self, sid: int, out: list[Event]) -> None:
        """One ``WindowOpened`` per window per read: the driver acts on the events after the
        whole read is parsed, so many small WINDOW_UPDATE frames make it retry once, not once
        each."""
        opened = self._opened
        if sid not in opened:
            opened.add(sid)
            out.append(WindowOpened(sid))

    def _apply_settings(self, payload: bytes) -> bool:
        """The peer's SETTINGS; True when its initial window changed."""
        changed = False
        for offset in range(0, len(payload), 6):
            ident, value = _SETTING.unpack_from(payload, offset)
            if ident == HEADER_TABLE_SIZE:
                # RFC 7541 §4.2: the encoder may use less than the peer allows; more than the
                # default 4,096 bytes would be memory per connection spent on the peer's say-so.
                self._codec.set_encoder_table_size(min(value, 4096))
            elif ident == ENABLE_PUSH:
                if value > 1:
                    raise _ConnectionError(PROTOCOL_ERROR, "ENABLE_PUSH other than 0 or 1")
                self._peer_push = bool(value)
            elif ident == MAX_CONCURRENT_STREAMS:
                self._peer_max_streams = value
            elif ident == INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE above 2^31-1")
                delta = value - self._peer_initial_window
                if delta:
                    changed = True
                    self._peer_initial_window = value
                    for stream in self._streams.values():
                        stream.send_window += delta
                        if stream.send_window > MAX_WINDOW:
                            raise _ConnectionError(FLOW_CONTROL_ERROR, "stream window above 2^31-1")
            elif ident == MAX_FRAME_SIZE:
                if not 16384 <= value <= 2**24 - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range")
                self._peer_max_frame = value
            elif ident == ENABLE_CONNECT_PROTOCOL and value > 1:
                raise _ConnectionError(PROTOCOL_ERROR, "ENABLE_CONNECT_PROTOCOL other than 0 or 1")
            # MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (RFC 9113 §6.5.2).
        return changed

    def _stream_error(self, sid: int, code: int, out: list[Event]) -> None:
        """RST_STREAM with ``code``; the driver hears of it if it serves the stream."""
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._set_closed(sid, stream)
            self._release(stream)
            out.append(StreamReset(sid, code))
        self._reset_frame(sid, code)

    def _idle_frame(self, now: float, out: list[Event]) -> bool:
        """A frame that makes no progress: free while the peer has earned it (``_earned``), then
        paid from the idle-frame budget; False (the connection ends, ENHANCE_YOUR_CALM) once the
        budget is spent. Empty DATA without END_STREAM, PRIORITY, WINDOW_UPDATE, a second
        SETTINGS ACK, a PING ACK, a second GOAWAY, frames of unknown types and streams refused
        beyond SETTINGS_MAX_CONCURRENT_STREAMS count."""
        if self._earned:
            self._earned -= 1
            return True
        if self._idle_frames.take(now):
            return True
        self._calm("too many HTTP/2 frames that make no progress", out)
        return False

    def _earn(self, frames: int) -> None:
        earned = self._earned + frames
        self._earned = earned if earned < MAX_EARNED else MAX_EARNED

    def _calm(self, detail: str, out: list[Event]) -> None:
        self.close(ENHANCE_YOUR_CALM)
        out.append(Rejected(400, detail))

    def _credit(self, sid: int, size: int) -> None:
        """``size`` bytes of received DATA are read (or dropped): give them back to the peer.
        Small credits are gathered until they make a quarter of the window. A stream's own window
        can only be emptied by its own body, which its app has then read: the credit is at least a
        quarter. The connection's can be emptied by bodies that other apps hold, so once less than
        a quarter of it is left every credit goes out at once."""
        if size <= 0:
            return
        unacked = self._recv_unacked + size
        threshold = self._connection_threshold()
        if unacked >= threshold or self._recv_window < threshold:
            self._recv_window += unacked
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(unacked)))
            unacked = 0
        self._recv_unacked = unacked
        if not sid:
            return
        stream = self._streams.get(sid)
        if stream is None or stream.state in (HALF_CLOSED_REMOTE, CLOSED) or stream.refused:
            return
        pending = self._stream_unacked.get(sid, 0) + size
        if pending >= max(self._local_window // 4, 1):
            stream.recv_window += pending
            self._stream_unacked.pop(sid, None)
            self._out.append(_frame(WINDOW_UPDATE, 0, sid, _U32.pack(pending)))
        else:
            self._stream_unacked[sid] = pending

    def _connection_threshold(self) -> int:
        return max(self._local_window * min(self.limits.max_concurrent_streams, 16) // 4, 1)

    # ------------------------------------------------------------------ writing

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        return data

    def acknowledge(self, sid: int, size: int, now: float) -> None:
        """The application read ``size`` bytes of stream ``sid``'s body: open the windows again."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.held = max(0, stream.held - size)
            if not stream.held and stream.read_since is not None:
                stream.read_since = stream.rate_since = now
                stream.rate_bytes = 0
        if not self._closed:
            self._credit(sid, size)

    @staticmethod
    def _response_block(
        status: int, headers: AppHeaders, default: Sequence[tuple[bytes, bytes]]
    ) -> tuple[Headers, int]:
        """The response fields, checked, lowercased and without connection-specific fields, with
        the server's defaults; and the content-length (-1: none). An app that sends the same
        fields again (most do) finds them checked already."""
        key = (status, tuple(headers))
        cacheable = True
        try:
            done = _CHECKED.get(key)
        except TypeError:  # fields that are lists, not tuples: checked each time
            cacheable = False
            done = None
        if done is None:
            done = _check_response(status, headers)
            if cacheable:
                if len(_CHECKED) >= 256:
                    _CHECKED.clear()
                _CHECKED[key] = done
        fields, length, own = done
        block = list(fields)
        for name, value in default:
            if name not in own:
                block.append((name, value))
        return block, length

    def _send_headers(self, sid: int, block: Headers, end: bool) -> None:
        self._send_block(sid, self._codec.encode(block), end)

    def _send_block(self, sid: int, encoded: bytes, end: bool) -> None:
        flags = END_STREAM if end else 0
        limit = self._peer_max_frame
        if len(encoded) <= limit:
            self._out.append(_frame(HEADERS, flags | END_HEADERS, sid, encoded))
            return
        self._out.append(_frame(HEADERS, flags, sid, encoded[:limit]))
        for offset in range(limit, len(encoded), limit):
            last = offset + limit >= len(encoded)
            piece = encoded[offset : offset + limit]
            self._out.append(_frame(CONTINUATION, END_HEADERS if last else 0, sid, piece))

    def send_response(
        self,
        sid: int,
        status: int,
        headers: AppHeaders,
        default: Sequence[tuple[bytes, bytes]],
        end_stream: bool,
        body_size: int = -1,
        body_ends: bool = False,
    ) -> bool:
        """Queue the response headers; True when they end the stream (no body can follow).

        ``body_size`` is the size of the body the app sent with them (-1: not known), the whole of
        it when ``body_ends``. A body that cannot match the content-length raises
        ``LocalProtocolError`` before anything is queued, so the stream can still carry a 500."""
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)  # an iterator: the cache key and the checks both read the fields
        stream = self._streams.get(sid)
        if stream is None or self._closed or stream.state == CLOSED:
            return True
        key: tuple[Any, ...] | None = None
        if not stream.bodyless and status != 204 and status != 304 and type(default) is tuple:
            key = (status, tuple(headers), default)
            try:
                known = self._codec.responses.get(key)
            except TypeError:  # fields that are lists, not tuples
                key = known = None
            if known is not None:
                encoded, length = known
                if length >= 0:
                    stream.remaining = length
                if end_stream and stream.remaining > 0:
                    raise LocalProtocolError("response body shorter than its Content-Length")
                if body_size >= 0 and length >= 0:
                    _check_first_body(body_size, body_ends, length)
                self._send_block(sid, encoded, end_stream)
                if end_stream:
                    self._ended(sid, stream)
                return end_stream
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
        if body_size >= 0 and stream.remaining >= 0:
            _check_first_body(body_size, body_ends, stream.remaining)
        encoded = self._codec.encode(block)
        if key is not None:
            self._codec.remember_response(key, encoded, length)
        self._send_block(sid, encoded, end_stream)
        if end_stream:
            self._ended(sid, stream)
        return end_stream

    def informational(self, sid: int, status: int, headers: Headers) -> None:
        """A 1xx response (100 Continue, 103 Early Hints) before the final one."""
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status")
        stream = self._streams.get(sid)
        if stream is None or self._closed or stream.state == CLOSED:
            return
        block, _ = self._response_block(status, headers, [])
        self._send_headers(sid, block, False)

    def send_data(self, sid: int, data: bytes, end_stream: bool, now: float) -> bytes:
        """Send what the windows allow of ``data`` (ending the stream with the last of it);
        return the rest, to be sent after a ``WindowOpened``."""
        stream = self._streams.get(sid)
        if stream is None or stream.sent_end or stream.bodyless or self._closed:
            return b""
        size = len(data)
        if stream.remaining >= 0 and size > stream.remaining:
            raise LocalProtocolError("response body longer than its Content-Length")
        allowed = min(size, stream.send_window, self._send_window) if size else 0
        if allowed < 0:
            allowed = 0
        if stream.remaining >= 0:
            if end_stream and allowed == size and stream.remaining != size:
                raise LocalProtocolError("response body shorter than its Content-Length")
            stream.remaining -= allowed
        ends = end_stream and allowed == size
        frame = self._peer_max_frame
        out = self._out
        if allowed == size and size <= frame:
            if size or ends:
                length = size
                out.append(
                    _PACK_HEAD.pack(length >> 8, length & 0xFF, DATA, END_STREAM if ends else 0, sid) + data
                )
                if size:
                    self._earn(2)  # a WINDOW_UPDATE for the stream and one for the connection
        else:
            offset = 0
            while offset < allowed:
                step = min(frame, allowed - offset)
                last = ends and offset + step >= allowed
                out.append(_frame(DATA, END_STREAM if last else 0, sid, data[offset : offset + step]))
                offset += step
                self._earn(2)
        stream.send_window -= allowed
        self._send_window -= allowed
        if allowed < size:
            if stream.stalled_since is None:
                stream.stalled_since = now
            return data[allowed:]
        stream.stalled_since = None
        if end_stream:
            self._ended(sid, stream)
        return b""

    def send_trailers(self, sid: int, headers: Headers) -> None:
        stream = self._streams.get(sid)
        if stream is None or stream.sent_end or self._closed:
            return
        if stream.remaining > 0:
            raise LocalProtocolError("response body shorter than its Content-Length")
        self._send_headers(sid, trailer_fields(headers), True)
        self._ended(sid, stream)

    def _ended(self, sid: int, stream: _Stream) -> None:
        stream.sent_end = True
        stream.stalled_since = None
        if stream.state == HALF_CLOSED_REMOTE:
            self._set_closed(sid, stream)
        else:
            # OPEN: a stream still in _streams whose END_STREAM we have not sent is in no other
            # state (HALF_CLOSED_LOCAL follows our END_STREAM; CLOSED too, or the stream left).
            stream.state = HALF_CLOSED_LOCAL

    def _set_closed(self, sid: int, stream: _Stream) -> None:
        if stream.state == CLOSED:
            return
        stream.state = CLOSED
        self._stream_unacked.pop(sid, None)
        if sid & 1:
            self._open_inbound -= 1
        else:
            self._open_outbound -= 1

    def stream_done(self, sid: int, now: float) -> None:
        """The driver is done with stream ``sid`` (its app returned)."""
        stream = self._streams.get(sid)
        if stream is None:
            return
        if not stream.sent_end:
            self.reset(sid, INTERNAL_ERROR)
        elif stream.state == HALF_CLOSED_LOCAL and not stream.tunnel:
            # Answered before the request body ended. The stream stays half-closed (local), as
            # RFC 9113 §5.1 has it, until the client ends or resets it: its WINDOW_UPDATE,
            # RST_STREAM, DATA and trailers get the answers §5.1, §6.9 and §8.1 give for an open
            # stream, and not "ignored after our RST_STREAM". Its DATA is dropped, within what
            # the stream window already allows (at most 64 KiB); RST_STREAM(NO_ERROR) then stops
            # the upload (§8.1), at once when that window is spent already. The body deadlines
            # bound a client that sends nothing.
            stream.answered = True
            self._release(stream)  # what the app left unread is nobody's now: the deadlines run
            stream.drop_left = min(max(stream.recv_window, 0), DEFAULT_WINDOW)
            if not stream.drop_left:
                self.reset(sid, NO_ERROR)  # it can send nothing more: a window will not come
                if not self._streams:
                    self._idle_since = now
                return
            # Its body deadlines start now, a body refused as too large (which had none) included.
            stream.read_since = stream.rate_since = now
            return
        elif stream.state == HALF_CLOSED_LOCAL:
            self.reset(sid, NO_ERROR)  # a tunnel's input after its end: stop it (§8.1)
        else:
            self._set_closed(sid, stream)
            self._release(stream)
        self._streams.pop(sid, None)
        if not self._streams:
            self._idle_since = now

    def _release(self, stream: _Stream) -> None:
        """``stream`` leaves while holding body its app never read: nobody acknowledges that now,
        so it is credited to the connection window (RFC 9113 §6.9), or every request left unread
        would shrink the window the other streams share until uploads stall. A tunnel's driver
        credits what it holds itself."""
        held = stream.held
        if held:
            stream.held = 0
            if not stream.tunnel and not self._closed:
                self._credit(0, held)

    def _forget(self, sid: int, stream: _Stream, now: float) -> None:
        """An answered stream ended by the client: closed, and nobody hears of it."""
        self._set_closed(sid, stream)
        self._streams.pop(sid, None)
        if not self._streams:
            self._idle_since = now

    def open_tunnel(self, sid: int) -> None:
        """Stream ``sid`` (an extended CONNECT) now carries a byte stream both ways (RFC 8441 §5):
        its DATA is not a request body, so neither the body gap deadline nor the body size limit
        applies; received DATA is still credited back only through ``acknowledge``."""
        stream = self._streams.get(sid)
        if stream is not None:
            stream.tunnel = True
            stream.read_since = None

    def reset(self, sid: int, code: int) -> None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._release(stream)
            if stream.state == CLOSED:
                return
            self._set_closed(sid, stream)
        if self._closed:
            return
        self._reset_frame(sid, code)

    def _reset_frame(self, sid: int, code: int) -> None:
        # Only while the connection is open: receive_data reads nothing once it is closed (its
        # frame loop stops at the frame that closed it), and reset() checks.
        recent = self._recent_resets
        recent[sid] = None
        if len(recent) > RECENT_RESETS:
            del recent[next(iter(recent))]
        self._out.append(_frame(RST_STREAM, 0, sid, _U32.pack(code)))

    def bodyless(self, sid: int) -> bool:
        """The response on ``sid`` carries no DATA (HEAD, 204, 304), or the stream is gone."""
        stream = self._streams.get(sid)
        return stream is None or stream.bodyless

    @property
    def push_allowed(self) -> bool:
        return self._peer_push and not self.peer_goaway and not self._closed

    def push(
        self, sid: int, path: bytes, authority: bytes, scheme: bytes, headers: Headers, now: float
    ) -> Request | None:
        """PUSH_PROMISE a GET of ``path`` on stream ``sid``; the promised request, or None when the
        client does not take pushes now."""
        parent = self._streams.get(sid)
        if not self.push_allowed or parent is None or not sid & 1:
            return None
        if parent.state in (HALF_CLOSED_LOCAL, CLOSED):
            return None  # the parent stream can no longer carry a promise
        if self._open_outbound >= self._peer_max_streams:
            return None
        promised = self._next_push
        method = b"GET"
        block: Headers = [
            (b":method", method),
            (b":scheme", scheme),
            (b":authority", authority),
            (b":path", path),
        ]
        fields: Headers = [(b"host", authority)]
        for name, value in headers:
            field = h2_field(name, value, "push header")
            if field is None or field[0] == b"host":
                continue
            block.append(field)
            fields.append(field)
        self._next_push += 2
        encoded = self._codec.encode(block)
        limit = self._peer_max_frame - 4
        promise = _U32.pack(promised)
        if len(encoded) <= limit:
            self._out.append(_frame(PUSH_PROMISE, END_HEADERS, sid, promise + encoded))
        else:
            self._out.append(_frame(PUSH_PROMISE, 0, sid, promise + encoded[:limit]))
            step = self._peer_max_frame
            for offset in range(limit, len(encoded), step):
                last = offset + step >= len(encoded)
                piece = encoded[offset : offset + step]
                self._out.append(_frame(CONTINUATION, END_HEADERS if last else 0, sid, piece))
        raw_path, _, query = path.partition(b"?")
        request = Request(method, path, raw_path, query, "2", fields, True, False, None, promised)
        stream = self._streams[promised] = _Stream(now, self._peer_initial_window, 0)
        stream.state = HALF_CLOSED_REMOTE
        stream.read_since = None
        self._open_outbound += 1
        self._note_bodyless(stream, request)
        return request

    @staticmethod
    def _note_bodyless(stream: _Stream, request: Request) -> None:
        if request.method == b"HEAD":
            stream.bodyless = True

    # ------------------------------------------------------------------ closing

    def close(self, code: int = NO_ERROR) -> None:
        """GOAWAY with ``code``: the connection ends once the bytes are written."""
        if self._closed:
            return
        self._closed = True
        self._out.append(_frame(GOAWAY, 0, 0, _GOAWAY.pack(self._highest_inbound, code)))

    def graceful_shutdown(self) -> None:
        """GOAWAY NO_ERROR naming the last stream that will be served; open streams finish."""
        if self._last_accepted is not None or self._closed:
            return
        last = self._last_accepted = self._highest_inbound
        self._out.append(_frame(GOAWAY, 0, 0, _GOAWAY.pack(last, NO_ERROR)))

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
        rated = limits.min_body_rate is not None
        best: float | None = None
        if self._head_since is not None:
            best = self._head_since + limits.head_timeout
        for stream in self._streams.values():
            if stream.read_since is not None and not stream.held:
                when = stream.read_since + limits.body_timeout
                if rated and stream.rate_since + limits.body_rate_window < when:
                    when = stream.rate_since + limits.body_rate_window
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
        rated = limits.min_body_rate is not None
        for sid, stream in list(self._streams.items()):
            since = stream.read_since
            stalled_since = stream.stalled_since
            reading = since is not None and not stream.held
            if (
                (since is not None and reading and now >= since + limits.body_timeout)
                or (reading and rated and now >= stream.rate_since + limits.body_rate_window)
                or (stalled_since is not None and now >= stalled_since + limits.send_timeout)
            ):
                if stream.answered:  # its body stopped coming, and nobody waits for it
                    self.reset(sid, NO_ERROR)
                    continue
                expired.append(sid)
                self.reset(sid, CANCEL)
        if not self._streams and not expired and now >= self._idle_since + limits.keep_alive_timeout:
            return [], "idle"  # the driver closes it unless an app is still running
        return expired, None


def _expect_ok(headers: Headers) -> bool:
    """RFC 9110 §10.1.1: the only expectation defined is 100-continue."""
    return all(name != b"expect" or value.lower() == b"100-continue" for name, value in headers)
