"""The ASGI WebSocket cycle: the one place the www spec's ``websocket`` message rules live.

Rules of this module:

1. One ``WebSocketCycle`` per WebSocket, whatever carries it (an HTTP/1.1 Upgrade or an HTTP/2
   extended CONNECT stream). Drivers feed it messages and the end of the session, and implement
   ``WebSocketStream`` to carry what the app sends; they never look at ASGI messages.
2. ``receive()`` gives ``websocket.connect`` first, then ``websocket.receive`` for each message in
   order, then ``websocket.disconnect`` with ``code`` and ``reason`` (www spec 2.5) once the session
   is over: the peer's Close code (1005 when it gave none), the code the server closed with, 1006
   when the connection dropped or never completed the handshake.
3. ``send()`` before the handshake: ``websocket.accept`` (subprotocol, extra headers),
   ``websocket.close`` (answered with 403, the handshake never completes), or the denial response
   ``websocket.http.response.start`` / ``.body``. After it: ``websocket.send`` and ``websocket.close``.
   One table says so (``_TRANSITIONS``: state and message type to handler and next state); anything
   else is an app error (``RuntimeError``). Once the session is over, or the app has
   closed it, ``send()`` raises ``ClientDisconnected`` (an ``OSError``, www spec 2.4).
4. How the app ended decides the answer (``app_finished``): before any handshake answer, a 500;
   after ``accept``, a Close with 1000 (1011 when the app raised); a denial response left
   unfinished cuts the connection.
5. Messages wait in a queue the driver bounds (``queued``; it pauses reading while full). ``send()``
   waits while the transport's write buffer is full (``write_paused`` / ``drain``).
6. No I/O and no event-loop imports: waiting goes through futures the stream creates.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from ..proto.events import Headers
from .http import ClientDisconnected, FutureLike, Message, Scope

logger = logging.getLogger("wherry.error")

# Cycle states.
CONNECTING: Final = 0  # the app has not answered the handshake
CONNECTED: Final = 1  # accepted: messages flow both ways
RESPONDING: Final = 2  # a denial response has started
CLOSED: Final = 3  # the app closed, denied, or the session is over for sending

ABNORMAL: Final = 1006  # no Close frame was exchanged (RFC 6455 §7.1.5)


class WebSocketStream(Protocol):
    """What a protocol driver provides to carry one WebSocket."""

    write_paused: bool
    read_paused: bool  # when set, the cycle calls message_consumed() as the app takes messages

    def create_future(self) -> FutureLike: ...

    def accept(self, cycle: WebSocketCycle, subprotocol: str | None, headers: Headers) -> int:
        """Complete the handshake; the HTTP status it was answered with (101, or 200 on HTTP/2)."""

    def send_message(self, cycle: WebSocketCycle, data: bytes | str) -> None: ...

    def close(self, cycle: WebSocketCycle, code: int, reason: str) -> None: ...

    def respond(
        self, cycle: WebSocketCycle, status: int, headers: Headers, body: bytes, more_body: bool
    ) -> None: ...

    def respond_body(self, cycle: WebSocketCycle, body: bytes, more_body: bool) -> None: ...

    def message_consumed(self, cycle: WebSocketCycle) -> None: ...

    def abort(self, cycle: WebSocketCycle) -> None: ...

    async def drain(self) -> None: ...

    def cycle_finished(self, cycle: WebSocketCycle) -> None: ...


def _headers(value: Any, kind: str) -> Headers:
    out: Headers = []
    for pair in value or ():
        name, val = pair
        if type(name) is not bytes or type(val) is not bytes:
            raise TypeError(f"{kind} 'headers' must be pairs of bytes, got {pair!r}")
        out.append((name.lower(), val))
    return out


class WebSocketCycle:
    """One WebSocket, seen from the application."""

    __slots__ = (
        "_closed",
        "_connect_sent",
        "_queue",
        "_start",
        "_waiter",
        "scope",
        "state",
        "status",
        "stream",
    )

    def __init__(self, scope: Scope, stream: WebSocketStream) -> None:
        self.scope = scope
        self.stream = stream
        self.state = CONNECTING
        self.status = 0  # the HTTP status the handshake was answered with (the accept's, a denial's)
        self._queue: deque[bytes | str] = deque()
        self._closed: tuple[int, str] | None = None
        self._connect_sent = False
        self._start: Message | None = None
        self._waiter: FutureLike | None = None

    # -------------------------------------------------------------- fed by the driver

    def feed_message(self, data: bytes | str) -> None:
        self._queue.append(data)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed_closed(self, code: int, reason: str = "") -> None:
        """The session is over: nothing more arrives and nothing more can be sent."""
        if self._closed is None:
            self._closed = (code, reason)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def queued(self) -> int:
        """Messages received and not yet taken by the app."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -------------------------------------------------------------- the app's side

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        queue = self._queue
        while True:
            if queue:
                data = queue.popleft()
                if self.stream.read_paused:
                    self.stream.message_consumed(self)
                if type(data) is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            closed = self._closed
            if closed is not None:
                return {"type": "websocket.disconnect", "code": closed[0], "reason": closed[1]}
            waiter = self._waiter = self.stream.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def send(self, message: Message) -> None:
        # Messages are dicts (any mapping is accepted), read below as dicts (HTTPCycle.send).
        if not isinstance(message, dict):
            message = dict(message)
        kind = message["type"]
        state = self.state
        if self._closed is not None and state != RESPONDING:
            raise ClientDisconnected("the WebSocket is closed")
        # The row every message of a session takes, (CONNECTED, websocket.send), is matched here
        # by plain comparisons; the table is read for the others.
        if kind == "websocket.send" and state == CONNECTED:
            self._send_message(message, CONNECTED)
        else:
            row = _TRANSITIONS.get((state, kind))
            if row is None:
                if state == CLOSED:
                    raise ClientDisconnected("the WebSocket is closed")
                raise RuntimeError(_REFUSALS[state].format(kind))
            handler, target = row
            handler(self, message, target)
        stream = self.stream
        if stream.write_paused:
            await stream.drain()

    # The handlers of the table's rows. Each is given the row's next state and enters it once the
    # stream has taken the message (a stream that refuses one raises before anything changes).

    def _send_message(self, message: dict[str, Any], target: int) -> None:
        text = message.get("text")
        data = message.get("bytes")
        if (data is None) == (text is None):
            raise ValueError("websocket.send needs exactly one of 'bytes' and 'text'")
        if text is not None:
            if type(text) is not str:
                raise TypeError(f"websocket.send 'text' must be str, got {type(text)!r}")
            self.stream.send_message(self, text)
        else:
            if type(data) is not bytes:
                if not isinstance(data, bytearray | memoryview):
                    raise TypeError(f"websocket.send 'bytes' must be bytes, got {type(data)!r}")
                data = bytes(data)
            self.stream.send_message(self, data)

    def _close(self, message: dict[str, Any], target: int) -> None:
        code, reason = self._close_args(message)
        self.stream.close(self, code, reason)  # raises before any change for a code it refuses
        self.state = target

    def _accept(self, message: dict[str, Any], target: int) -> None:
        kind = message["type"]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and type(subprotocol) is not str:
            raise TypeError(f"websocket.accept 'subprotocol' must be str, got {subprotocol!r}")
        headers = _headers(message.get("headers"), kind)
        if any(name == b"sec-websocket-protocol" for name, _ in headers):
            raise ValueError("websocket.accept: use 'subprotocol', not sec-websocket-protocol")
        # raises before any change if it cannot
        self.status = self.stream.accept(self, subprotocol, headers)
        self.state = target

    def _refuse(self, message: dict[str, Any], target: int) -> None:
        """``websocket.close`` before the handshake: a 403, the handshake never completes."""
        self._close_args(message)
        self.state = target
        self.status = 403
        self.stream.respond(self, 403, [(b"content-length", b"0")], b"", False)

    def _deny(self, message: dict[str, Any], target: int) -> None:
        kind = message["type"]
        status = message["status"]
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError(f"websocket.http.response.start: invalid status {status!r}")
        self._start = {"status": status, "headers": _headers(message.get("headers"), kind)}
        self.state = target
        self.status = status

    def _deny_body(self, message: dict[str, Any], target: int) -> None:
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, bytearray | memoryview):
                raise TypeError(f"websocket.http.response.body 'body' must be bytes, got {type(body)!r}")
            body = bytes(body)
        more = bool(message.get("more_body", False))
        if self._closed is not None:
            raise ClientDisconnected("the client is gone")
        start = self._start
        if start is not None:
            # The protocol checks the headers: if it refuses them nothing was written, and
            # the app's error is still answered with a 500 (app_finished).
            self.stream.respond(self, start["status"], start["headers"], body, more)
            self._start = None
        else:
            self.stream.respond_body(self, body, more)
        if not more:
            self.state = target

    @staticmethod
    def _close_args(message: dict[str, Any]) -> tuple[int, str]:
        code = message.get("code", 1000)
        reason = message.get("reason") or ""
        if type(code) is not int:
            raise TypeError(f"websocket.close 'code' must be an int, got {code!r}")
        if type(reason) is not str:
            raise TypeError(f"websocket.close 'reason' must be str, got {reason!r}")
        return code, reason

    # -------------------------------------------------------------- the end of the app

    def app_finished(self, exc: BaseException | None) -> None:
        """Called exactly once when the application's coroutine ends."""
        gone = self._closed is not None
        if (
            exc is not None
            and not isinstance(exc, ClientDisconnected)
            and (isinstance(exc, Exception) or not gone)
        ):
            logger.error("Exception in ASGI application", exc_info=exc)
        state = self.state
        if not gone:
            if state == CONNECTING:
                if exc is None:
                    logger.error("ASGI application returned without answering the WebSocket handshake")
                self.state = CLOSED
                self.status = 500
                self.stream.respond(
                    self,
                    500,
                    [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"22")],
                    b"Internal Server Error\n",
                    False,
                )
            elif state == CONNECTED:
                self.state = CLOSED
                self.stream.close(self, 1000 if exc is None else 1011, "")
            elif state == RESPONDING:
                if exc is None:
                    logger.error("ASGI application returned before the denial response was complete")
                self.state = CLOSED
                if self._start is not None:  # nothing written yet: the error can still be said
                    self._start = None
                    self.status = 500
                    self.stream.respond(self, 500, [(b"content-length", b"0")], b"", False)
                else:
                    self.stream.abort(self)
        self.stream.cycle_finished(self)


Handler = Callable[[WebSocketCycle, dict[str, Any], int], None]

# The cycle's state machine: (state, message type) -> (handler, next state). A message without a row
# is an app error (``_REFUSALS`` words it), or ``ClientDisconnected`` once the cycle is CLOSED. A
# denial body with ``more_body`` stays in RESPONDING.
_TRANSITIONS: Final[dict[tuple[int, str], tuple[Handler, int]]] = {
    (CONNECTING, "websocket.accept"): (WebSocketCycle._accept, CONNECTED),
    (CONNECTING, "websocket.close"): (WebSocketCycle._refuse, CLOSED),
    (CONNECTING, "websocket.http.response.start"): (WebSocketCycle._deny, RESPONDING),
    (CONNECTED, "websocket.send"): (WebSocketCycle._send_message, CONNECTED),
    (CONNECTED, "websocket.close"): (WebSocketCycle._close, CLOSED),
    (RESPONDING, "websocket.http.response.body"): (WebSocketCycle._deny_body, CLOSED),
}

_REFUSALS: Final[dict[int, str]] = {
    CONNECTING: "expected websocket.accept, websocket.close or a denial, not {!r}",
    CONNECTED: "unexpected {!r} after websocket.accept",
    RESPONDING: "expected 'websocket.http.response.body', got {!r}",
}
