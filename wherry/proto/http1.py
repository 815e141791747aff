"""The server side of one HTTP/1.1 connection, sans I/O.

Rules of this module:

1. Bytes in, events out: ``receive_data(data, now)`` returns the events the bytes completed.
   ``receive_data(b"", now)`` means the peer closed its side. Nothing here reads a clock, a socket
   or a loop; time is passed in and deadlines are handed back (``deadline``).
2. Events in, bytes out: ``response_head`` / ``response_data`` / ``response_end`` return the bytes
   to write for the response to the oldest unanswered request. Responses are produced strictly in
   request order.
3. Parsing is llhttp through httptools with no leniency flags. Everything llhttp lets through that
   RFC 9112 forbids (missing or repeated Host, Transfer-Encoding on HTTP/1.0, codings we do not
   implement) is checked here. A request that breaks a rule becomes one ``Rejected`` event carrying
   the status to answer; after it nothing more is parsed on this connection.
4. Limits (head size, header count, body size) are enforced here, as bytes arrive.
5. This module does not know about ASGI, applications, or how many requests are in flight in the
   driver.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Final

import httptools

from .events import (
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    H2Preface,
    Headers,
    LocalProtocolError,
    Rejected,
    Request,
)

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

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(rb"[0-9]{1,18}")
_good_names: set[bytes] = set()

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
    """Header lines added to every response (server, date, --header). Refreshed by the driver."""

    __slots__ = ("block",)

    def __init__(self, block: bytes = b"") -> None:
        self.block = block


class H1Limits:
    __slots__ = (
        "body_timeout",
        "head_timeout",
        "keep_alive_timeout",
        "max_body",
        "max_head",
        "max_headers",
    )

    def __init__(
        self,
        max_head: int = 65536,
        max_headers: int = 100,
        max_body: int | None = None,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keep_alive_timeout: float = 5.0,
    ) -> None:
        self.max_head = max_head
        self.max_headers = max_headers
        self.max_body = max_body
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        self.keep_alive_timeout = keep_alive_timeout


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
        "_completed_in_chunk",
        "_events",
        "_fresh",
        "_head_mid_chunk",
        "_head_raw",
        "_head_since",
        "_head_size",
        "_headers",
        "_hosts",
        "_idle_since",
        "_last_request",
        "_max_body",
        "_now",
        "_owed",
        "_parser",
        "_paused",
        "_prefix",
        "_priming",
        "_te",
        "_url",
        "_w_keep_alive",
        "_w_mode",
        "_w_remaining",
        "_w_request",
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
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self.read_state = IDLE
        self.trailing_data = b""
        self._now = now
        self._idle_since = now
        self._head_since = now
        self._body_since = now
        self._paused = False
        self._priming = False
        self._owed = 0  # requests parsed and not yet answered in full
        self._fresh = True
        self._prefix = b""
        self._completed_in_chunk = 0
        self._last_request: Request | None = None
        self._reset_message()
        self._w_mode = NO_BODY
        self._w_remaining = 0
        self._w_keep_alive = True
        self._w_request: Request | None = None

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: Headers = []
        self._hosts = 0
        self._te: list[bytes] = []
        self._head_size = 0
        self._head_raw = 0
        self._head_mid_chunk = False
        self._body_seen = 0
        self._max_body = self.limits.max_body
        self._awaiting_continue = False

    # ------------------------------------------------------------------ reading

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        self._now = now
        state = self.read_state
        if state >= UPGRADED:
            if state == UPGRADED:
                self.trailing_data += data
            return []
        events = self._events = []
        if not data:
            if state == IDLE:
                events.append(ConnectionClosed())
                self.read_state = DONE
            else:
                self._reject(400, "connection closed in the middle of a request")
            return events
        if self._fresh:
            # The first bytes of a connection may be the HTTP/2 client preface.
            buf = self.trailing_data + data if self.trailing_data else data
            if len(buf) < len(H2_PREFACE) and H2_PREFACE.startswith(buf):
                self.trailing_data = buf
                return events
            self._fresh = False
            self.trailing_data = b""
            if buf.startswith(H2_PREFACE):
                self.read_state = DONE
                events.append(H2Preface(buf))
                return events
            data = buf
        if state == IDLE:
            self._prefix = data[:32]
        elif state == HEAD and len(self._prefix) < 32:
            self._prefix += data[:32]
        self._completed_in_chunk = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            self._upgraded(data[offset:])
        except _Reject as exc:
            self._reject(exc.status, exc.detail)
        except httptools.HttpParserError as exc:
            self._parser_error(exc, data)
        else:
            self._check_partial_head(len(data))
        return events

    def _check_partial_head(self, size: int) -> None:
        if self.read_state == HEAD:
            if self._head_mid_chunk:
                # The head began behind other requests in this piece; llhttp does not say where,
                # so its raw bytes count from the next piece on (complete parts are in _head_size).
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
                head = self._prefix.lstrip(b"\r\n").partition(b" ")[0]
                if head and _TOKEN.fullmatch(head):
                    status = 501
        elif "transfer-encoding" in lowered or "transfer encoding" in lowered:
            status = self._te_status()
        elif "invalid http version" in lowered:
            status = 505
        self._reject(status, f"malformed request: {message}")

    def _te_status(self) -> int:
        codings = [c.strip().lower() for c in b",".join(self._te).split(b",")]
        if any(c != b"chunked" and _TOKEN.fullmatch(c) for c in codings):
            return 501
        return 400

    def _upgraded(self, rest: bytes) -> None:
        """llhttp stopped after a head that asks to switch protocols (Upgrade or CONNECT)."""
        request = self._last_request
        if request is None:
            self._reject(400, "malformed upgrade")
            return
        if request.method == b"CONNECT":
            # No tunnels: the request goes to the app; nothing after it is read.
            request.keep_alive = False
            self._events.append(EndOfMessage())
            self.read_state = DONE
            return
        token = (request.upgrade or b"").lower()
        if token in self.accepted_upgrades:
            self.read_state = UPGRADED
            self.trailing_data = rest
            return
        # Declined: carry on as plain HTTP/1.1 with a fresh parser that first sees a synthetic head
        # declaring the same body framing, so the body is parsed as a body and never as a request.
        request.upgrade = None
        self._parser = httptools.HttpRequestParser(self)
        framing = self._framing_of(request)
        self.read_state = IDLE
        if framing is None:
            self._events.append(EndOfMessage())
            self._owed_message_done()
            if rest:
                self._continue(rest)
            return
        self._priming = True
        self._parser.feed_data(b"PUT / HTTP/1.1\r\nhost: x\r\n" + framing + b"\r\n")
        self._priming = False
        self.read_state = BODY
        if rest:
            self._continue(rest)

    def _continue(self, rest: bytes) -> None:
        try:
            self._parser.feed_data(rest)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrade inside an upgrade")
        except _Reject as exc:
            self._reject(exc.status, exc.detail)
        except httptools.HttpParserError as exc:
            self._parser_error(exc, rest)
        else:
            self._check_partial_head(len(rest))

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
        if self._priming:
            return
        self.read_state = HEAD
        self._head_since = self._now
        self._reset_message()
        self._head_mid_chunk = self._completed_in_chunk > 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.limits.max_head:
            raise _Reject(431, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._priming:
            return
        headers = self._headers
        if len(headers) >= self.limits.max_headers:
            raise _Reject(431, "too many header fields")
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_head:
            raise _Reject(431, "request head too large")
        name = name.lower()
        if value[-1:] in b" \t":
            value = value.rstrip(b" \t")
        if name == b"host":
            self._hosts += 1
        elif name == b"transfer-encoding":
            self._te.append(value)
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._priming:
            return
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Reject(505, f"HTTP/{version} is not supported")
        if self._hosts > 1:
            raise _Reject(400, "more than one Host header")
        if self._hosts == 0 and version == "1.1":
            raise _Reject(400, "missing Host header")
        if self._te:
            if version == "1.0":
                raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip().lower() for c in b",".join(self._te).split(b",")]
            if codings != [b"chunked"]:
                raise _Reject(self._te_status(), "unsupported Transfer-Encoding")
        headers = self._headers
        method = parser.get_method()
        url = self._url
        # The whole head as sent: "METHOD SP target SP HTTP/x.y CRLF", the fields, the empty line.
        if self._head_size + len(method) + 14 > self.limits.max_head:
            raise _Reject(431, "request head too large")
        if url[:1] == b"/":
            path, sep, query = url.partition(b"?")
            if b"#" in query:
                query = query.partition(b"#")[0]
            elif not sep and b"#" in path:
                path = path.partition(b"#")[0]
        elif url == b"*":
            if method != b"OPTIONS":
                raise _Reject(400, "asterisk-form target outside OPTIONS")
            path, query = b"*", b""
        elif method == b"CONNECT":
            path, query = url, b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                raise _Reject(400, "malformed request target") from None
            if not parsed.schema or not parsed.host:
                raise _Reject(400, "malformed request target")
            path = parsed.path or b"/"
            query = parsed.query or b""
        max_body = self._max_body
        if max_body is not None:
            for name, value in headers:
                if name == b"content-length" and int(value) > max_body:
                    raise _Reject(413, "request body too large")
        upgrade: bytes | None = None
        if parser.should_upgrade():
            for name, value in headers:
                if name == b"upgrade":
                    upgrade = value
                    break
        expect = False
        for name, value in headers:
            if name == b"expect":
                if value.lower() == b"100-continue":
                    expect = version == "1.1"
                else:
                    raise _Reject(417, "unsupported expectation")
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
        self._last_request = request
        self._owed += 1
        self._events.append(request)
        self.read_state = BODY
        self._body_since = self._now
        # A client that expects 100-continue may hold its body back until it gets the 100.
        self._awaiting_continue = expect

    def on_body(self, body: bytes) -> None:
        max_body = self._max_body
        if max_body is not None:
            self._body_seen += len(body)
            if self._body_seen > max_body:
                raise _Reject(413, "request body too large")
        self._body_since = self._now
        self._awaiting_continue = False
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        if self._priming or self._parser.should_upgrade():
            return  # an upgrade: _upgraded() decides what the message was
        self._events.append(EndOfMessage())
        self._completed_in_chunk += 1
        self._owed_message_done()

    def _owed_message_done(self) -> None:
        self.read_state = IDLE

    # ------------------------------------------------------------------ deadlines

    def pause_reading(self) -> None:
        """The driver stopped reading: the peer cannot be blamed for slowness until resumed."""
        self._paused = True

    def resume_reading(self, now: float) -> None:
        self._paused = False
        self._body_since = now
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
            return self._body_since + self.limits.body_timeout
        if state == IDLE and self._owed == 0:
            return self._idle_since + self.limits.keep_alive_timeout
        return None

    def continue_sent(self, now: float) -> None:
        """The 100 (Continue) went out: the client's body clock starts now (RFC 9110 §10.1.1)."""
        if self._awaiting_continue:
            self._awaiting_continue = False
            self._body_since = now

    def timed_out(self) -> Rejected | None:
        """Called once the deadline passed: what to answer (None: close quietly, as when the
        request whose body stalled is already answered)."""
        state = self.read_state
        self.read_state = DONE
        if state == HEAD:
            return Rejected(408, "request head not received in time")
        if state == BODY and self._owed:
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
        self, request: Request, status: int, headers: Headers, keep_alive: bool = True
    ) -> bytes:
        """Serialise the head of the response to ``request``; decides the body framing."""
        line = STATUS_LINES_11.get(status)
        if line is None:
            raise LocalProtocolError(f"invalid status code {status!r}")
        self._w_request = request
        keep_alive = keep_alive and request.keep_alive
        length = -1
        out = [line]
        append = out.append
        for pair in headers:
            name, value = pair
            lname = name.lower()
            if lname not in _good_names:
                if not _TOKEN.fullmatch(name):
                    raise LocalProtocolError(f"invalid response header name {name!r}")
                if len(_good_names) < 512:
                    _good_names.add(lname)
            if _BAD_VALUE.search(value):
                raise LocalProtocolError(f"invalid response header value for {name!r}")
            if lname == b"content-length":
                if not _DIGITS.fullmatch(value) or length >= 0:
                    raise LocalProtocolError(f"invalid content-length {value!r}")
                length = int(value)
                continue
            elif lname == b"connection":
                if b"close" in value.lower():
                    keep_alive = False
                continue
            elif lname == b"transfer-encoding":
                continue
            append(name)
            append(b": ")
            append(value)
            append(b"\r\n")
        if status < 200 or status == 204 or status == 304:
            mode = NO_BODY
            if length >= 0 and status == 304:
                append(b"content-length: %d\r\n" % length)
            length = 0
        elif length >= 0:
            mode = LENGTH
            append(b"content-length: %d\r\n" % length)
        elif request.http_version == "1.1":
            mode = CHUNKED
            append(b"transfer-encoding: chunked\r\n")
        else:
            mode = UNTIL_CLOSE
            keep_alive = False
        if request.method == b"HEAD":
            mode = NO_BODY
            length = 0
        if not keep_alive:
            append(b"connection: close\r\n")
        elif request.http_version == "1.0":
            append(b"connection: keep-alive\r\n")
        append(self.default_headers.block)
        append(b"\r\n")
        self._w_mode = mode
        self._w_remaining = length
        self._w_keep_alive = keep_alive
        return b"".join(out)

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

    def response_end(self, now: float) -> bytes:
        """Finish the response; returns the closing bytes (the last chunk).

        Raises ``LocalProtocolError`` (and changes nothing) when fewer bytes were sent than the
        Content-Length announced.
        """
        mode = self._w_mode
        if mode == LENGTH and self._w_remaining:
            request = self._w_request
            if request is None or request.method != b"HEAD":
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


def _encode_headers(headers: Headers) -> bytes:
    out = []
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise LocalProtocolError(f"invalid header value for {name!r}")
        out.append(b"%b: %b\r\n" % (name, value))
    return b"".join(out)
