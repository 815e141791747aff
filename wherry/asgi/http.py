"""The ASGI HTTP request/response cycle: the one place the www spec's message rules live.

Rules of this module:

1. One ``HTTPCycle`` per request, whatever the protocol (an HTTP/1.1 request, an HTTP/2 stream) and
   whatever the backend. Protocol drivers feed it request body and disconnects, and implement
   ``HTTPStream`` to carry the response; they never look at ASGI messages themselves.
2. ``receive()`` and ``send()`` are the app's only doors. Message order is checked here, by one
   table of the response's states (``_TRANSITIONS``: state and message type to handler and next
   state): ``start`` then ``body``* with ``more_body`` until the last, with the extension messages
   where ``asgi/extensions.py`` says; a message the table has no row for is an app error, and so
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
import os
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from mypy_extensions import mypyc_attr

from ..contracts import ASGIApp as ASGIApp
from ..contracts import FutureLike as FutureLike
from ..contracts import Message as Message
from ..contracts import Receive as Receive
from ..contracts import Scope as Scope
from ..contracts import Send as Send
from ..proto.events import AppHeaders, Headers, LocalProtocolError
from .extensions import early_hint_fields, fields, pathsend_path, push_path

logger: Final = logging.getLogger("wherry.error")

ERROR_500_HEADERS: Final[Headers] = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"22"),
]
ERROR_500_BODY: Final = b"Internal Server Error\n"

_NO_FIELDS: Final[Headers] = []

# Response states (``_TRANSITIONS`` says which message leads from which to which).
INIT: Final = 0  # nothing sent yet
STARTED: Final = 1  # http.response.start taken, nothing written: a 500 can still replace it
BODY: Final = 2  # the head is written, more body follows
TRAILERS: Final = 3  # the body is complete, the trailers announced in http.response.start are not
COMPLETE: Final = 4
END: Final = -1  # a next state in the table: TRAILERS if the start announced trailers, else COMPLETE


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


# The last http.request message of a body; receive() returns copies.
_REQUEST: Final[dict[str, Any]] = {"type": "http.request", "body": b"", "more_body": False}


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
        self._state = INIT
        self._start: dict[str, Any] | None = None  # the http.response.start message
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
    def state(self) -> int:
        """The response state: ``INIT``, ``STARTED``, ``BODY``, ``TRAILERS`` or ``COMPLETE``."""
        return self._state

    @property
    def response_started(self) -> bool:
        return self._state != INIT

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
                message = _REQUEST.copy()  # (a copy: cheaper than a dict built key by key)
                message["body"] = data
                message["more_body"] = more
                return message
            if self.body_complete:
                if not self._request_sent:
                    self._request_sent = True
                    return _REQUEST.copy()
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
        # Messages are dicts (any mapping is accepted): typed as one, their reads below are
        # direct dict operations once compiled, not method calls by name.
        if not isinstance(message, dict):
            message = dict(message)
        kind = message["type"]
        state = self._state
        # The rows of _TRANSITIONS every response goes through, (INIT, start) and (STARTED or
        # BODY, body), are matched here by plain comparisons, the state's first: one comparison of
        # strings per message, and no tuple built (as `in (...)` does, interpreted). The table is
        # read for the others.
        if state == INIT:
            if kind == "http.response.start":
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
                self._state = STARTED
                return
        elif (state == STARTED or state == BODY) and kind == "http.response.body":  # noqa: SIM109
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
            if state == STARTED:
                start = self._start
                assert start is not None
                headers = start.get("headers", ())
                self._state = BODY if more else COMPLETE
                try:
                    stream.write_response(self, self.status, headers, body, more)
                except (LocalProtocolError, TypeError, ValueError, AttributeError):
                    self._state = STARTED  # nothing was written: the app error still gets its 500
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
            return
        row = _TRANSITIONS.get((state, kind))
        if row is None:
            raise RuntimeError(refusal(state, kind))
        handler, target = row
        assert handler is not None  # the rows without a handler are matched above
        await handler(self, message, target)

    # The handlers of the table's other rows. Each is given the row's next state and enters it where
    # the stream must see it: trailers before they are written, a pathsend once its file is sent.

    async def _send_trailers(self, message: Message, target: int) -> None:
        kind = message["type"]
        self._trailer_fields = [*self._trailer_fields, *fields(message.get("headers", ()), kind)]
        if message.get("more_trailers", False):
            return  # the section goes on: the state stays TRAILERS
        self._enter(target)
        stream = self.stream
        stream.write_trailers(self, self._trailer_fields)
        self._wake()
        if stream.write_paused:
            await stream.drain()

    async def _send_early_hint(self, message: Message, target: int) -> None:
        links = early_hint_fields(message.get("links", ()))
        if self._state == STARTED and links:  # the head is not written yet; later hints are dropped
            self.stream.write_informational(self, 103, links)

    async def _send_push(self, message: Message, target: int) -> None:
        path = push_path(message.get("path"))
        headers = fields(message.get("headers", ()), message["type"])
        self.stream.push(self, path, headers)

    async def _send_pathsend(self, message: Message, target: int) -> None:
        path = pathsend_path(message.get("path"))
        size = os.stat(path).st_size  # a missing file fails here, while a 500 can still be sent
        more = self._trailers
        stream = self.stream
        if self._state == STARTED:
            start = self._start
            assert start is not None
            self._state = BODY
            try:
                stream.write_response(self, self.status, start.get("headers", ()), b"", True)
            except Exception:
                self._state = STARTED
                raise
        await stream.send_file(self, path, more)
        self.sent_bytes += size
        self._enter(target)
        self._wake()

    def _enter(self, target: int) -> None:
        self._state = (TRAILERS if self._trailers else COMPLETE) if target == END else target

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
        state = self._state
        if state == COMPLETE:
            pass  # the usual end: one comparison
        elif state in (INIT, STARTED):
            if exc is None and not self._disconnected:
                logger.error("ASGI application returned without sending a response")
            if not self._disconnected:
                self._start = None
                self.status = 500
                self._state = COMPLETE
                self.stream.write_response(self, 500, ERROR_500_HEADERS, ERROR_500_BODY, False)
                self.sent_bytes = len(ERROR_500_BODY)
        else:  # BODY or TRAILERS: the response began and is cut short
            if exc is None and not self._disconnected:
                logger.error("ASGI application returned before the response was complete")
            self._state = COMPLETE
            self.stream.abort(self)
        if self._waiter is not None:
            self._wake()
        self.stream.cycle_finished(self)


Handler = Callable[[HTTPCycle, Message, int], Awaitable[None]]

# The response's state machine: (state, message type) -> (handler, next state). A message without a
# row is an app error (``refusal`` words it). The rows without a handler are the ones every response
# takes; ``HTTPCycle.send`` handles them itself, ahead of the table. A message that says more follows
# (``more_body``, ``more_trailers``) stays in, or enters, the state that takes the rest.
_TRANSITIONS: Final[dict[tuple[int, str], tuple[Handler | None, int]]] = {
    (INIT, "http.response.start"): (None, STARTED),
    (STARTED, "http.response.body"): (None, END),  # BODY while more_body
    (BODY, "http.response.body"): (None, END),  # BODY while more_body
    (STARTED, "http.response.early_hint"): (HTTPCycle._send_early_hint, STARTED),  # a 103
    (BODY, "http.response.early_hint"): (HTTPCycle._send_early_hint, BODY),  # checked and dropped
    (STARTED, "http.response.push"): (HTTPCycle._send_push, STARTED),
    (BODY, "http.response.push"): (HTTPCycle._send_push, BODY),
    (STARTED, "http.response.pathsend"): (HTTPCycle._send_pathsend, END),
    (BODY, "http.response.pathsend"): (HTTPCycle._send_pathsend, END),
    (TRAILERS, "http.response.trailers"): (HTTPCycle._send_trailers, COMPLETE),  # or more_trailers
}

TRAILERS_OUT_OF_ORDER: Final = (
    "unexpected 'http.response.trailers': it follows the last body of a response "
    "whose http.response.start had trailers: True"
)


def refusal(state: int, kind: Any) -> str:
    """What the app is told of a message of type ``kind`` that ``state`` has no row for."""
    if state == INIT:
        return f"expected 'http.response.start', got {kind!r}"
    if state == COMPLETE:
        return f"unexpected {kind!r}: the response is already complete"
    if state == TRAILERS:
        return f"expected 'http.response.trailers', got {kind!r}"
    if kind == "http.response.trailers":
        return TRAILERS_OUT_OF_ORDER
    return f"expected 'http.response.body', got {kind!r}"
