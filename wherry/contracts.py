"""Every seam between the layers, written down in one place as ``typing.Protocol`` classes.

Wherry is a sans-IO protocol core (``wherry.proto``), the ASGI rules (``wherry.asgi``), one
connection driver per protocol (``wherry.connection``) and a backend per event loop
(``wherry.backends``). They meet at these contracts; nothing else crosses a layer.

Rules of this module:

1. Types only. Nothing here runs on the hot path: a backend's transport is called directly by the
   drivers, never through an adapter. The Protocols say what must exist; mypy checks every driver
   and backend against them.
2. This module imports nothing of Wherry. It is the floor the other layers stand on.
3. The contracts of the ASGI side stay beside the cycles that use them (``HTTPStream`` in
   ``wherry/asgi/http.py``, ``WebSocketStream`` in ``wherry/asgi/websocket.py``): each names its
   cycle class in its method signatures. So does the one seam inside the driver layer: the
   ``Carrier`` of a WebSocket (``wherry/connection/websocket.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, BinaryIO, Protocol

# ASGI's own types (the www spec's names).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnDone = Callable[[BaseException | None], None]


class FutureLike(Protocol):
    """What the drivers and cycles wait on: an asyncio future, or the trio backend's."""

    def done(self) -> bool: ...

    def set_result(self, result: None) -> None: ...

    def __await__(self) -> Any: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...

    def when(self) -> float: ...


class Transport(Protocol):
    """One connection's byte stream, as a backend gives it to a driver (asyncio's own transport
    object on asyncio and uvloop; ``TrioTransport`` on trio; ``AddressedTransport`` behind the
    PROXY protocol).

    ``write`` never blocks: it buffers, and past the high-water mark the backend calls the
    driver's ``pause_writing`` (and ``resume_writing`` once the buffer drained). ``close`` sends
    what is buffered, then closes; ``abort`` drops it and resets. ``set_protocol`` points the
    transport's callbacks at another driver (ALPN, h2c, WebSocket hand-overs)."""

    def write(self, data: bytes) -> None: ...

    def write_eof(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...

    def is_closing(self) -> bool: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``sslcontext``, ``ssl_object``, ``socket``."""
        ...

    def set_protocol(self, protocol: Any) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class TransportCallbacks(Protocol):
    """What a backend calls on the driver of a connection (asyncio's ``Protocol`` names: on
    asyncio and uvloop the loop calls the driver directly)."""

    def connection_made(self, transport: Any) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: BaseException | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class TrackedConnection(Protocol):
    """What the server keeps of each open connection, for shutdown."""

    def shutdown(self) -> None:
        """Graceful shutdown: finish what is in flight, then close."""

    def abort_all(self) -> None:
        """The graceful period is over: cut the connection."""


class Runtime(Protocol):
    """The small contract a backend offers the connection drivers (docs/discussion/backends.md).

    ``run_app`` starts one application call. Its guarantees, on every backend: the call starts
    before ``run_app`` returns or, while other calls wait to resume, right after them (an app
    woken from a wait is never overtaken by a newly parsed request); ``on_done`` is called exactly
    once, with the exception the app raised or None; a call is never cancelled by its driver (a
    peer that goes away is reported to the app through its ``receive``)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...

    def after_io(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon, after the input that is already waiting has been delivered
        (a deadline that fires after the loop stalled judges only input that was really late)."""
        ...

    def create_future(self) -> FutureLike: ...

    def run_app(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, on_done: OnDone) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> object: ...

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        """Send ``count`` bytes of ``file`` from ``offset`` through the kernel (``os.sendfile``);
        False, with nothing sent, where this transport or loop cannot (TLS, trio, uvloop)."""
        ...
