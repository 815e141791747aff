"""The life of a connection, written once for every driver (HTTP/1.1, HTTP/2, WebSocket).

Rules of this module:

1. ``ConnectionInfo`` is who is at each end of a connection: the addresses, the scheme, whether
   its peer's proxy headers are believed, the ASGI ``tls`` extension. It is made once, when the
   connection is made, and handed on whole when another driver takes the connection over (h2c,
   the HTTP/2 preface, a WebSocket Upgrade).
2. ``DeadlineTimer`` is the one timer of a connection. The driver tells it the next deadline after
   each step (``follow``); the timer moves only when the deadline comes earlier than it would
   fire, so most steps cost one comparison. When it fires, the verdict waits for the input that
   already arrived (``Runtime.after_io``): a loop that stalled does not turn a request that came
   in time into a timeout. Only then is the driver's ``deadline_passed(now)`` called, if the
   deadline (asked again) has really passed.
3. ``WriteGate`` is write backpressure: while the transport is paused ``drain()`` waits, and a
   peer that reads nothing for ``--timeout-send`` gets its connection cut (the driver's
   ``write_stalled``).
4. Closing while the peer may still be sending is done in stages (RFC 9112 §9.6): half-close
   (``half_close``), drop what still arrives for at most ``LINGER`` seconds, then close, so that a
   reset does not destroy the last answer before the client has read it.
5. Nothing here runs per byte or per request: only on connection, timer, pause and close events
   (``follow`` is the exception, and it is one comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..contracts import FutureLike, Runtime, TimerHandle, Transport

if TYPE_CHECKING:
    from .context import ServerContext

# Seconds a closing connection keeps dropping input so its last answer is read. Not ``Final``:
# a test shortens it, and compiled code inlines a Final constant where it is used.
LINGER = 2.0


class ConnectionInfo:
    """Who is at each end of one connection (rule 1)."""

    __slots__ = ("client", "scheme", "server", "tls", "trusted")

    def __init__(
        self,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        scheme: str,
        trusted: bool,
        tls: dict[str, Any] | None,
    ) -> None:
        self.client = client  # the peer; None over a Unix socket
        self.server = server  # (host, port), or (path, None) over a Unix socket
        self.scheme = scheme  # "http" or "https"
        self.trusted = trusted  # proxy headers from this peer are believed
        self.tls = tls  # the ASGI tls scope extension; None on plain TCP


Addresses = tuple[tuple[str, int] | None, tuple[str, int | None] | None]
"""The scope's ``client`` and ``server`` of a connection."""


def addresses(transport: Transport) -> Addresses:
    """The scope's ``client`` and ``server`` of a connection, from its transport's own addresses."""
    return address_pair(transport.get_extra_info("peername"), transport.get_extra_info("sockname"))


def address_pair(peer: Any, sock: Any) -> Addresses:
    """The scope's ``client`` and ``server`` of a connection whose ends are ``peer`` and ``sock``
    (socket addresses): (host, port) over TCP; no client and (path, None) as the server over a
    Unix socket."""
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
    server: tuple[str, int | None] | None = None
    if isinstance(sock, tuple) and len(sock) >= 2:
        server = (str(sock[0]), int(sock[1]))
    elif isinstance(sock, str) and sock:
        server = (sock, None)
    else:
        return client, server
    # The few addresses a server listens on are shared by its connections: one tuple each, not
    # one per connection (about 130 bytes of an idle connection).
    # (Any: compiled, a value narrowed to a tuple is unboxed, and boxed anew when returned.)
    known: Any = _servers.get(server)
    if known is not None:
        return client, known
    if len(_servers) < _SERVERS_KEPT:
        _servers[server] = server
    return client, server


_SERVERS_KEPT: Final = 64
_servers: dict[object, object] = {}


def buffered(transport: Transport) -> int:
    """Bytes a transport still holds for the peer (0 when it cannot say)."""
    try:
        return int(transport.get_write_buffer_size())
    except NotImplementedError:
        return 0


def half_close(transport: Transport, peer_done: bool) -> bool:
    """End the server's sending side and keep reading (rule 4); False where that is not possible or
    not needed (the peer already closed its side: nothing more can arrive), and a plain close is
    due instead."""
    if peer_done:
        return False
    try:
        if not transport.can_write_eof() or transport.is_closing():
            return False
        transport.write_eof()
    except (NotImplementedError, OSError):  # (OSError: the peer is already gone)
        return False
    return True


def linger(runtime: Runtime, then: Callable[[], None]) -> TimerHandle:
    """The end of a half-closed connection's lingering (rule 4): ``then`` in ``LINGER`` seconds."""
    return runtime.call_at(runtime.time() + LINGER, then)


class Timed(Protocol):
    """A driver as its ``DeadlineTimer`` and ``WriteGate`` see it. They hold the driver itself, not
    bound methods of it: an idle connection keeps one object fewer per callback (about 70 bytes
    each, ``docs/discussion/performance.md``)."""

    def next_deadline(self) -> float | None:
        """The connection's next deadline (None: there is none); asked again when the timer fires."""

    def deadline_passed(self, now: float) -> None:
        """A deadline has really passed (asked again after the input already there was read)."""

    def write_stalled(self) -> None:
        """The peer read nothing for ``--timeout-send`` while output waited."""


class DeadlineTimer:
    """The one timer of a connection, following its next deadline (rule 2)."""

    __slots__ = ("_driver", "_following", "_handle", "_runtime", "_stopped")

    def __init__(self, runtime: Runtime, driver: Timed) -> None:
        self._runtime = runtime
        self._driver = driver
        self._handle: TimerHandle | None = None
        # False while judging (fired: judged once the input already there is read, which asks the
        # deadline again) and once stopped (the connection is closing: no deadline applies).
        self._following = True
        self._stopped = False

    def follow(self, deadline: float | None) -> None:
        """The connection's next deadline is now ``deadline`` (None: there is none). Nothing to do
        while judging: the judgement asks the deadline again, and follows it if it has not passed."""
        if deadline is None or not self._following:
            return
        handle = self._handle
        if handle is None:
            self._handle = self._runtime.call_at(deadline, self)
        elif handle.when() > deadline:
            # A timer that fires early re-arms for the later deadline then: only an earlier
            # deadline moves it.
            handle.cancel()
            self._handle = self._runtime.call_at(deadline, self)

    def refresh(self) -> None:
        """Follow the deadline the connection reports now."""
        self.follow(self._driver.next_deadline())

    @property
    def armed(self) -> bool:
        return self._handle is not None

    def stop(self) -> None:
        """The connection is closing: no deadline applies any more."""
        self._stopped = True
        self._following = False
        handle = self._handle
        if handle is not None:
            handle.cancel()
            self._handle = None

    def __call__(self) -> None:
        # The timer is its own callback: a bound method would be one more object per connection.
        # (Armed only while following: follow arms nothing otherwise, and stop cancels.)
        self._handle = None
        deadline = self._driver.next_deadline()
        if deadline is None:
            return
        if self._runtime.time() < deadline:
            self.follow(deadline)
            return
        self._following = False
        self._runtime.after_io(self._judge)

    def _judge(self) -> None:
        if self._stopped:
            return
        self._following = True
        deadline = self._driver.next_deadline()
        if deadline is None:
            return
        now = self._runtime.time()
        if now < deadline:
            self.follow(deadline)  # the input that was waiting moved the deadline
            return
        self._driver.deadline_passed(now)


class WriteGate:
    """Write backpressure of one connection (rule 3). The driver keeps its own ``write_paused``
    flag (read by the ASGI cycles on every ``send``); the gate holds the waiters and the stall
    timer."""

    __slots__ = ("_ctx", "_driver", "_stall", "_waiter")

    def __init__(self, ctx: ServerContext, driver: Timed) -> None:
        self._ctx = ctx
        self._driver = driver  # told when the peer read nothing for --timeout-send
        self._stall: TimerHandle | None = None
        self._waiter: FutureLike | None = None

    def paused(self) -> None:
        """The transport holds too much: output waits, and the stall clock runs (also for what a
        closing connection still holds)."""
        if self._stall is None:
            self._stall = self._ctx.write_deadline(self._stalled)

    def resumed(self) -> None:
        """The peer read: writing goes on."""
        self._cancel()
        self.wake()

    def ended(self) -> None:
        """The connection is gone: nothing waits any more."""
        self._cancel()
        self.wake()

    async def wait(self) -> None:
        """Wait until ``resumed`` or ``ended`` (the caller checks why it woke)."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self._ctx.runtime.create_future()
        await waiter

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _cancel(self) -> None:
        stall = self._stall
        if stall is not None:
            stall.cancel()
            self._stall = None

    def _stalled(self) -> None:
        self._stall = None
        self._driver.write_stalled()
