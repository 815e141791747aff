"""The server side of one HTTP/1.1 connection, sans I/O.

Rules of this module:

1. Bytes in, events out: ``receive_data(data, now)`` returns the events the bytes completed.
   ``receive_data(b"", now)`` means the peer closed its side. Nothing here reads a clock, a socket
   or a loop; time is passed in and deadlines are handed back (``deadline``).
2. Events in, bytes out: ``response_head`` / ``response_data`` / ``response_end`` return the bytes
   to write for the response to the oldest unanswered request. Responses are produced strictly in
   request order.
3. Parsing is llhttp through httptools with one leniency flag, the version (any one digit each
   side is parsed; a later HTTP/1 minor is served as 1.1, RFC 9110 §2.5, the rest refused here
   with 505). Everything llhttp lets through that RFC 9112 forbids (missing or repeated Host,
   Transfer-Encoding on HTTP/1.0, codings we do not implement, extra spaces in a request line)
   is checked here. A request that breaks a rule becomes one ``Rejected`` event carrying
   the status to answer; after it nothing more is parsed on this connection.
4. Limits (head size, header count, body size) are enforced here, as bytes arrive.
5. This module does not know about ASGI, applications, or how many requests are in flight in the
   driver.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Final

import httptools

from .events import (
    END_OF_MESSAGE,
    AppHeaders,
    ConnectionClosed,
    Data,
    Event,
    H2Preface,
    Headers,
    LocalProtocolError,
    Rejected,
    Request,
)
from .fields import TOKEN, check_field

H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# What an HTTP/1.1-only endpoint answers to the HTTP/2 preface: an empty SETTINGS frame (the server
# preface) and GOAWAY with HTTP_1_1_REQUIRED (RFC 9113 §3.4, §7).
H2_REFUSAL: Final = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    b"\x00\x00\x08\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x0d"
)


def _status_line(code: int, version: bytes) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase.encode("ascii")
    except ValueError:
        phrase = b""
    return b"HTTP/%s %d %s\r\n" % (version, code, phrase)


STATUS_LINES_11: Final = {code: _status_line(code, b"1.1") for code in range(100, 600)}

# Response fields already checked, and the line each one is written as: an app that sends the
# same fields every time pays one dict lookup per field. Bounded; short fields only.
_lines: Final[dict[Sequence[bytes], bytes | tuple[bytes, int]]] = {}
_LINES_MAX: Final = 4096
_NO_FIELDS: Final[Headers] = []  # between messages: never appended to (on_message_begin comes first)
_NO_EVENTS: Final[list[Event]] = []  # between reads: never appended to (receive_data begins a new list)
# A Host value (RFC 9112 §3.2, RFC 3986 §3.2.2): empty, or a reg-name or IP literal and an optional
# port. No userinfo, no spaces; no comma either, which would make one field carry two hosts.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]*)(?::[0-9]*)?")
# Host values already found valid: a server sees few, and a set lookup is cheaper than the regex.
_hosts_seen: Final[set[bytes]] = set()
_HOSTS_SEEN_MAX: Final = 1024
# Request field names as received, their lowercase form and whether the core looks at the field
# (``_SPECIAL``): a client sends the same few names on every request, and one dict lookup is
# cheaper than lowering each and looking it up in the set. Bounded.
_lowered: Final[dict[bytes, tuple[bytes, bool]]] = {}
_LOWERED_MAX: Final = 1024
# Response fields that change framing or replace a default; the rest are copied as they are.
_FRAMING: Final = frozenset((b"content-length", b"connection", b"transfer-encoding", b"date", b"server"))
# Request fields the core looks at; any other field costs one set lookup.
_SPECIAL: Final = frozenset(
    (
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"upgrade",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
        b"forwarded",
    )
)

# How much of a request's first bytes is kept while its head arrives in pieces: enough for the
# request line of almost any request (the line's shape and the method are judged on it).
_PREFIX_KEPT: Final = 512

# Read states.
IDLE: Final = 0  # between requests (the keep-alive clock runs when nothing is owed)
HEAD: Final = 1  # a request head has begun
BODY: Final = 2  # reading a request body
UPGRADED: Final = 3  # the request asked to switch protocols; the driver decides
DONE: Final = 4  # nothing more will be parsed (rejected, CONNECT, closed)

# Body framing of the response being written.
NO_BODY: Final = 0
LENGTH: Final = 1
CHUNKED: Final = 2
UNTIL_CLOSE: Final = 3


class DefaultHeaders:
    """Header lines added to every response (server, date, --header). Refreshed by the driver
    once a second; ``without(name)`` gives the block minus one of them, for an app that sets its
    own."""

    __slots__ = ("block", "date", "rest", "server")

    def __init__(self, server: bytes = b"", date: bytes = b"", rest: bytes = b"") -> None:
        self.server = server
        self.rest = rest
        self.set_date(date)

    def set_date(self, date: bytes) -> None:
        self.date = date
        self.block = self.server + self.rest + date

    def without(self, name: bytes) -> bytes:
        if name == b"date":
            return self.server + self.rest
        return self.rest + self.date


BODY_RATE_WINDOW: Final = 5.0  # seconds over which a body must keep up --min-body-rate


class H1Limits:
    __slots__ = (
        "body_rate_window",
        "body_timeout",
        "head_timeout",
        "keep_alive_timeout",
        "max_body",
        "max_head",
        "max_headers",
        "min_body_rate",
    )

    def __init__(
        self,
        max_head: int = 65536,
        max_headers: int = 100,
        max_body: int | None = None,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keep_alive_timeout: float = 5.0,
        min_body_rate: float | None = None,
        body_rate_window: float = BODY_RATE_WINDOW,
    ) -> None:
        self.max_head = max_head
        self.max_headers = max_headers
        self.max_body = max_body
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout
        # A body must bring min_body_rate * body_rate_window bytes within body_rate_window
        # seconds of the last time it did (or of its start); None: no rate is asked.
        self.min_body_rate = min_body_rate
        self.body_rate_window = body_rate_window


class _BodyOnly:
    """llhttp callbacks for a parser primed with a synthetic head that has the framing of a request
    whose head was already parsed (a declined upgrade): the synthetic head is ignored, everything
    after it goes to the connection as usual."""

    __slots__ = ("core", "priming")

    def __init__(self, core: H1Connection) -> None:
        self.core = core
        self.priming = True

    def on_message_begin(self) -> None:
        if not self.priming:
            self.core.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not self.priming:
            self.core.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.priming:
            self.core.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.priming:
            self.core.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.core.on_body(body)

    def on_message_complete(self) -> None:
        self.core.on_message_complete()


def _parser(callbacks: object) -> httptools.HttpRequestParser:
    """An llhttp request parser with one leniency: any one-digit HTTP version is parsed (a later
    HTTP/1.x minor is then served as 1.1, and the rest refused with 505, by the core)."""
    parser = httptools.HttpRequestParser(callbacks)
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


class _Reject(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


class H1Connection:
    """One server-side HTTP/1.1 connection: request parsing and response framing."""

    __slots__ = (
        "_awaiting_continue",
        "_body_seen",
        "_body_since",
        "_chunk_size",
        "_completed_in_chunk",
        "_events",
        "_fresh",
        "_head_mid_chunk",
        "_head_raw",
        "_head_since",
        "_headers",
        "_idle_since",
        "_last_request",
        "_line_at_prefix",
        "_now",
        "_owed",
        "_parser",
        "_paused",
        "_prefix",
        "_rate_bytes",
        "_rate_since",
        "_specials",
        "_upgrading",
        "_url",
        "_w_keep_alive",
        "_w_mode",
        "_w_remaining",
        "accepted_upgrades",
        "default_headers",
        "limits",
        "read_state",
        "trailing_data",
    )

    def __init__(
        self,
        limits: H1Limits,
        default_headers: DefaultHeaders,
        now: float,
        accepted_upgrades: frozenset[bytes] = frozenset(),
    ) -> None:
        self.limits = limits
        self.default_headers = default_headers
        self.accepted_upgrades = accepted_upgrades
        self._parser = _parser(self)
        self._events: list[Event] = _NO_EVENTS  # a list of its own during receive_data only
        self.read_state = IDLE
        self.trailing_data = b""
        self._now = now
        self._idle_since = now
        self._head_since = now
        self._body_since = now
        self._rate_since = now  # the start of the body's current rate window
        self._rate_bytes = 0  # body bytes received in it
        self._paused = False
        self._owed = 0  # requests parsed and not yet answered in full
        self._fresh = True
        self._prefix = b""
        self._completed_in_chunk = 0
        self._chunk_size = 0
        self._upgrading = False
        self._last_request: Request | None = None
        self._reset_message()
        self._w_mode = NO_BODY
        self._w_remaining = 0
        self._w_keep_alive = True

    def _reset_message(self) -> None:
        self._url = b""
        # No message yet: on_message_begin gives it lists of its own (an idle connection holds none).
        self._headers: Headers = _NO_FIELDS
        self._specials: Headers = _NO_FIELDS
        self._head_raw = 0
        self._head_mid_chunk = False
        self._line_at_prefix = False
        self._body_seen = 0
        self._awaiting_continue = False

    # ------------------------------------------------------------------ reading

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        self._now = now
        state = self.read_state
        if state >= UPGRADED or not data or self._fresh:
            events = self._events = []
            data = self._receive_special(data, state)
            if not data:
                self._events = _NO_EVENTS
                return events
        else:
            events = self._events = []
        if state == HEAD:
            if len(self._prefix) < _PREFIX_KEPT:
                self._prefix += data[:_PREFIX_KEPT]
        else:
            self._prefix = data  # sliced only if a method turns out to be unknown
        self._chunk_size = len(data)
        self._completed_in_chunk = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._upgraded(data[offset:])
        except httptools.HttpParserError as error:
            self._parser_error(error, data)
        else:
            if self.read_state == HEAD:
                self._check_partial_head(len(data))
        # The caller owns the events now; a connection between reads holds none of them.
        self._events = _NO_EVENTS
        return events

    def _receive_special(self, data: bytes, state: int) -> bytes:
        """End of input, input after the parser stopped, and the first bytes of a connection.
        Returns the bytes still to parse."""
        events = self._events
        if state >= UPGRADED:
            if state == UPGRADED:
                self.trailing_data += data
            return b""
        if not data:
            if state == IDLE:
                events.append(ConnectionClosed())
                self.read_state = DONE
            else:
                self._reject(400, "connection closed in the middle of a request")
            return b""
        # The first bytes of a connection may be the HTTP/2 client preface.
        buf = self.trailing_data + data if self.trailing_data else data
        if len(buf) < len(H2_PREFACE) and H2_PREFACE.startswith(buf):
            self.trailing_data = buf
            return b""
        self._fresh = False
        self.trailing_data = b""
        if buf.startswith(H2_PREFACE):
            self.read_state = DONE
            events.append(H2Preface(buf))
            return b""
        return buf

    def _check_partial_head(self, size: int) -> None:
        """A head is still incomplete after ``size`` more bytes: bound what it has taken so far."""
        if self._head_mid_chunk:
            # The head began behind other requests in this piece; llhttp does not say where, so
            # its raw bytes count from the next piece on (the whole head is measured when it ends).
            self._head_mid_chunk = False
        else:
            self._head_raw += size
        if self._head_raw > self.limits.max_head:
            self._reject(431, "request head too large")

    def _reject(self, status: int, detail: str) -> None:
        answered = self.read_state == BODY and not self._owed
        self.read_state = DONE
        if answered:
            # The body broke after its request was answered: nothing is left to answer, the
            # connection just ends.
            self._events.append(ConnectionClosed())
        else:
            self._events.append(Rejected(status, detail))

    def _parser_error(self, exc: Exception, data: bytes) -> None:
        cause = exc.__context__
        if isinstance(cause, _Reject):
            self._reject(cause.status, cause.detail)
            return
        message = str(exc) or type(exc).__name__
        lowered = message.lower()
        status = 400
        if isinstance(exc, httptools.HttpParserInvalidMethodError):
            # A well-formed token that llhttp does not know is a method we do not implement.
            # When this chunk began the failing request, its first token is the method.
            if not self._completed_in_chunk:
                line = self._prefix.lstrip(b"\r\n")
                head = line.partition(b" ")[0]
                if head and TOKEN.fullmatch(head) and self._request_line_shaped(line):
                    status = 501
        elif "transfer-encoding" in lowered or "transfer encoding" in lowered:
            status = self._te_status()
        self._reject(status, f"malformed request: {message}")

    @staticmethod
    def _request_line_shaped(line: bytes) -> bool:
        """``line`` (the start of a piece) is a request line, ``token SP target SP HTTP/...`` with
        one space each, or too short yet to tell (RFC 9112 §3): a line that is none is a 400,
        whether llhttp refused its method (not a 501 then) or read it with extra spaces."""
        end = line.find(b"\r\n")
        if end < 0:
            return True
        parts = line[:end].split(b" ")
        return len(parts) == 3 and parts[1] != b"" and parts[2].startswith(b"HTTP/")

    def _te_status(self) -> int:
        te = [value for name, value in self._headers if name == b"transfer-encoding"]
        codings = [c.strip().lower() for c in b",".join(te).split(b",")]
        if any(c != b"chunked" and TOKEN.fullmatch(c) for c in codings):
            return 501
        return 400

    def _upgraded(self, rest: bytes) -> None:
        """llhttp stopped after a head that asks to switch protocols (Upgrade or CONNECT); ``rest``
        is what followed the head in the piece."""
        while self._declined(rest) and rest:
            # What follows a head that switched nothing is parsed as a piece of its own.
            self._prefix = rest
            self._completed_in_chunk = 0
            try:
                self._parser.feed_data(rest)
            except httptools.HttpParserUpgrade as upgrade:
                # Another head asking to switch, pipelined behind the declined one: decided alike
                # (the loop goes on), as when it arrives in a piece of its own.
                rest = rest[upgrade.args[0] if upgrade.args else len(rest) :]
            except httptools.HttpParserError as error:
                self._parser_error(error, rest)
                return
            else:
                if self.read_state == HEAD:
                    self._check_partial_head(len(rest))
                return

    def _declined(self, rest: bytes) -> bool:
        """Decide the upgrade the last head asked for: True when it switched nothing and the
        parser was set to read on as HTTP/1.1 (what follows, ``rest``, is then the caller's to
        parse); False when the connection switched (``rest`` kept for the new protocol) or, for
        CONNECT, stops reading."""
        request = self._last_request
        assert request is not None  # the head that asked to switch (on_headers_complete) set it
        if request.method == b"CONNECT":
            # No tunnels: the request goes to the app; nothing after it is read.
            request.keep_alive = False
            self._events.append(END_OF_MESSAGE)
            self.read_state = DONE
            return False
        token = (request.upgrade or b"").lower()
        # An accepted upgrade with a chunked body is declined: after the head, only HTTP/1.1
        # framing can say where such a body ends. So is h2c for a body behind Expect:
        # 100-continue: its client sends the body only after an HTTP/1.1 100, which can no longer
        # come once the 101 has switched the connection (RFC 9110 §7.8 lets a server decline).
        framing = self._framing_of(request)
        if (
            token in self.accepted_upgrades
            and framing != b"transfer-encoding: chunked\r\n"
            and not (token == b"h2c" and framing is not None and request.expect_continue)
        ):
            self.read_state = UPGRADED
            self.trailing_data = rest
            return False
        # Declined: carry on as plain HTTP/1.1 with a fresh parser that first sees a synthetic head
        # declaring the same body framing, so the body is parsed as a body and never as a request.
        request.upgrade = None
        self._upgrading = False
        self.read_state = IDLE
        if framing is None:
            self._parser = _parser(self)
            self._events.append(END_OF_MESSAGE)
            self._owed_message_done()
            return True
        primed = _BodyOnly(self)
        self._parser = _parser(primed)
        self._parser.feed_data(b"PUT / HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n")
        primed.priming = False
        self.read_state = BODY
        return True

    @staticmethod
    def _framing_of(request: Request) -> bytes | None:
        for name, value in request.headers:
            if name == b"content-length":
                return None if value == b"0" else b"content-length: " + value + b"\r\n"
            if name == b"transfer-encoding":
                return b"transfer-encoding: chunked\r\n"
        return None

    # httptools callbacks ----------------------------------------------------

    def on_message_begin(self) -> None:
        self.read_state = HEAD
        self._head_since = self._now
        self._url = b""
        self._headers = []
        self._specials = []
        self._head_raw = 0
        self._body_seen = 0
        self._awaiting_continue = False
        self._head_mid_chunk = self._completed_in_chunk > 0
        # No message ended earlier in this piece: ``_prefix`` begins with this request's line
        # (or with empty lines before it).
        self._line_at_prefix = not self._head_mid_chunk

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        known = _lowered.get(name)
        if known is None:
            lowered = name.lower()
            known = (lowered, lowered in _SPECIAL)
            if len(_lowered) < _LOWERED_MAX:
                _lowered[name] = known
        if value and (value[-1] == 32 or value[-1] == 9):
            value = value.rstrip(b" \t")  # trailing OWS is not part of the value (RFC 9110 §5.5)
        pair = (known[0], value)
        self._headers.append(pair)
        if known[1]:
            self._specials.append(pair)

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        url = self._url
        # The version without asking httptools (``get_http_version`` formats a string on every
        # call): when ``_prefix`` begins with this request's line, the line is llhttp's
        # ``method SP+ url SP+ HTTP-version CRLF`` and holds no CR or LF before its end, so the
        # 11 bytes after ``method SP url`` are `` HTTP/1.1\r\n`` only if both spaces are single
        # and the version is 1.1 (an extra space moves the CRLF further; empty lines before the
        # request shift the line, and these 11 bytes then never end at its CRLF). Anything else
        # asks httptools.
        end = len(method) + 1 + len(url)
        if self._line_at_prefix and self._prefix[end : end + 11] == b" HTTP/1.1\r\n":
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                if version[:2] != "1.":
                    raise _Reject(505, f"HTTP/{version} is not supported")
                # A later minor version of HTTP/1 is served as the highest this server implements
                # (RFC 9110 §2.5).
                version = "1.1"
            # One space each between the line's parts (RFC 9112 §3); llhttp lets more through.
            # Judged when ``_prefix`` begins with this request's line and holds all of it.
            if self._line_at_prefix and not self._request_line_shaped(self._prefix.lstrip(b"\r\n")):
                raise _Reject(400, "malformed request line")
        headers = self._headers
        limits = self.limits
        if len(headers) > limits.max_headers:
            raise _Reject(431, "too many header fields")
        # The head is at most what arrived since it began; measured exactly only when that is over
        # the limit: "METHOD SP target SP HTTP/x.y CRLF", the fields, the empty line.
        if self._head_raw + self._chunk_size > limits.max_head:
            size = len(method) + len(url) + 14
            for name, value in headers:
                size += len(name) + len(value) + 4
            if size > limits.max_head:
                raise _Reject(431, "request head too large")
        hosts = 0
        host = b""
        length = -1
        expect = False
        forwarded = False
        upgrade: bytes | None = None
        te: list[bytes] | None = None
        for name, value in self._specials:
            if name == b"host":
                hosts += 1
                host = value
            elif name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                if te is None:
                    te = []
                te.append(value)
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    raise _Reject(417, "unsupported expectation")
                expect = version == "1.1"
            elif name == b"upgrade":
                upgrade = value
            else:
                forwarded = True
        if hosts != 1 and (hosts or version == "1.1"):
            raise _Reject(400, "more than one Host header" if hosts else "missing Host header")
        if hosts and host not in _hosts_seen:
            if not _HOST.fullmatch(host):
                raise _Reject(400, "invalid Host header")
            if len(_hosts_seen) < _HOSTS_SEEN_MAX:
                _hosts_seen.add(host)
        if te is not None:
            if version == "1.0":
                raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip().lower() for c in b",".join(te).split(b",")]
            if codings != [b"chunked"]:
                raise _Reject(self._te_status(), "unsupported Transfer-Encoding")
        if url.startswith(b"/"):
            path, sep, query = url.partition(b"?")
            # bytes.find, not "in": "in" first tries the operand as an int, at the cost of an
            # exception raised and cleared on every call (CPython 3.11).
            if query.find(b"#") >= 0:
                query = query.partition(b"#")[0]
            elif not sep and path.find(b"#") >= 0:
                path = path.partition(b"#")[0]
        else:
            path, query, authority = self._other_target(method, url)
            if authority is not None and authority != host:
                # RFC 9112 §3.2.2: with an absolute-form target the Host field is ignored and the
                # target's authority is the host.
                headers = [(name, authority if name == b"host" else value) for name, value in headers]
                if not hosts:
                    headers.append((b"host", authority))
        max_body = limits.max_body
        if max_body is not None and length > max_body:
            raise _Reject(413, "request body too large")
        if upgrade is not None or method == b"CONNECT":
            self._upgrading = parser.should_upgrade()
            if not self._upgrading:
                upgrade = None
        request = Request(
            method,
            url,
            path,
            query,
            version,
            headers,
            parser.should_keep_alive(),
            expect,
            upgrade,
        )
        request.forwarded = forwarded
        self._last_request = request
        self._owed += 1
        self._events.append(request)
        self.read_state = BODY
        self._body_since = self._rate_since = self._now
        self._rate_bytes = 0
        # A client that expects 100-continue may hold its body back until it gets the 100.
        self._awaiting_continue = expect

    @staticmethod
    def _other_target(method: bytes, url: bytes) -> tuple[bytes, bytes, bytes | None]:
        """Path, query and authority (None: the target has none) of a target not in origin form
        (RFC 9112 §3.2)."""
        if url == b"*":
            if method != b"OPTIONS":
                raise _Reject(400, "asterisk-form target outside OPTIONS")
            return b"*", b"", None
        if method == b"CONNECT":
            return url, b"", None
        # Any: httptools' stubs declare every part bytes, but an absent one is None (compiled,
        # a declared type is checked at run time).
        parsed: Any
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, "malformed request target") from None
        if not parsed.schema or not parsed.host:
            raise _Reject(400, "malformed request target")
        authority = url.partition(b"://")[2]
        for end in (b"/", b"?", b"#"):
            authority = authority.partition(end)[0]
        if b"@" in authority or not _HOST.fullmatch(authority):
            # RFC 9110 §4.2.4: userinfo in an http(s) URI is an error.
            raise _Reject(400, "invalid authority in the request target")
        return parsed.path or b"/", parsed.query or b"", authority

    def on_body(self, body: bytes) -> None:
        max_body = self.limits.max_body
        if max_body is not None:
            self._body_seen += len(body)
            if self._body_seen > max_body:
                raise _Reject(413, "request body too large")
        self._body_since = self._now
        self._awaiting_continue = False
        rate = self.limits.min_body_rate
        if rate is not None:
            self._rate_bytes += len(body)
            if self._rate_bytes >= rate * self.limits.body_rate_window:
                self._rate_since = self._now  # kept up: a new window starts
                self._rate_bytes = 0
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        if self._upgrading:
            return  # an upgrade: _upgraded() decides what the message was
        self._events.append(END_OF_MESSAGE)
        self._completed_in_chunk += 1
        # Nothing of a finished message is kept: an idle connection holds no request, nor the
        # last piece of input it arrived in.
        self._last_request = None
        self._prefix = b""
        self._headers = self._specials = _NO_FIELDS  # the next message begins with its own
        self._owed_message_done()

    def _owed_message_done(self) -> None:
        self.read_state = IDLE

    # ------------------------------------------------------------------ deadlines

    def pause_reading(self) -> None:
        """The driver stopped reading: the peer cannot be blamed for slowness until resumed."""
        self._paused = True

    def resume_reading(self, now: float) -> None:
        self._paused = False
        self._body_since = self._rate_since = now
        self._rate_bytes = 0
        if self.read_state == HEAD:
            self._head_since = now

    @property
    def deadline(self) -> float | None:
        """When the peer's time runs out in the current state, or None when no clock runs."""
        if self._paused:
            return None
        state = self.read_state
        if state == HEAD:
            return self._head_since + self.limits.head_timeout
        if state == BODY:
            if self._awaiting_continue:
                return None  # the client waits for our 100 (or final answer) before its body
            limits = self.limits
            gap = self._body_since + limits.body_timeout
            if limits.min_body_rate is None:
                return gap
            window = self._rate_since + limits.body_rate_window
            return window if window < gap else gap
        if state == IDLE and self._owed == 0:
            return self._idle_since + self.limits.keep_alive_timeout
        return None

    def continue_sent(self, now: float) -> None:
        """The 100 (Continue) went out: the client's body clock starts now (RFC 9110 §10.1.1)."""
        if self._awaiting_continue:
            self._awaiting_continue = False
            self._body_since = self._rate_since = now
            self._rate_bytes = 0

    def timed_out(self) -> Rejected | None:
        """Called once the deadline passed: what to answer (None: close quietly, as when the
        request whose body stalled is already answered)."""
        state = self.read_state
        self.read_state = DONE
        if state == HEAD:
            return Rejected(408, "request head not received in time")
        if state == BODY and self._owed:
            limits = self.limits
            if (
                limits.min_body_rate is not None
                and self._rate_since + limits.body_rate_window < self._body_since + limits.body_timeout
            ):
                return Rejected(408, "request body slower than the minimum rate")
            return Rejected(408, "request body not received in time")
        return None

    @property
    def owed(self) -> int:
        return self._owed

    # ------------------------------------------------------------------ writing

    def informational(self, status: int, headers: Headers) -> bytes:
        """A 1xx response (100 Continue, 103 Early Hints) before the final one."""
        if not 100 <= status < 200 or status == 101:
            raise LocalProtocolError(f"{status} is not an informational status")
        return STATUS_LINES_11[status] + _encode_headers(headers) + b"\r\n"

    def response_head(
        self, request: Request, status: int, headers: AppHeaders, keep_alive: bool = True
    ) -> bytes:
        """Serialise the head of the response to ``request``; decides the body framing."""
        return b"".join(self._head(request, status, headers, keep_alive))

    def response(
        self,
        request: Request,
        status: int,
        headers: AppHeaders,
        body: bytes,
        keep_alive: bool,
        now: float,
    ) -> bytes:
        """A whole response in one piece: head, framed body and end (the fast path)."""
        out = self._head(request, status, headers, keep_alive)
        mode = self._w_mode
        if mode == LENGTH:
            if len(body) != self._w_remaining:
                self._w_keep_alive = False
                raise LocalProtocolError(
                    "response body longer than its Content-Length"
                    if len(body) > self._w_remaining
                    else "response body shorter than its Content-Length"
                )
            out.append(body)
        elif mode == CHUNKED:
            if body:
                out.append(b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body))
            else:
                out.append(b"0\r\n\r\n")
        elif mode == UNTIL_CLOSE:
            out.append(body)
        self._w_mode = NO_BODY
        self._owed -= 1
        self._idle_since = now
        if self._awaiting_continue and not self._owed:
            self.continue_sent(now)  # a final answer instead of the 100: the same clock starts
        return b"".join(out)

    def _head(self, request: Request, status: int, headers: AppHeaders, keep_alive: bool) -> list[bytes]:
        line = STATUS_LINES_11.get(status)
        if line is None:
            raise LocalProtocolError(f"invalid status code {status!r}")
        keep_alive = keep_alive and request.keep_alive
        length = -1
        defaults = self.default_headers
        default_block = defaults.block
        out = [line]
        lines = _lines
        length_line = b""
        for pair in headers:
            try:
                known = lines.get(pair)
            except TypeError:  # a list, not a tuple: checked like any new field
                known = None
            if known is None:
                name, value = pair
                known = _field_line(name, value)
            if isinstance(known, tuple):  # content-length: its line and its value
                if length >= 0:
                    raise LocalProtocolError("more than one content-length")
                length_line, length = known
                continue
            if known:
                out.append(known)
                continue
            name, value = pair
            lname = name.lower()
            if lname == b"connection":
                if value.lower().find(b"close") >= 0:
                    keep_alive = False
            elif lname != b"transfer-encoding":
                # The app's own date or server replaces the default one.
                default_block = defaults.without(lname)
                out.append(name + b": " + check_field(name, value, "response header") + b"\r\n")
        if status < 200 or status == 204 or status == 304:
            mode = NO_BODY
            if length >= 0 and status == 304:
                out.append(length_line)
            length = 0
        elif length >= 0:
            mode = LENGTH
            out.append(length_line)
        elif request.http_version == "1.1":
            mode = CHUNKED
            out.append(b"transfer-encoding: chunked\r\n")
        else:
            mode = UNTIL_CLOSE
            keep_alive = False
        if request.method == b"HEAD":
            mode = NO_BODY
            length = 0
        if not keep_alive:
            out.append(b"connection: close\r\n")
        elif request.http_version == "1.0":
            out.append(b"connection: keep-alive\r\n")
        out.append(default_block)
        out.append(b"\r\n")
        self._w_mode = mode
        self._w_remaining = length
        self._w_keep_alive = keep_alive
        return out

    def response_data(self, data: bytes) -> bytes:
        """Frame a piece of the response body."""
        mode = self._w_mode
        if mode == LENGTH:
            remaining = self._w_remaining - len(data)
            if remaining < 0:
                raise LocalProtocolError("response body longer than its Content-Length")
            self._w_remaining = remaining
            return data
        if mode == CHUNKED:
            if not data:
                return b""
            return b"%x\r\n%b\r\n" % (len(data), data)
        if mode == UNTIL_CLOSE:
            return data
        return b""

    def response_file_framing(self, size: int) -> tuple[bytes, bytes] | None:
        """Framing around ``size`` body bytes the driver writes itself (a file, by sendfile):
        the bytes to write before and after them, or None when the response has no body."""
        mode = self._w_mode
        if mode == LENGTH:
            if size > self._w_remaining:
                raise LocalProtocolError("response body longer than its Content-Length")
            self._w_remaining -= size
            return b"", b""
        if mode == CHUNKED:
            return (b"%x\r\n" % size, b"\r\n") if size else (b"", b"")
        if mode == UNTIL_CLOSE:
            return b"", b""
        return None

    def response_end(self, now: float) -> bytes:
        """Finish the response; returns the closing bytes (the last chunk).

        Raises ``LocalProtocolError`` (and changes nothing) when fewer bytes were sent than the
        Content-Length announced.
        """
        mode = self._w_mode
        if mode == LENGTH and self._w_remaining:
            self._w_keep_alive = False
            raise LocalProtocolError("response body shorter than its Content-Length")
        self._w_mode = NO_BODY
        self._owed -= 1
        self._idle_since = now
        if not self._owed:
            self.continue_sent(now)  # a final answer instead of the 100: the same clock starts
        if mode == CHUNKED:
            return b"0\r\n\r\n"
        if mode == UNTIL_CLOSE:
            self._w_keep_alive = False
        return b""

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after the current response."""
        return self._w_keep_alive

    def error_response(self, status: int, detail: str = "") -> bytes:
        """A complete plain-text response for a rejected request; the connection closes after it."""
        self.read_state = DONE
        self._w_keep_alive = False
        line = STATUS_LINES_11.get(status, STATUS_LINES_11[400])
        body = line[13:].strip() + b": " + detail.encode("ascii", "replace") + b"\n"
        return b"".join(
            (
                line,
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n",
                self.default_headers.block,
                b"\r\n",
                body,
            )
        )


def _field_line(name: bytes, value: bytes) -> bytes | tuple[bytes, int]:
    """How a response field is written: its line; for content-length, its line and its value;
    b"" for one that touches framing or replaces a default (connection, transfer-encoding, date,
    server). The field follows ``fields.py`` (whitespace around the value is not sent); raises
    ``LocalProtocolError`` for a name that is not a token, a value with CR, LF, NUL or another
    control byte (an app must never split a response), or a content-length that is not a number."""
    if type(name) is not bytes or type(value) is not bytes:
        raise LocalProtocolError(f"response header fields must be bytes, got {name!r}: {value!r}")
    key = (name, value)
    value = check_field(name, value, "response header")
    lname = name.lower()
    line: bytes | tuple[bytes, int]
    if lname == b"content-length":
        if not (value.isdigit() and len(value) <= 18):
            raise LocalProtocolError(f"invalid content-length {value!r}")
        length = int(value)
        line = (b"content-length: %d\r\n" % length, length)
    elif lname in _FRAMING:
        line = b""
    else:
        line = name + b": " + value + b"\r\n"
    if len(name) + len(value) <= 256 and len(_lines) < _LINES_MAX:
        _lines[key] = line
    return line


def _encode_headers(headers: Headers) -> bytes:
    return b"".join(b"%b: %b\r\n" % (name, check_field(name, value, "header")) for name, value in headers)
