"""Backpressure over real sockets: an app that does not read its request body stops the server
reading, and a client that does not read its response stops the app's send() (ARCHITECTURE property
4; RFC 9112 §9.3 leaves both to the server)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps import Release
from tests.conftest import RunningServer
from tests.e2e.test_bad_input import read_responses
from tests.procs import wait_until

Serve = Callable[..., RunningServer]

MB = 1024 * 1024


class HeldReader:
    """An app that does not call receive() until released, then reads the whole body."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = Release()
        self.received = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.release.arm()  # before the test thread hears "entered" and opens it
        self.entered.set()
        await self.release.wait()
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            self.received += len(message["body"])
            if not message["more_body"]:
                break
        body = b"%d" % self.received
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def open(self) -> None:
        self.release.open()


def test_unread_request_body_pauses_reading(serve: Serve) -> None:
    """While the app does not read, the server stops reading the request body: the client can push
    only what the kernel buffers hold, far below the 50 MB it tries to send; once the app reads, all
    arrives."""
    app = HeldReader()
    server = serve(app, lifespan="off")
    size = 50 * MB
    chunk = b"u" * 65536
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        assert app.entered.wait(3)
        sock.settimeout(0.3)
        sent = 0
        while sent < size:
            try:
                sent += sock.send(chunk[: size - sent])
            except TimeoutError:
                break  # blocked for 0.3 s: every buffer on the way is full
        assert sent < 8 * MB, f"the server kept reading: {sent} bytes accepted"
        app.open()
        sock.settimeout(10)
        while sent < size:
            sent += sock.send(chunk[: size - sent])
        assert read_responses(sock, 1, timeout=10) == [(200, b"%d" % size)]
    assert app.received == size


STREAMER = """
import os

PROGRESS = {progress!r}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    count = 16 if scope["path"] == "/warm" else 3200  # 1 MiB or 200 MiB in 64 KiB chunks
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    fd = os.open(PROGRESS, os.O_WRONLY | os.O_CREAT)
    try:
        for i in range(count):
            body = bytes([97 + i % 26]) * 65536
            await send({{"type": "http.response.body", "body": body, "more_body": True}})
            os.pwrite(fd, b"%12d" % (i + 1), 0)
        await send({{"type": "http.response.body", "body": b""}})
    finally:
        os.close(fd)
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_progress(path: Path) -> int:
    text = path.read_bytes().strip() if path.exists() else b""
    return int(text) if text else 0


@pytest.fixture
def streamer(tmp_path: Path, loop_name: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``python -m wherry`` serving the streaming app on an inherited listening socket."""
    progress = tmp_path / "progress"
    (tmp_path / "streamer.py").write_text(STREAMER.format(progress=str(progress)))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wherry",
            "streamer:app",
            "--app-dir",
            str(tmp_path),
            "--fd",
            str(listener.fileno()),
            "--lifespan",
            "off",
            "--loop",
            loop_name,
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        pass_fds=[listener.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    listener.close()
    try:
        yield proc, port, progress
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def get(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    return sock


def test_unread_response_makes_send_wait(
    streamer: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    """A client that never reads a 200 MB streamed response: the app's send() waits once the
    transport is full and the server's memory grows by less than 10 MB (backpressure on writes)."""
    proc, port, progress = streamer
    with get(port, "/warm") as sock:  # imports and first-request allocations happen here
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data
            received += data
    baseline = rss_kib(proc.pid)
    with get(port, "/big") as sock:
        sock.recv(4096)  # the head and a little body, then nothing more
        last, still, deadline = -1, 0, time.monotonic() + 10
        while still < 4:  # the app's progress has not moved for 0.4 s: its send() is waiting
            assert time.monotonic() < deadline, "the app never stopped sending"
            time.sleep(0.1)
            now = read_progress(progress)
            still = still + 1 if now == last and now > 0 else 0
            last = now
        growth = rss_kib(proc.pid) - baseline
        assert last < 3200, "the whole response went out to a client that reads nothing"
        assert growth < 10 * 1024, f"RSS grew by {growth} KiB with {last * 64} KiB sent by the app"
    assert proc.poll() is None


async def early_answer(scope: Any, receive: Any, send: Any) -> None:
    """Refuses uploads without reading them (as an auth check would); answers GETs normally."""
    status = 401 if scope["method"] == "POST" else 200
    headers = [(b"content-length", b"4")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"nope" if status == 401 else b"fine"})


def test_body_after_an_early_response_is_drained(serve: Serve) -> None:
    """An app that answers before reading a large upload: the rest of the body is read and dropped
    (not buffered, not stalled), the upload completes and the connection carries the next request
    (RFC 9112 §9.3; RFC 9110 §10.1.1)."""
    server = serve(early_answer, lifespan="off", timeout_request_body=2)
    size = 20 * MB
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
        assert read_responses(sock, 1) == [(401, b"nope")]
        sock.settimeout(5)
        sock.sendall(b"u" * size)  # would block for ever if the server stopped reading
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_responses(sock, 1) == [(200, b"fine")]


def test_closing_after_an_early_answer_does_not_lose_it(serve: Serve) -> None:
    """An app answers an upload it will not read with a large ``connection: close`` response: the
    server closes in stages, so the client, still uploading, reads the whole answer rather than a
    reset (RFC 9112 §9.6)."""
    answer = bytes(range(256)) * (16 * 1024)  # 4 MiB

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [(b"content-length", b"%d" % len(answer)), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    server = serve(app, lifespan="off")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # a slow, small reader
        sock.connect((server.host, server.port))
        size = 1024 * MB  # more than the server drains while the answer is being read
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)

        def upload() -> None:
            chunk, sent = b"u" * (256 * 1024), 0
            try:
                while sent < size:
                    sent += sock.send(chunk[: size - sent])
            except OSError:
                pass  # the server closed; all that matters is what the client read

        uploader = threading.Thread(target=upload, daemon=True)
        uploader.start()
        received = b""
        sock.settimeout(5)
        try:
            while True:
                data = sock.recv(16 * 1024)
                if not data:
                    break
                received += data
                time.sleep(0.0005)  # a slow reader: the answer waits in the server's buffers
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert len(body) == len(answer), f"{len(body)} of {len(answer)} bytes before the close"
    assert body == answer


class Streamer:
    """Streams 64 KiB pieces until send() fails; records that it did."""

    def __init__(self, pieces: int | None = None) -> None:
        self.pieces = pieces
        self.cut = threading.Event()
        self.finished = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/octet-stream")]
        if scope["path"] == "/close":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        sent = 0
        try:
            while self.pieces is None or sent < self.pieces:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                sent += 1
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            self.cut.set()
            raise
        self.finished.set()


def small_receiver(server: RunningServer) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((server.host, server.port))
    return sock


def connections_of(server: RunningServer) -> set[Any]:
    backend = server.server._backend
    assert backend is not None and backend.ctx is not None
    return backend.ctx.connections


def test_a_client_that_reads_nothing_is_cut_after_timeout_send(serve: Serve) -> None:
    """Output waiting for a client that reads nothing has a deadline (--timeout-send): the
    connection is cut and the app's send() raises OSError, instead of holding both for ever."""
    app = Streamer()
    server = serve(app, timeout_send=0.3)
    with small_receiver(server) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        assert app.cut.wait(10), "the stalled response was never cut"
        wait_until(lambda: not connections_of(server), 5, "the connection to go")


def test_a_closed_connection_whose_client_reads_nothing_is_cut(serve: Serve) -> None:
    """A response that ends with connection: close while the client reads nothing: the close
    waits for the buffered bytes at most --timeout-send, then the connection is cut."""
    app = Streamer(pieces=8)  # 512 KiB: more than the socket buffers take, less than the transport's mark
    server = serve(app, timeout_send=0.3)
    with small_receiver(server) as sock:
        sock.sendall(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
        assert app.finished.wait(10) or app.cut.wait(10)
        wait_until(lambda: not connections_of(server), 10, "the closed connection to go")
