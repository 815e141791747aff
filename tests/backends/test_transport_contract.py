"""The transport contract (``wherry.contracts.Transport`` and the callbacks of
docs/discussion/backends.md "The contract"), checked on every transport the connection drivers are
given: asyncio's and uvloop's own transports, plain and over TLS, and ``TrioTransport``, plain and
over TLS, each made the way its backend makes it for an accepted connection.

Each test serves one connection with a recording protocol on an event loop running in a thread of
its own, and plays the peer from the test's thread with a real socket (TLS through a memory BIO,
so the peer can send its close_notify and go on reading). Where a backend differs from the
contract the test asserts the documented difference (the "Differences that remain" section)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import socket
import ssl
import threading
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import trio
import trio.testing

from tests.h2util import Certs, make_certs
from wherry.backends.trio.runtime import TrioRuntime
from wherry.backends.trio.serve import open_transport
from wherry.config import Config
from wherry.contracts import Transport
from wherry.tls import create_tls_context

WAIT = 5.0
HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
# asyncio's TLS transport (and uvloop's, a copy of it) keeps its own marks over the plain
# transport's: it pauses its protocol past 512 KiB of its own queue and resumes it under 128 KiB.
TLS_HIGH_WATER = 512 * 1024
TLS_LOW_WATER = 128 * 1024
SMALL_BUFFER = 8192  # the kernel's buffers on both sides, so that a peer that does not read stalls
CHUNK = b"w" * 10_000


@dataclass(frozen=True)
class Kind:
    loop: str  # asyncio, uvloop or trio
    tls: bool

    @property
    def name(self) -> str:
        return self.loop + ("-tls" if self.tls else "")

    @property
    def loop_tls(self) -> bool:
        """asyncio's TLS transport (uvloop's too): the documented differences."""
        return self.tls and self.loop != "trio"

    @property
    def closing(self) -> list[str]:
        """The calls from close() to connection_lost() once the queue is written and the peer
        answered: resume_writing() (not on uvloop's TLS transport), then eof_received() on
        asyncio's and uvloop's TLS transports, which call it when the peer's close_notify
        completes their shutdown."""
        resume = [] if self.tls and self.loop == "uvloop" else ["resume_writing"]
        return [*resume, *self.after_close]

    @property
    def socket_open_at_lost(self) -> bool:
        """asyncio's and uvloop's plain transports close their socket right after
        connection_lost() returns."""
        return not self.tls and self.loop != "trio"

    @property
    def after_close(self) -> list[str]:
        """What comes between close() and connection_lost() once the peer answered: asyncio's TLS
        transport calls eof_received() when the peer's close_notify completes its shutdown."""
        return ["eof"] if self.loop_tls else []

    @property
    def marks(self) -> tuple[int, int]:
        return (TLS_HIGH_WATER, TLS_LOW_WATER) if self.loop_tls else (HIGH_WATER, LOW_WATER)


KINDS = [Kind(loop, tls) for tls in (False, True) for loop in ("asyncio", "uvloop", "trio")]


class Recorder:
    """An asyncio-Protocol-shaped object recording every call, readable from the test's thread."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.cond = threading.Condition()
        self.transport: Any = None
        self.on_data: Callable[[bytes], None] | None = None
        self.keep_open = False

    def note(self, name: str, value: Any = None) -> None:
        with self.cond:
            self.events.append((name, value))
            self.cond.notify_all()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.note("made")

    def data_received(self, data: bytes) -> None:
        self.note("data", data)
        if self.on_data is not None:
            self.on_data(data)

    def eof_received(self) -> bool:
        self.note("eof")
        return self.keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        sock = self.transport.get_extra_info("socket")
        self.note("lost", (exc, sock is None or sock.fileno() == -1))

    def pause_writing(self) -> None:
        self.note("pause_writing", self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.note("resume_writing", self.transport.get_write_buffer_size())

    def names(self) -> list[str]:
        with self.cond:
            return [name for name, _ in self.events]

    def data(self, after: str | None = None) -> bytes:
        with self.cond:
            events = list(self.events)
        if after is not None:
            events = events[[name for name, _ in events].index(after) + 1 :]
        return b"".join(value for name, value in events if name == "data")

    def value(self, name: str) -> Any:
        with self.cond:
            return next(value for event, value in self.events if event == name)

    def until(self, predicate: Callable[[], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, WAIT):
                pytest.fail(f"no {what} within {WAIT}s: {[name for name, _ in self.events]}")


# ---------------------------------------------------------------------- the server side


class AsyncioSide:
    """asyncio's or uvloop's event loop in a thread, serving as AsyncioBackend serves: a plain
    connection through ``connect_accepted_socket``, TLS through ``create_server(ssl=...)``."""

    def __init__(self, kind: Kind, tls: ssl.SSLContext | None) -> None:
        if kind.loop == "uvloop":
            import uvloop

            self.loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.tls = tls
        self.errors: list[Any] = []
        self.loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.server: asyncio.AbstractServer | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(WAIT)

    def listen(self, listener: socket.socket, protocol: Recorder) -> None:
        if self.tls is not None:
            make = self.loop.create_server(
                lambda: cast(asyncio.Protocol, protocol),
                sock=listener,
                ssl=self.tls,
                ssl_handshake_timeout=WAIT,
            )
            self.server = asyncio.run_coroutine_threadsafe(make, self.loop).result(WAIT)

    def accepted(self, conn: socket.socket, protocol: Recorder) -> None:
        made = self.loop.connect_accepted_socket(lambda: cast(asyncio.Protocol, protocol), conn)
        asyncio.run_coroutine_threadsafe(made, self.loop).result(WAIT)

    def settle(self) -> None:
        """Return once the loop has polled its sockets since the call (three callback turns: a
        readable socket's callback runs in the second at the latest)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def turn(left: int) -> None:
            if left:
                self.loop.call_soon(turn, left - 1)
            else:
                done.set_result(None)

        self.loop.call_soon_threadsafe(turn, 3)
        done.result(WAIT)

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


class TrioSide:
    """A ``trio.run`` in a thread, serving as TrioBackend serves: ``open_transport`` (the
    backend's own construction, the TLS handshake included), then ``TrioTransport.run``."""

    def __init__(self, kind: Kind, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.errors: list[Any] = []
        self.runtime: TrioRuntime | None = None
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.stopped: trio.Event | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=trio.run, args=(self._main, ready), daemon=True)
        self.thread.start()
        assert ready.wait(WAIT)

    async def _main(self, ready: threading.Event) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.runtime = TrioRuntime(nursery)
            self.runtime.report = self.errors.append
            nursery.start_soon(self.runtime.run_timers)
            self.token = trio.lowlevel.current_trio_token()
            self.stopped = trio.Event()
            ready.set()
            await self.stopped.wait()
            nursery.cancel_scope.cancel()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def listen(self, listener: socket.socket, protocol: Recorder) -> None:
        pass

    def accepted(self, conn: socket.socket, protocol: Recorder) -> None:
        async def handle() -> None:
            assert self.runtime is not None
            transport = await open_transport(conn, self.runtime, self.tls, WAIT)
            if transport is None:
                self.errors.append("the TLS handshake failed")
                return
            await transport.run(protocol)

        assert self.nursery is not None
        self.call(self.nursery.start_soon, handle)

    def settle(self) -> None:
        """Return once every task is blocked: a readable socket wakes its reader first."""
        trio.from_thread.run(trio.testing.wait_all_tasks_blocked, trio_token=self.token)

    def stop(self) -> None:
        assert self.stopped is not None
        self.call(self.stopped.set)
        self.thread.join(WAIT)


# ---------------------------------------------------------------------- the peer


class PlainPeer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, size: int = 1 << 16) -> bytes:
        """Bytes from the server; b"" at its end (EOF or reset)."""
        try:
            return self.sock.recv(size)
        except ConnectionResetError:
            return b""

    def shut_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def version(self) -> str | None:
        return None


class TLSPeer(PlainPeer):
    """A TLS client over a memory BIO: it can send its close_notify and still read."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        super().__init__(sock)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self._until(self.obj.do_handshake)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _until(self, operation: Callable[..., Any], *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(1 << 16)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
                continue
            self._flush()
            return result

    def send(self, data: bytes) -> None:
        self._until(self.obj.write, data)

    def recv(self, size: int = 1 << 16) -> bytes:
        """Bytes from the server; b"" at its end, after answering its close_notify with ours, as
        TLS clients do (asyncio's TLS transport waits for it before it closes the socket)."""
        try:
            data: bytes = self._until(self.obj.read, size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError):
            return b""
        if not data:  # the server's close_notify
            self.shut_write()
        return data

    def shut_write(self) -> None:
        """Send close_notify (TLS's half-close), and go on reading."""
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            self.obj.unwrap()
        with contextlib.suppress(OSError):
            self._flush()

    def version(self) -> str | None:
        return self.obj.version()


# ---------------------------------------------------------------------- one served connection


class Connection:
    def __init__(self, kind: Kind, side: AsyncioSide | TrioSide, peer: PlainPeer, rec: Recorder) -> None:
        self.kind = kind
        self.side = side
        self.peer = peer
        self.rec = rec
        self.recorders = [rec]
        self.transport: Any = rec.transport

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the loop's thread (where the transport lives) and return its result."""
        return self.side.call(fn, *args)

    def do(self, method: str, *args: Any) -> Any:
        return self.call(getattr(self.transport, method), *args)

    def fill(self, rec: Recorder | None = None, limit: int = 4 << 20) -> list[int]:
        """Write CHUNK after CHUNK (the peer does not read) until pause_writing; the buffer size
        after each write."""
        watched = rec or self.rec

        def run() -> list[int]:
            sizes: list[int] = []
            while "pause_writing" not in watched.names() and len(sizes) * len(CHUNK) < limit:
                self.transport.write(CHUNK)
                sizes.append(self.transport.get_write_buffer_size())
            return sizes

        sizes: list[int] = self.call(run)
        assert "pause_writing" in watched.names(), f"no pause_writing after {len(sizes) * len(CHUNK)} bytes"
        return sizes

    def read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.peer.recv()
            if not chunk:
                break
            data += chunk
        return data

    def read_to_end(self) -> bytes:
        data = b""
        while chunk := self.peer.recv():
            data += chunk
        return data

    def lost(self) -> Recorder:
        """Wait for connection_lost on whichever protocol gets it; that protocol."""

        def which() -> Recorder | None:
            return next((r for r in self.recorders if "lost" in r.names()), None)

        current = self.recorders[-1]
        current.until(lambda: which() is not None, "connection_lost")
        found = which()
        assert found is not None
        return found


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("contract-certs"))


@pytest.fixture(scope="module")
def server_tls(certs: Certs) -> ssl.SSLContext:
    tls = create_tls_context(Config(ssl_certfile=str(certs.server_file)))
    assert tls is not None
    return tls.context


@pytest.fixture(params=KINDS, ids=[kind.name for kind in KINDS])
def conn(request: pytest.FixtureRequest, certs: Certs, server_tls: ssl.SSLContext) -> Iterator[Connection]:
    kind: Kind = request.param
    tls = server_tls if kind.tls else None
    side: AsyncioSide | TrioSide = TrioSide(kind, tls) if kind.loop == "trio" else AsyncioSide(kind, tls)
    listener = socket.socket()
    raw = socket.socket()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)  # accepted ones inherit it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        rec = Recorder()
        side.listen(listener, rec)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        raw.settimeout(WAIT)
        raw.connect(listener.getsockname())
        if not kind.loop_tls:
            accepted, _ = listener.accept()
            accepted.setblocking(False)
            side.accepted(accepted, rec)
        peer = TLSPeer(raw, certs.client_context(("http/1.1",))) if kind.tls else PlainPeer(raw)
        rec.until(lambda: "made" in rec.names(), "connection_made")
        connection = Connection(kind, side, peer, rec)
        yield connection
        # Every test: connection_lost exactly once, on one protocol, as its last call.
        if not any("lost" in r.names() for r in connection.recorders):
            if not connection.do("is_closing"):
                connection.do("abort")
            connection.read_to_end()
        ended = connection.lost()
        assert sum(r.names().count("lost") for r in connection.recorders) == 1
        assert ended.names()[-1] == "lost"
        assert side.errors == []
    finally:
        side.stop()
        raw.close()
        listener.close()


# ---------------------------------------------------------------------- the contract


def protocol_members(protocol: type) -> set[str]:
    """The names a ``typing.Protocol`` requires (``typing.get_protocol_members`` from 3.13)."""
    get = getattr(typing, "get_protocol_members", None)
    if get is not None:
        return set(get(protocol))
    names: set[str] = set()
    for base in protocol.__mro__:
        if base in (object, typing.Protocol, typing.Generic):
            continue
        names |= {name for name in vars(base) if not name.startswith("_")}
        names |= set(vars(base).get("__annotations__", {}))
    return names


def test_the_transport_has_every_member_of_the_contract(conn: Connection) -> None:
    """Every method of wherry.contracts.Transport exists on the transport and takes its arguments."""
    members = protocol_members(Transport)
    assert "write" in members and "set_protocol" in members and len(members) == 11
    for name in sorted(members):
        method = getattr(conn.transport, name, None)
        assert callable(method), f"{type(conn.transport).__name__} has no {name}()"
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):  # a compiled method that does not describe itself
            continue
        wanted = [p for p in inspect.signature(getattr(Transport, name)).parameters.values()][1:]
        signature.bind(*(object() for p in wanted if p.default is inspect.Parameter.empty))
    conn.do("close")


def test_bytes_are_delivered_in_order(conn: Connection) -> None:
    """data_received() gets the peer's bytes in order, and write() sends the transport's in order."""
    sent = b"".join(b"%06d," % i for i in range(20_000))
    for start in range(0, len(sent), 30_000):
        conn.peer.send(sent[start : start + 30_000])
    conn.rec.until(lambda: len(conn.rec.data()) >= len(sent), "all the bytes")
    assert conn.rec.data() == sent

    def write_all() -> None:
        for start in range(0, len(sent), 7_000):
            conn.transport.write(sent[start : start + 7_000])

    conn.call(write_all)
    assert conn.read(len(sent)) == sent
    conn.do("close")


def test_nothing_is_delivered_while_reading_is_paused(conn: Connection) -> None:
    """No data_received() after pause_reading() until resume_reading(); then all of it, in order."""
    conn.peer.send(b"first")
    conn.rec.until(lambda: conn.rec.data() == b"first", "the first bytes")
    conn.do("pause_reading")
    conn.peer.send(b"held")
    conn.peer.send(b" back")
    conn.side.settle()
    assert conn.rec.data() == b"first"
    conn.do("resume_reading")
    conn.rec.until(lambda: conn.rec.data() == b"firstheld back", "the held bytes")
    conn.do("close")


def test_the_peer_eof_waits_while_reading_is_paused(conn: Connection) -> None:
    """A peer's EOF arriving while reading is paused comes as eof_received() after resume_reading()."""
    conn.peer.send(b"first")
    conn.rec.until(lambda: conn.rec.data() == b"first", "the first bytes")
    conn.do("pause_reading")
    conn.peer.shut_write()
    conn.side.settle()
    assert conn.rec.names() == ["made", "data"]
    conn.do("resume_reading")
    assert conn.lost() is conn.rec
    assert conn.rec.names() == ["made", "data", "eof", "lost"]


def test_peer_half_close_with_eof_received_true_keeps_the_connection_open(conn: Connection) -> None:
    """A true eof_received() keeps the connection open to answer (asyncio's TLS closes anyway)."""
    conn.rec.keep_open = True
    conn.peer.send(b"request")
    conn.peer.shut_write()
    conn.rec.until(lambda: "eof" in conn.rec.names(), "eof_received")
    assert conn.rec.names()[1:3] == ["data", "eof"] and conn.rec.data() == b"request"
    if conn.kind.loop_tls:
        conn.lost()
        assert conn.read_to_end() == b""
        return
    conn.side.settle()
    assert "lost" not in conn.rec.names()
    assert not conn.do("is_closing")
    conn.do("write", b"answer")
    assert conn.read(6) == b"answer"
    conn.do("close")
    assert conn.read_to_end() == b""


def test_peer_half_close_with_eof_received_false_closes(conn: Connection) -> None:
    """A false eof_received() closes the transport: connection_lost() follows, the peer sees the end."""
    conn.peer.send(b"request")
    conn.peer.shut_write()
    assert conn.lost() is conn.rec
    assert conn.rec.names() == ["made", "data", "eof", "lost"]
    assert conn.read_to_end() == b""


def test_write_eof_half_closes(conn: Connection) -> None:
    """write_eof() sends the end after the queue and reading goes on; over TLS can_write_eof() is false."""
    if conn.kind.tls:
        assert conn.do("can_write_eof") is False
        with pytest.raises(NotImplementedError):
            conn.do("write_eof")
        conn.do("close")
        return
    assert conn.do("can_write_eof") is True

    def last_words() -> None:
        conn.transport.write(b"last words")
        conn.transport.write_eof()

    conn.call(last_words)
    assert conn.read_to_end() == b"last words"
    conn.peer.send(b"more")
    conn.rec.until(lambda: conn.rec.data() == b"more", "the bytes after write_eof")
    assert "lost" not in conn.rec.names()
    conn.do("close")


def test_close_writes_the_queue_then_connection_lost_once(conn: Connection) -> None:
    """close() writes the queue, then closes; connection_lost(None) comes once, last."""
    sizes = conn.fill()

    def close() -> bool:
        conn.transport.close()
        return bool(conn.transport.is_closing())

    assert sizes[-1] > 0 and conn.call(close)
    assert conn.read_to_end() == CHUNK * len(sizes)
    assert conn.lost() is conn.rec
    assert conn.rec.names()[1:] == ["pause_writing", *conn.kind.closing, "lost"]
    exc, socket_closed = conn.rec.value("lost")
    assert exc is None
    assert socket_closed is not conn.kind.socket_open_at_lost


def test_nothing_is_delivered_after_close(conn: Connection) -> None:
    """Bytes arriving after close(), while the queue is still written, are not delivered."""
    conn.fill()

    def close() -> None:
        conn.transport.close()
        conn.rec.note("closed")

    conn.call(close)
    conn.peer.send(b"too late")
    conn.side.settle()
    assert conn.rec.data(after="closed") == b""
    conn.read_to_end()
    conn.lost()
    assert conn.rec.data(after="closed") == b""


def test_abort_drops_the_queue_then_connection_lost_once(conn: Connection) -> None:
    """abort() drops the queue and closes at once; connection_lost(None) comes once."""
    sizes = conn.fill()

    def abort() -> int:
        queued = conn.transport.get_write_buffer_size()
        conn.transport.abort()
        return int(queued)

    assert conn.call(abort) > 0
    assert conn.lost() is conn.rec
    received = len(conn.read_to_end())
    assert received < len(sizes) * len(CHUNK)
    assert conn.rec.value("lost")[0] is None


def test_pause_writing_past_the_high_water_mark_and_resume_once_read(conn: Connection) -> None:
    """pause_writing() past the high-water mark; resume_writing() under the low one once the peer reads."""
    high, low = conn.kind.marks
    sizes = conn.fill()
    assert conn.rec.names().count("pause_writing") == 1
    assert conn.rec.value("pause_writing") >= high
    assert len(sizes) == 1 or sizes[-2] <= high
    assert conn.read(len(sizes) * len(CHUNK)) == CHUNK * len(sizes)
    conn.rec.until(lambda: "resume_writing" in conn.rec.names(), "resume_writing")
    assert conn.rec.value("resume_writing") <= low
    assert conn.rec.names()[1:] == ["pause_writing", "resume_writing"]
    conn.do("close")


def test_resume_writing_comes_after_close_too(conn: Connection) -> None:
    """After close() resume_writing() comes before connection_lost() (not on uvloop's TLS transport)."""
    sizes = conn.fill()
    conn.do("close")
    assert conn.read_to_end() == CHUNK * len(sizes)
    conn.lost()
    assert conn.rec.names()[1:] == ["pause_writing", *conn.kind.closing, "lost"]


def test_no_resume_writing_after_abort(conn: Connection) -> None:
    """After abort() the queue is dropped: connection_lost() follows and no resume_writing()."""
    conn.fill()
    conn.do("abort")
    conn.read_to_end()
    conn.lost()
    conn.side.settle()
    assert conn.rec.names()[1:] == ["pause_writing", "lost"]


def test_write_buffer_size_grows_while_the_peer_does_not_read(conn: Connection) -> None:
    """get_write_buffer_size() grows with each write the kernel cannot take while the peer does not read."""
    high, _ = conn.kind.marks
    sizes = [
        conn.do("write", CHUNK) or conn.do("get_write_buffer_size") for _ in range(3 * high // len(CHUNK))
    ]
    written = len(sizes) * len(CHUNK)
    assert sizes[-1] >= written - high // 2, sizes
    assert sizes[-1] > sizes[len(sizes) // 2] > 0
    assert conn.read(written) == CHUNK * len(sizes)
    conn.rec.until(lambda: "resume_writing" in conn.rec.names(), "resume_writing")
    conn.do("close")


def test_set_protocol_sends_later_callbacks_to_the_new_protocol(conn: Connection) -> None:
    """After set_protocol() every later call (data, writing pauses, the end) goes to the new protocol."""
    successor = Recorder()
    successor.transport = conn.transport

    def switch(_data: bytes) -> None:
        conn.transport.set_protocol(successor)
        conn.rec.on_data = None

    conn.rec.on_data = switch
    conn.recorders.append(successor)
    conn.peer.send(b"upgrade")
    conn.rec.until(lambda: "data" in conn.rec.names(), "the first bytes")
    conn.peer.send(b"frames")
    successor.until(lambda: successor.data() == b"frames", "the bytes after set_protocol")
    sizes = conn.fill(successor)
    assert conn.read(len(sizes) * len(CHUNK)) == CHUNK * len(sizes)
    successor.until(lambda: "resume_writing" in successor.names(), "resume_writing")
    conn.do("close")
    conn.read_to_end()
    assert conn.lost() is successor
    assert conn.rec.names() == ["made", "data"]
    assert successor.names() == ["data", "pause_writing", "resume_writing", *conn.kind.after_close, "lost"]


def test_extra_info_names_the_sockets_and_the_tls_session(conn: Connection) -> None:
    """peername, sockname and socket match the sockets; sslcontext and ssl_object are there over TLS only."""
    raw = conn.peer.sock
    info = conn.call(
        lambda: {
            name: conn.transport.get_extra_info(name)
            for name in ("peername", "sockname", "socket", "sslcontext", "ssl_object")
        }
    )
    assert info["peername"] == raw.getsockname()
    assert info["sockname"] == raw.getpeername()
    assert info["socket"].getsockname() == raw.getpeername()
    assert info["socket"].getpeername() == raw.getsockname()
    assert conn.do("get_extra_info", "no such thing", "default") == "default"
    if conn.kind.tls:
        assert isinstance(info["sslcontext"], ssl.SSLContext)
        assert info["ssl_object"].version() == conn.peer.version()
    else:
        assert info["sslcontext"] is None and info["ssl_object"] is None
    conn.do("close")


def test_is_closing_after_close(conn: Connection) -> None:
    """is_closing() is false while the connection is open and true from close() on."""
    assert conn.do("is_closing") is False

    def close() -> bool:
        conn.transport.close()
        return bool(conn.transport.is_closing())

    assert conn.call(close) is True
    conn.read_to_end()
    conn.lost()
    assert conn.do("is_closing") is True
