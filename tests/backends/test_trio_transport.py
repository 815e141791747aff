"""The trio transport keeps the transport contract the drivers are written against
(docs/discussion/backends.md), driven by a recording protocol over a real socket pair: what an
HTTP/1.1, HTTP/2 or WebSocket driver relies on, asyncio's guarantees included."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from wherry.backends.trio.runtime import TrioRuntime
from wherry.backends.trio.transport import HIGH_WATER, TrioTransport

WAIT = 5.0


class Recorder:
    """An asyncio-Protocol-shaped object recording every call, with hooks for the test."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.transport: Any = None
        self.changed = trio.Event()
        self.on_data: Callable[[bytes], None] | None = None
        self.keep_open = False

    def _note(self, name: str, value: Any = None) -> None:
        self.events.append((name, value))
        self.changed.set()
        self.changed = trio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._note("made")

    def data_received(self, data: bytes) -> None:
        self._note("data", data)
        if self.on_data is not None:
            self.on_data(data)

    def eof_received(self) -> bool:
        self._note("eof")
        return self.keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        self._note("lost", exc)

    def pause_writing(self) -> None:
        self._note("pause_writing")

    def resume_writing(self) -> None:
        self._note("resume_writing")

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    async def until(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(WAIT):
            while not predicate():
                await self.changed.wait()


def run(
    test: Callable[[Recorder, socket.socket], Awaitable[None]], protocol: Recorder | None = None
) -> Recorder:
    """Serve one end of a socket pair with a TrioTransport and ``protocol``; ``test`` gets the
    other end (a blocking socket, used through trio.to_thread where it waits)."""
    recorder = protocol or Recorder()
    server_end, client_end = socket.socketpair()
    server_end.setblocking(False)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            runtime = TrioRuntime(nursery)
            nursery.start_soon(runtime.run_timers)
            tsock = trio.socket.from_stdlib_socket(server_end)
            transport = TrioTransport(trio.SocketStream(tsock), tsock, server_end, runtime)
            done = trio.Event()

            async def serve() -> None:
                await transport.run(recorder)
                done.set()

            nursery.start_soon(serve)
            await recorder.until(lambda: "made" in recorder.names())
            await test(recorder, client_end)
            with trio.fail_after(WAIT):
                await done.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        client_end.close()
        server_end.close()
    return recorder


def test_bytes_are_delivered_in_order_and_writes_reach_the_peer() -> None:
    """data_received gets what the peer sent; write() sends (at once when the socket takes it)."""

    async def test(rec: Recorder, peer: socket.socket) -> None:
        peer.sendall(b"ping")
        await rec.until(lambda: b"".join(v for n, v in rec.events if n == "data") == b"ping")
        rec.transport.write(b"pong")
        assert await trio.to_thread.run_sync(peer.recv, 10) == b"pong"
        rec.transport.close()

    rec = run(test)
    assert rec.names()[-1] == "lost"
    assert rec.events[-1][1] is None


def test_nothing_is_delivered_while_reading_is_paused() -> None:
    """After pause_reading() no data_received until resume_reading(), even for bytes already read
    from the socket (asyncio's guarantee, which the drivers' flow control relies on)."""

    async def test(rec: Recorder, peer: socket.socket) -> None:
        rec.transport.pause_reading()
        peer.sendall(b"held")
        await trio.sleep(0.1)  # a window for a wrong delivery; nothing to wait for
        assert "data" not in rec.names()
        rec.transport.resume_reading()
        await rec.until(lambda: "data" in rec.names())
        rec.transport.close()

    run(test)


def test_a_peer_that_does_not_read_pauses_writing_until_it_reads() -> None:
    """Past the high-water mark pause_writing() is called once; resume_writing() once the peer has
    read and the queue is under the low-water mark."""
    payload = b"x" * (HIGH_WATER * 8)

    async def test(rec: Recorder, peer: socket.socket) -> None:
        rec.transport.write(payload)
        assert rec.names().count("pause_writing") == 1
        received = 0
        while received < len(payload):
            received += len(await trio.to_thread.run_sync(peer.recv, 1 << 20))
        await rec.until(lambda: "resume_writing" in rec.names())
        rec.transport.close()

    rec = run(test)
    assert rec.names().count("resume_writing") == 1


def test_write_eof_half_closes_and_reading_goes_on() -> None:
    """write_eof() sends FIN after the queued bytes; the peer can still send, and its EOF comes as
    eof_received() (returning True keeps the connection for the answer)."""
    rec = Recorder()
    rec.keep_open = True

    async def test(rec: Recorder, peer: socket.socket) -> None:
        assert rec.transport.can_write_eof()
        rec.transport.write(b"last words")
        rec.transport.write_eof()
        data = b""
        while chunk := await trio.to_thread.run_sync(peer.recv, 100):
            data += chunk
        assert data == b"last words"
        peer.sendall(b"more")
        peer.shutdown(socket.SHUT_WR)
        await rec.until(lambda: "eof" in rec.names())
        assert ("data", b"more") in rec.events
        assert "lost" not in rec.names()  # kept open: the driver closes it
        rec.transport.close()

    run(test, rec)


def test_close_writes_the_queue_first_and_abort_does_not() -> None:
    """close() sends what is queued, then closes; connection_lost(None) comes once, last."""
    payload = b"y" * (HIGH_WATER * 4)

    async def test(rec: Recorder, peer: socket.socket) -> None:
        rec.transport.write(payload)
        rec.transport.close()
        assert rec.transport.is_closing()
        rec.transport.write(b"ignored after close")
        data = b""
        while chunk := await trio.to_thread.run_sync(peer.recv, 1 << 20):
            data += chunk
        assert data == payload

    rec = run(test)
    assert rec.names().count("lost") == 1 and rec.names()[-1] == "lost"


def test_close_with_writing_paused_resumes_writing_once_the_queue_is_written() -> None:
    """After close() the queue is still written, and resume_writing() comes once it is under the
    low-water mark, before connection_lost(), as asyncio and uvloop call it: a driver waiting to
    write learns that its bytes went out. After abort() the queue is dropped and no
    resume_writing() follows."""
    payload = b"z" * (HIGH_WATER * 8)

    async def test(rec: Recorder, peer: socket.socket) -> None:
        rec.transport.write(payload)
        rec.transport.close()
        data = b""
        while chunk := await trio.to_thread.run_sync(peer.recv, 1 << 20):
            data += chunk
        assert data == payload

    closed = run(test)
    assert closed.names()[1:] == ["pause_writing", "resume_writing", "lost"]

    async def aborting(rec: Recorder, peer: socket.socket) -> None:
        rec.transport.write(payload)
        rec.transport.abort()
        while await trio.to_thread.run_sync(peer.recv, 1 << 20):
            pass

    aborted = run(aborting)
    assert aborted.names()[1:] == ["pause_writing", "lost"]


def test_set_protocol_hands_the_connection_over() -> None:
    """set_protocol() (the HTTP/1.1 driver handing over to HTTP/2 or WebSocket): later bytes and
    the end go to the new protocol."""
    successor = Recorder()

    async def test(rec: Recorder, peer: socket.socket) -> None:
        def switch(_data: bytes) -> None:
            rec.transport.set_protocol(successor)
            successor.connection_made(rec.transport)

        rec.on_data = switch
        peer.sendall(b"upgrade")
        await rec.until(lambda: "data" in rec.names())
        assert rec.transport.get_protocol() is successor
        peer.sendall(b"frames")
        await successor.until(lambda: "data" in successor.names())
        rec.transport.abort()

    rec = run(test)
    assert ("data", b"frames") in successor.events
    assert "lost" in successor.names() and "lost" not in rec.names()


def test_extra_info_names_the_peer_and_the_socket() -> None:
    """get_extra_info answers peername, sockname and socket as asyncio does (no TLS here)."""

    async def test(rec: Recorder, peer: socket.socket) -> None:
        transport = rec.transport
        assert transport.get_extra_info("sslcontext") is None
        assert transport.get_extra_info("socket") is not None
        assert transport.get_extra_info("peername") == ""  # a Unix socket pair, like asyncio's
        assert transport.get_extra_info("missing", "default") == "default"
        transport.close()

    run(test)
