"""The ASGI HTTP request/response cycle: the one place the www spec's message rules live.

Rules of this module:

1. One ``HTTPCycle`` per request, whatever the protocol (an HTTP/1.1 request, an HTTP/2 stream) and
   whatever the backend. Protocol drivers feed it request body and disconnects, and implement
   ``HTTPStream`` to carry the response; they never look at ASGI messages themselves.
2. ``receive()`` and ``send()`` are the app's only doors. Message order is checked here:
   ``start`` then ``body``* with ``more_body`` until the last; anything else is an app error, and so
   is a 1xx status in ``http.response.start`` (it carries the final response).
3. After the response is complete or the peer is gone, ``receive()`` returns ``http.disconnect``
   and ``send()`` raises ``ClientDisconnected`` (an ``OSError``, www spec 2.4). When the peer only
   closed its sending side (``feed_eof``), ``receive()`` reports the disconnect once the body is
   read, but ``send()`` still writes: a client that half-closes gets its answer, and an app that
   waits for a disconnect (long polls, streams) learns the client is gone.
4. How the app ended decides the answer (``app_finished``): an exception or no response before
   ``http.response.start`` is a 500; after it, the connection is cut.
5. No I/O and no event-loop imports: waiting goes through futures the stream creates.
"""

from __future__ import annotations

import logging
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr

from ..contracts import ASGIApp as ASGIApp
from ..contracts import FutureLike as FutureLike
from ..contracts import Message as Message
from ..contracts import Receive as Receive
from ..contracts import Scope as Scope
from ..contracts import Send as Send
from ..proto.events import AppHeaders, Headers, LocalProtocolError
from .extensions import send_extension

logger: Final = logging.getLogger("wherry.error")

ERROR_500_HEADERS: Final[Headers] = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"22"),
]
ERROR_500_BODY: Final = b"Internal Server Error\n"

_NO_FIELDS: Final[Headers] = []

# Response states.
START: Final = 0
BODY: Final = 1
COMPLETE: Final = 2
TRAILERS: Final = 3  # the body is complete, the trailers announced in http.response.start are not


# An OSError: compiled with mypyc, a subclass of a built-in exception must be a plain Python class.
@mypyc_attr(native_class=False)
class ClientDisconnected(OSError):
    """Raised by send() once the peer is gone (ASGI www spec 2.4)."""


class HTTPStream(Protocol):
    """What a protocol driver provides to carry one response."""

    write_paused: bool

    def create_future(self) -> FutureLike: ...

    def write_response(
        self, cycle: HTTPCycle, status: int, headers: AppHeaders, body: bytes, more_body: bool
    ) -> None: ...

    def write_body(self, cycle: HTTPCycle, body: bytes, more_body: bool) -> None: ...

    def write_continue(self, cycle: HTTPCycle) -> None: ...

    def body_consumed(self, cycle: HTTPCycle, size: int) -> None: ...

    async def drain(self) -> None: ...

    def abort(self, cycle: HTTPCycle) -> None: ...

    def cycle_finished(self, cycle: HTTPCycle) -> None: ...

    # ASGI extensions (wherry/asgi/extensions.py says when each is called)

    def write_trailers(self, cycle: HTTPCycle, headers: Headers) -> None: ...

    def write_informational(self, cycle: HTTPCycle, status: int, headers: Headers) -> None: ...

    def push(self, cycle: HTTPCycle, path: bytes, headers: Headers) -> None: ...

    async def send_file(self, cycle: HTTPCycle, path: str, more_body: bool) -> None: ...


class HTTPCycle:
    """One request and its response, seen from the application."""

    __slots__ = (
        "_body",
        "_continue",
        "_disconnected",
        "_eof",
        "_request_sent",
        "_start",
        "_state",
        "_trailer_fields",
        "_trailers",
        "_waiter",
        "body_complete",
        "buffered",
        "request",
        "scope",
        "sent_bytes",
        "started_at",
        "status",
        "stream",
    )

    def __init__(
        self, scope: Scope, stream: HTTPStream, request: Any, expect_continue: bool, now: float
    ) -> None:
        self.scope = scope
        self.stream = stream
        self.request = request  # the protocol's own record, for the driver and the access log
        self.started_at = now
        self._body: list[bytes] = []
        self.buffered = 0  # request body bytes received and not yet read by the app
        self.body_complete = False
        self._request_sent = False
        self._disconnected = False
        self._eof = False
        self._continue = expect_continue
        self._waiter: FutureLike | None = None
        self._state = START
        self._start: Message | None = None
        self._trailers = False  # http.response.start said trailers: True
        self._trailer_fields: Headers = _NO_FIELDS  # replaced, never appended to
        self.status = 0
        self.sent_bytes = 0

    # -------------------------------------------------------------- fed by the driver

    def feed_body(self, data: bytes) -> None:
        self._body.append(data)
        self.buffered += len(data)
        if self._waiter is not None:
            self._wake()

    def feed_end(self) -> None:
        self.body_complete = True
        if self._waiter is not None:
            self._wake()

    def feed_disconnect(self) -> None:
        self._disconnected = True
        self._wake()

    def feed_eof(self) -> None:
        """The peer will send nothing more (it may still read the response)."""
        self._eof = True
        self._wake()

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    @property
    def response_started(self) -> bool:
        return self._state != START or self._start is not None

    @property
    def response_complete(self) -> bool:
        return self._state == COMPLETE

    @property
    def response_headers(self) -> AppHeaders:
        """The headers of the app's ``http.response.start`` as it gave them (none before it, or
        once the server answered 500 in its place): what an access format's ``%({name}o)s`` reads."""
        start = self._start
        return start.get("headers", ()) if start is not None else ()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -------------------------------------------------------------- the app's side

    async def receive(self) -> Message:
        while True:
            if self._disconnected or self._state == COMPLETE:
                return {"type": "http.disconnect"}
            body = self._body
            if body:
                data = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                size = self.buffered
                self.buffered = 0
                self.stream.body_consumed(self, size)
                more = not self.body_complete
                if not more:
                    self._request_sent = True
                return {"type": "http.request", "body": data, "more_body": more}
            if self.body_complete:
                if not self._request_sent:
                    self._request_sent = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                if self._eof:
                    return {"type": "http.disconnect"}
            elif self._continue:
                self._continue = False
                self.stream.write_continue(self)
            waiter = self._waiter = self.stream.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: Message) -> None:
        if self._disconnected:
            raise ClientDisconnected("the client is gone")
        kind = message["type"]
        state = self._state
        if state == START and self._start is None:
            if kind != "http.response.start":
                raise RuntimeError(f"expected 'http.response.start', got {kind!r}")
            status = message["status"]
            if type(status) is not int:
                raise TypeError(f"http.response.start 'status' must be an int, got {status!r}")
            if status < 200:
                raise ValueError(f"http.response.start: {status} is not a final status")
            self._start = message
            self.status = status
            self._continue = False
            if message.get("trailers") is True:
                self._trailers = True
            return
        if state == COMPLETE:
            raise RuntimeError(f"unexpected {kind!r}: the response is already complete")
        if kind != "http.response.body" or state == TRAILERS:
            await send_extension(self, message)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        ending = self._trailers and not more
        if ending:
            more = True  # the trailers end the response
        if type(body) is not bytes:
            if not isinstance(body, bytes | bytearray | memoryview):
                raise TypeError(f"http.response.body 'body' must be bytes, got {type(body)!r}")
            body = bytes(body)
        stream = self.stream
        if state == START:
            start = self._start
            assert start is not None
            headers = start.get("headers", ())
            self._state = BODY if more else COMPLETE
            try:
                stream.write_response(self, self.status, headers, body, more)
            except (LocalProtocolError, TypeError, ValueError, AttributeError):
                self._state = START  # nothing was written: the app error still gets its 500
                raise
        else:
            if not more:
                self._state = COMPLETE
            stream.write_body(self, body, more)
        if ending:
            self._state = TRAILERS
        self.sent_bytes += len(body)
        if not more and self._waiter is not None:
            self._wake()
        if stream.write_paused:
            await stream.drain()
        if self._disconnected and more:
            raise ClientDisconnected("the client is gone")

    # -------------------------------------------------------------- the end of the app

    def app_finished(self, exc: BaseException | None) -> None:
        """Called exactly once when the application's coroutine ends.

        Not logged: ``ClientDisconnected`` (the peer left), and a cancellation (any exception that
        is not an ``Exception``) of an app whose connection was already cut, which is how the
        server stops apps at the end of a graceful shutdown.
        """
        if (
            exc is not None
            and not isinstance(exc, ClientDisconnected)
            and (isinstance(exc, Exception) or not self._disconnected)
        ):
            logger.error("Exception in ASGI application", exc_info=exc)
        if self._state == START:
            if exc is None and not self._disconnected:
                logger.error("ASGI application returned without sending a response")
            if not self._disconnected:
                self._start = None
                self.status = 500
                self._state = COMPLETE
                self.stream.write_response(self, 500, ERROR_500_HEADERS, ERROR_500_BODY, False)
                self.sent_bytes = len(ERROR_500_BODY)
        elif self._state == BODY or self._state == TRAILERS:
            if exc is None and not self._disconnected:
                logger.error("ASGI application returned before the response was complete")
            self._state = COMPLETE
            self.stream.abort(self)
        if self._waiter is not None:
            self._wake()
        self.stream.cycle_finished(self)
