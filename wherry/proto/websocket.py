"""WebSocket, sans I/O: the opening handshake (RFC 6455 §4) apart from the session (framing, RFC 6455
§5-7, and permessage-deflate, RFC 7692).

Rules of this module:

1. The handshake and the session do not know each other. ``parse_offer`` reads what every carrier
   has (version, subprotocols, extensions) from request headers; ``h1_key`` adds what only the
   HTTP/1.1 Upgrade has (the ``Sec-WebSocket-Key`` nonce) and ``h1_accept`` writes its 101. Over
   HTTP/2 extended CONNECT (RFC 8441) there is no key and no 101: ``h2_check`` refuses the fields
   of the HTTP/1.1 handshake, ``accept_fields`` gives the 200's fields, and the same
   ``WebSocketSession`` runs over the stream's data.
2. A handshake that breaks a rule raises ``RemoteProtocolError`` with the status to answer (400, or
   426 for an unsupported version); nothing of it reaches the application.
3. Framing is the ``websockets`` library's sans-I/O ``Protocol`` (its frame parser, masking in C,
   close-code checks, permessage-deflate with a bounded inflater), subclassed in
   ``websocket_frames.py``, which stays interpreted. This module adds what that layer
   leaves to its caller: whole messages (fragments joined, text checked as UTF-8 as it arrives),
   keepalive pings and their deadline, and a close handshake that answers a Close frame received in
   the middle of a fragmented message (RFC 6455 §5.4: control frames may come between fragments).
   One fast path skips the library's generators for the commonest frame (whole, final, masked text
   or binary, no extension) and builds unmasked frames directly; any other byte goes to the library.
4. Bytes in, events out: ``receive_data(data, now)`` returns ``Message`` and ``WebSocketClosed``
   events; ``receive_data(b"", now)`` is the end of input. Every ``send_*`` returns the bytes to
   write. Time is passed in; ``deadline`` says when ``on_deadline`` is due. No clock, socket or loop.
5. Size bounds are enforced as bytes arrive: a message (and a compressed message once inflated) may
   not pass ``max_size`` (close 1009); the inflater is never asked for more than what is left of it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import struct
from typing import Final

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions.base import Extension
from websockets.frames import CloseCode
from websockets.headers import build_extension, parse_extension, parse_subprotocol
from websockets.protocol import OPEN, SERVER, Protocol
from websockets.typing import ExtensionHeader

from .events import Event, Headers, LocalProtocolError, RemoteProtocolError
from .fields import check_fields, is_token
from .websocket_frames import Frames, LazyDeflate, deflate_factory

try:  # the library's C masking, as its own parser uses it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a build without the extension
    from websockets.utils import apply_mask

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION: Final = b"13"

# Bytes that Python's str.splitlines() treats as line breaks: a header value carrying one can be
# read as two lines by a consumer that decodes and splits (CVE-2026-44546 in daphne). llhttp refuses
# the C0 controls already; \x85 is obs-text to HTTP, but no WebSocket handshake needs it.
_LINE_BREAKERS = re.compile(rb"[\x0b\x0c\x1c-\x1e\x85]")

# The library's own per-connection logger at INFO says "connection closed" for every connection.
_protocol_logger = logging.getLogger("wherry.websocket.frames")
_protocol_logger.setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------- handshake


class Offer:
    """What a client asked for in its opening handshake, whatever carried it."""

    __slots__ = ("extensions", "subprotocols")

    def __init__(self, subprotocols: list[str], extensions: list[ExtensionHeader]) -> None:
        self.subprotocols = subprotocols
        self.extensions = extensions


def _one(headers: Headers, name: bytes) -> bytes | None:
    found = None
    for key, value in headers:
        if key == name:
            if found is not None:
                raise RemoteProtocolError(400, f"more than one {name.decode()} header")
            found = value
    return found


def _tokens(headers: Headers, name: bytes) -> list[bytes]:
    out: list[bytes] = []
    for key, value in headers:
        if key == name:
            out.extend(t.strip().lower() for t in value.split(b","))
    return out


def parse_offer(headers: Headers) -> Offer:
    """Version, subprotocols and extensions from a handshake's header fields (RFC 6455 §4.2.1,
    RFC 8441 §4). Raises ``RemoteProtocolError`` (400, or 426 for another version)."""
    for _name, value in headers:
        if _LINE_BREAKERS.search(value):
            raise RemoteProtocolError(400, "line-breaking control character in a header value")
    version = _one(headers, b"sec-websocket-version")
    if version is None or version.strip() != VERSION:
        raise RemoteProtocolError(426, "unsupported Sec-WebSocket-Version")
    subprotocols: list[str] = []
    extensions: list[ExtensionHeader] = []
    try:
        for name, value in headers:
            if name == b"sec-websocket-protocol":
                subprotocols.extend(parse_subprotocol(value.decode("ascii")))
            elif name == b"sec-websocket-extensions":
                extensions.extend(parse_extension(value.decode("ascii")))
    except (InvalidHeader, UnicodeDecodeError):
        raise RemoteProtocolError(400, "malformed Sec-WebSocket-Protocol or -Extensions") from None
    return Offer(subprotocols, extensions)


def h1_key(method: bytes, http_version: str, headers: Headers) -> bytes:
    """The HTTP/1.1 Upgrade half of the handshake (RFC 6455 §4.2.1): checks the method, version,
    Upgrade, Connection and body framing, and returns the Sec-WebSocket-Key."""
    if method != b"GET":
        raise RemoteProtocolError(400, "a WebSocket handshake must be a GET")
    if http_version != "1.1":
        raise RemoteProtocolError(400, "a WebSocket handshake needs HTTP/1.1")
    if b"websocket" not in _tokens(headers, b"upgrade"):
        raise RemoteProtocolError(400, "Upgrade does not name websocket")
    if b"upgrade" not in _tokens(headers, b"connection"):
        raise RemoteProtocolError(400, "Connection does not name upgrade")
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            raise RemoteProtocolError(400, "a WebSocket handshake has no body")
    key = _one(headers, b"sec-websocket-key")
    if key is None:
        raise RemoteProtocolError(400, "missing Sec-WebSocket-Key")
    key = key.strip()
    try:
        nonce = base64.b64decode(key, validate=True)
    except ValueError:
        nonce = b""
    if len(nonce) != 16:
        raise RemoteProtocolError(400, "malformed Sec-WebSocket-Key")
    return key


def h2_check(headers: Headers) -> None:
    """The HTTP/2 half of the handshake (RFC 8441 §4-5). The HTTP/2 core checked the pseudo-header
    fields (CONNECT, ``:protocol``, ``:scheme``, ``:path``, ``:authority``); what is left is that
    the request carries nothing of the HTTP/1.1 handshake: a ``Sec-WebSocket-Key`` (or ``-Accept``)
    has no meaning on a stream, and a request that mixes the two handshakes is refused (400)."""
    for name, _value in headers:
        if name == b"sec-websocket-key" or name == b"sec-websocket-accept":
            raise RemoteProtocolError(400, f"{name.decode()} in an extended CONNECT")


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def negotiate(offer: Offer, deflate: bool) -> tuple[bytes | None, list[Extension]]:
    """Accept the first permessage-deflate offer whose parameters we can meet (RFC 7692 §5);
    returns the Sec-WebSocket-Extensions response value and the extensions to run."""
    if not deflate or not offer.extensions:
        return None, []
    factory = deflate_factory()
    for name, params in offer.extensions:
        if name != factory.name:
            continue
        try:
            response, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        return build_extension([(name, response)]).encode("ascii"), [LazyDeflate(extension)]
    return None, []


def _check_fields(subprotocol: bytes | None, headers: Headers) -> Headers:
    """The app's subprotocol and extra response headers, checked as every field the server sends
    (``fields.py``: a name is a token, a value has no control character, so nothing splits the
    response); the headers as they are sent."""
    if subprotocol is not None and not is_token(subprotocol):
        raise LocalProtocolError(f"invalid subprotocol {subprotocol!r}")
    return check_fields(headers, "header")


def h1_accept(
    key: bytes,
    subprotocol: bytes | None,
    extensions: bytes | None,
    headers: Headers,
    default_headers: bytes,
) -> bytes:
    """The 101 response completing an HTTP/1.1 handshake. The app's ``headers`` and subprotocol
    are checked (``LocalProtocolError``): nothing can split the response."""
    headers = _check_fields(subprotocol, headers)
    block = b"".join(b"%b: %b\r\n" % (name, value) for name, value in headers)
    out = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: %b\r\n" % accept_key(key)
    ]
    if subprotocol is not None:
        out.append(b"sec-websocket-protocol: %b\r\n" % subprotocol)
    if extensions is not None:
        out.append(b"sec-websocket-extensions: %b\r\n" % extensions)
    out.append(block)
    out.append(default_headers)
    out.append(b"\r\n")
    return b"".join(out)


def accept_fields(subprotocol: bytes | None, extensions: bytes | None, headers: Headers) -> Headers:
    """The fields of the 200 completing an HTTP/2 handshake (RFC 8441 §5): the subprotocol, the
    extensions and the app's ``headers``, checked as for the 101. A body framing field from the
    app (content-length, transfer-encoding) is dropped: the stream's data is the WebSocket."""
    headers = _check_fields(subprotocol, headers)
    fields: Headers = []
    if subprotocol is not None:
        fields.append((b"sec-websocket-protocol", subprotocol))
    if extensions is not None:
        fields.append((b"sec-websocket-extensions", extensions))
    fields.extend(
        (name, value)
        for name, value in headers
        if name.lower() not in (b"content-length", b"transfer-encoding")
    )
    return fields


_PHRASES: Final = {
    400: b"Bad Request",
    426: b"Upgrade Required",
    501: b"Not Implemented",
    503: b"Service Unavailable",
}


def refusal(status: int, detail: str) -> tuple[bytes, Headers, bytes]:
    """A plain-text answer to a handshake that broke a rule (or that the server cannot take): the
    reason phrase, the fields (426 names the version we speak) and the body."""
    phrase = _PHRASES.get(status, b"Bad Request")
    body = phrase + b": " + detail.encode("ascii", "replace") + b"\n"
    fields: Headers = [(b"sec-websocket-version", VERSION)] if status == 426 else []
    fields.append((b"content-type", b"text/plain; charset=utf-8"))
    fields.append((b"content-length", b"%d" % len(body)))
    return phrase, fields, body


def h1_refusal(status: int, detail: str, default_headers: bytes) -> bytes:
    """``refusal`` as an HTTP/1.1 response that closes the connection."""
    phrase, fields, body = refusal(status, detail)
    return b"".join(
        (
            b"HTTP/1.1 %d %b\r\n" % (status, phrase),
            *(b"%b: %b\r\n" % field for field in fields),
            b"connection: close\r\n",
            default_headers,
            b"\r\n",
            body,
        )
    )


# ------------------------------------------------------------------------------------------ session


class Message(Event):
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | str) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Message({self.data!r})"


class WebSocketClosed(Event):
    """The session is over for reading: the peer closed (its code, 1005 when it gave none), the
    session failed it (the code sent: 1002, 1007, 1009, 1011), or the input ended (1006)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = int(code)
        self.reason = reason

    def __repr__(self) -> str:
        return f"WebSocketClosed({self.code}, {self.reason!r})"


class WebSocketSession:
    """One WebSocket session, server side, after the handshake."""

    __slots__ = (
        "_at_start",
        "_close_sent_at",
        "_frames",
        "_last_seen",
        "_max_size",
        "_paused",
        "_ping_data",
        "_ping_sent_at",
        "_plain",
        "can_send",
        "close_timeout",
        "closed",
        "ping_interval",
        "ping_timeout",
    )

    def __init__(
        self,
        max_size: int | None,
        extensions: list[Extension],
        now: float,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        frames = self._frames = Frames(SERVER, state=OPEN, max_size=max_size, logger=_protocol_logger)
        frames.extensions = extensions
        self._plain = not extensions
        self._max_size = max_size
        self.can_send = True  # no Close sent or received: data frames can be sent
        self._at_start = self._plain  # the fast path may read (see _library_moved)
        frames.messages = []
        frames._fragments = []
        frames._decoder = None
        self.closed: WebSocketClosed | None = None
        self.ping_interval = ping_interval or None
        self.ping_timeout = ping_timeout or None
        self.close_timeout = close_timeout
        self._last_seen = now
        self._paused = False
        self._ping_data: bytes | None = None
        self._ping_sent_at = 0.0
        self._close_sent_at: float | None = None

    # ----------------------------------------------------------------------------- reading

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer (``b""``: the peer closed its side); returns the events."""
        if self.closed is not None:
            return []
        frames = self._frames
        self._last_seen = now
        self._ping_data = None  # anything heard from the peer answers the keepalive ping
        fast: list[Event] | None = None
        if self._at_start and data:
            fast, data = self._simple_frames(data)
            if not data:
                return fast
        if data:
            frames.receive_data(data)
        else:
            frames.receive_eof()
        self._library_moved()
        frames.events.clear()  # the library's frame events: what matters is in ``messages``
        events: list[Event] = fast if fast is not None else []
        messages = frames.messages
        if messages:
            events.extend([Message(data) for data in messages])
            messages.clear()
        close = frames.close_rcvd
        if close is not None:
            self.closed = WebSocketClosed(close.code, close.reason)
            events.append(self.closed)
            return events
        if frames.state is not OPEN and self._close_sent_at is None:
            # The library failed the session (a protocol error, a size bound, invalid UTF-8) or
            # the input ended.
            sent = frames.close_sent
            if sent is not None:
                self.closed = WebSocketClosed(sent.code, sent.reason)
            else:
                self.closed = WebSocketClosed(1006, "")
            events.append(self.closed)
        elif not data:
            self.closed = WebSocketClosed(1006, "")
            events.append(self.closed)
        return events

    def _library_moved(self) -> None:
        """The library parsed or sent something: note whether data frames can still be sent, and
        whether the fast path may read the next bytes (the library is between frames)."""
        frames = self._frames
        self.can_send = frames.state is OPEN
        self._at_start = (
            self._plain
            and self.can_send
            and frames.current_size is None
            and not frames.reader.buffer
            and _at_frame_start(frames)
        )

    def _simple_frames(self, data: bytes) -> tuple[list[Event], bytes]:
        """The fast path for the commonest input: whole, final, masked text or binary frames
        with no reserved bit, a 7- or 16-bit length within the size bound, outside a fragmented
        message, with no extension, read from a frame boundary (the caller checks the last
        four). Returns their messages and the bytes from the first frame that is anything else
        (a control frame, a fragment, a bad frame, invalid UTF-8, an incomplete frame), which
        the library then parses and judges."""
        messages: list[Event] = []
        limit = self._max_size
        pos = 0
        end = len(data)
        while end - pos >= 6:
            first = data[pos]
            second = data[pos + 1]
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break
            size = second & 0x7F
            start = pos + 2
            if size == 126:
                if end - pos < 8:
                    break
                size = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif size == 127:
                break
            stop = start + 4 + size
            if stop > end or (limit is not None and size > limit):
                break
            payload = apply_mask(data[start + 4 : stop], data[start : start + 4])
            if first == 0x81:
                try:
                    messages.append(Message(payload.decode("utf-8")))
                except UnicodeDecodeError:
                    break
            else:
                messages.append(Message(payload))
            pos = stop
        return messages, data[pos:] if pos else data

    def pause_reading(self) -> None:
        """The driver stopped reading: the peer cannot answer a ping until reading resumes."""
        self._paused = True
        self._ping_data = None

    def resume_reading(self, now: float) -> None:
        self._paused = False
        self._last_seen = now

    # ----------------------------------------------------------------------------- writing

    def data_to_send(self) -> tuple[bytes, bool]:
        """The bytes owed to the peer, and whether the transport should be closed after them."""
        frames = self._frames
        if not frames.writes:
            return b"", False
        writes = frames.data_to_send()
        if writes[-1] == b"":
            return b"".join(writes), True
        return writes[0] if len(writes) == 1 else b"".join(writes), False

    def send_text(self, text: str) -> bytes:
        """One text message as a single frame. With no extension the frame is the 2-10 byte
        head (FIN, opcode, length; a server does not mask) and the payload, built here; with one,
        the library encodes it."""
        frames = self._frames
        data = text.encode("utf-8")
        if self._plain and self.can_send:
            size = len(data)
            return (_TEXT_HEADS[size] if size < 126 else _head(0x81, size)) + data
        frames.send_text(data)
        writes = frames.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def send_bytes(self, data: bytes) -> bytes:
        frames = self._frames
        if self._plain and self.can_send:
            size = len(data)
            return (_BINARY_HEADS[size] if size < 126 else _head(0x82, size)) + data
        frames.send_binary(data)
        writes = frames.data_to_send()
        return writes[0] if len(writes) == 1 else b"".join(writes)

    def send_close(self, code: int, reason: str, now: float) -> bytes:
        """Start the closing handshake; the peer's Close, or ``close_timeout``, ends it.
        Raises ``ValueError`` for a code that may not be sent (RFC 6455 §7.4)."""
        frames = self._frames
        if frames.state is not OPEN:
            return b""
        if not (code in _SENDABLE or 3000 <= code < 5000):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        encoded = reason.encode("utf-8")
        if len(encoded) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        frames.send_close(code, reason)
        self._close_sent_at = now
        self._library_moved()
        return b"".join(frames.data_to_send())

    # ------------------------------------------------------------------------------- time

    @property
    def deadline(self) -> float | None:
        """When ``on_deadline`` is due: the end of the wait for the peer's Close or for a pong,
        or the next keepalive ping."""
        if self.closed is not None:
            return None
        if self._close_sent_at is not None:
            return self._close_sent_at + self.close_timeout
        if self._paused:
            return None
        if self._ping_data is not None:
            timeout = self.ping_timeout
            return None if timeout is None else self._ping_sent_at + timeout
        interval = self.ping_interval
        if interval is None or self._frames.state is not OPEN:
            return None
        return self._last_seen + interval

    def on_deadline(self, now: float) -> tuple[bytes, bool]:
        """Send the keepalive ping that is due, or end a session whose peer did not answer in
        time: 1011 after a ping, a plain end after our Close. Returns ``data_to_send()``."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return b"", False
        frames = self._frames
        if self._close_sent_at is not None:
            sent = frames.close_sent
            assert sent is not None
            self.closed = WebSocketClosed(sent.code, sent.reason)
            return b"", True
        if self._ping_data is not None:
            frames.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._library_moved()
            self.closed = WebSocketClosed(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            return self.data_to_send()
        self._ping_data = os.urandom(4)
        self._ping_sent_at = now
        frames.send_ping(self._ping_data)
        return self.data_to_send()


def _at_frame_start(frames: Protocol) -> bool:
    """Whether the library's parser waits for the first byte of a frame (its generator is
    suspended in the reader's ``at_eof``), so that bytes can be parsed outside it. Anything
    else, including a library that names its generators differently, answers False: the library
    then parses everything."""
    inner = getattr(frames.parser, "gi_yieldfrom", None)
    return getattr(inner, "__name__", None) == "at_eof"


def _head(first: int, size: int) -> bytes:
    """The head of an unmasked frame of ``size`` bytes (RFC 6455 §5.2)."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


_TEXT_HEADS: Final = tuple(_head(0x81, size) for size in range(126))
_BINARY_HEADS: Final = tuple(_head(0x82, size) for size in range(126))

# Codes an endpoint may put in a Close frame it sends (RFC 6455 §7.4.1; 1004-1006 and 1015 are
# reserved for reporting).
_SENDABLE: Final = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
