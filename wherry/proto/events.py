"""The event vocabulary shared by every protocol core.

Rules of this module:

1. A protocol core turns bytes into these events and nothing else; drivers never look inside a parser.
2. Events are plain slotted records: no behaviour, no I/O, no references back to the core.
3. Errors the peer caused carry the HTTP status to answer with (``RemoteProtocolError.status``);
   errors the application caused are ``LocalProtocolError`` and are answered with 500 or a reset.
4. End of input is signalled to every core the same way: ``receive_data(b"")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from mypy_extensions import mypyc_attr

Headers = list[tuple[bytes, bytes]]
# Header fields as an application hands them over in ``http.response.start``: any iterable of
# (name, value) pairs, tuples or lists (ASGI). Declared by what is done with them, not as ``Headers``:
# compiled with mypyc, a declared list of tuples is checked at run time (docs/discussion/compiled.md).
AppHeaders = Iterable[Sequence[bytes]]


# Compiled with mypyc (docs/discussion/compiled.md), a class may be subclassed by an interpreted
# one only when it says so: proto/websocket.py's events are interpreted.
@mypyc_attr(allow_interpreted_subclasses=True)
class Event:
    __slots__ = ()


class Request(Event):
    """A complete request head. Body events for it follow until ``EndOfMessage``."""

    __slots__ = (
        "expect_continue",
        "forwarded",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "query_string",
        "raw_path",
        "stream_id",
        "target",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        raw_path: bytes,
        query_string: bytes,
        http_version: str,
        headers: Headers,
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bytes | None,
        stream_id: int = 0,
    ) -> None:
        self.method = method
        self.target = target
        self.raw_path = raw_path
        self.query_string = query_string
        self.http_version = http_version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.upgrade = upgrade
        self.forwarded = False  # the request carries proxy headers (X-Forwarded-*, Forwarded)
        self.stream_id = stream_id  # HTTP/2 stream (0 on HTTP/1.1)

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.http_version!r})"


class Data(Event):
    """A piece of the current message's body (on HTTP/2: of stream ``stream_id``)."""

    __slots__ = ("data", "stream_id")

    def __init__(self, data: bytes, stream_id: int = 0) -> None:
        self.data = data
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage(Event):
    """The current message's body is complete (on HTTP/2: the body of stream ``stream_id``)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int = 0) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return "EndOfMessage()"


END_OF_MESSAGE: Final = EndOfMessage()  # it carries nothing: one instance serves every message


class ConnectionClosed(Event):
    """The peer closed its side (``receive_data(b"")``) between messages."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ConnectionClosed()"


class Rejected(Event):
    """The peer sent something the core will not accept. Nothing after it is parsed.

    ``status`` is the response to send (if a response can still be sent) before closing.
    """

    __slots__ = ("detail", "status", "stream_id")

    def __init__(self, status: int, detail: str, stream_id: int = 0) -> None:
        self.status = status
        self.detail = detail
        self.stream_id = stream_id  # HTTP/2: only this stream is refused (0: the connection)

    def __repr__(self) -> str:
        return f"Rejected({self.status}, {self.detail!r})"


class H2Preface(Event):
    """The connection opened with the HTTP/2 client preface."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class StreamReset(Event):
    """HTTP/2: the peer reset stream ``stream_id`` (RST_STREAM); nothing more comes or goes on it."""

    __slots__ = ("error_code", "stream_id")

    def __init__(self, stream_id: int, error_code: int) -> None:
        self.stream_id = stream_id
        self.error_code = error_code

    def __repr__(self) -> str:
        return f"StreamReset({self.stream_id}, {self.error_code})"


class WindowOpened(Event):
    """HTTP/2: the peer gave more room to send on stream ``stream_id`` (0: on every stream)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id

    def __repr__(self) -> str:
        return f"WindowOpened({self.stream_id})"


class GoAway(Event):
    """HTTP/2: the peer will open no more streams (GOAWAY with NO_ERROR); the open ones go on."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "GoAway()"


class ProtocolError(Exception):
    """Base of every protocol error."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``status`` is the answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class LocalProtocolError(ProtocolError):
    """The application asked for something the protocol cannot carry."""
