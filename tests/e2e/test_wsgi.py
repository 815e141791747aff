"""WSGI applications (PEP 3333) served over real sockets: the environ, ``wsgi.input`` read as the
body arrives, response iterables streamed with backpressure, ``close()``, errors, ``write()``, the
thread pool, and memory that stays flat through 200 MB uploads and downloads."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, exchange, read_response, recv_all

Serve = Callable[..., RunningServer]
StartResponse = Callable[..., Any]
Environ = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
WAIT = 5.0
MB = 1024 * 1024


def environ_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Answers the str-valued CGI and wsgi.* keys of its environ as JSON, after reading the body."""
    body = environ["wsgi.input"].read()
    shown = {k: v for k, v in environ.items() if isinstance(v, str | bool | int | tuple)}
    shown["body"] = body.decode("latin-1")
    data = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def get_json(server: RunningServer, target: str, **kwargs: Any) -> dict[str, Any]:
    response = httpx.request(kwargs.pop("method", "GET"), server.url + target, timeout=WAIT, **kwargs)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# ---------------------------------------------------------------- environ


def test_environ_has_the_pep3333_keys_with_script_name_from_root_path(serve: Serve) -> None:
    """PEP 3333 "environ Variables"; www spec "WSGI Compatibility": SCRIPT_NAME is root_path,
    PATH_INFO is path less root_path."""
    server = serve(environ_app, interface="wsgi", root_path="/mnt", lifespan="off")
    environ = get_json(
        server,
        "/a%20b/c?x=1&y=%41",
        method="POST",
        content=b"payload",
        headers={"content-type": "text/plain", "x-thing": "1", "cookie": "a=1"},
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == "/mnt"
    assert environ["PATH_INFO"] == "/a b/c"
    assert environ["QUERY_STRING"] == "x=1&y=%41"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "7"
    assert environ["HTTP_X_THING"] == "1"
    assert environ["HTTP_COOKIE"] == "a=1"
    assert "HTTP_CONTENT_TYPE" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and int(environ["REMOTE_PORT"]) > 0
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.multithread"] is True and environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["body"] == "payload"


def test_path_info_carries_the_path_bytes_as_latin1(serve: Serve) -> None:
    """PEP 3333 "Unicode Issues": environ strings hold the request's bytes decoded as Latin-1,
    including percent-decoded bytes that are not UTF-8."""
    server = serve(environ_app, interface="wsgi", lifespan="off")
    assert get_json(server, "/caf%C3%A9")["PATH_INFO"] == "/caf\xc3\xa9"
    assert get_json(server, "/caf%E9")["PATH_INFO"] == "/caf\xe9"


def test_repeated_headers_are_joined_and_underscored_names_dropped(serve: Serve) -> None:
    """RFC 9110 §5.3 (a repeated field is one comma-joined list); a name with '_' would map to the
    same HTTP_ key as its '-' twin (X_Forwarded_For spoofing X-Forwarded-For), so it is dropped."""
    server = serve(environ_app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Many: 1\r\nX-Many: 2\r\n"
            b"X_Forwarded_For: 203.0.113.9\r\nConnection: close\r\n\r\n"
        )
        status, _, body = read_response(sock)
    environ = json.loads(body)
    assert status == 200
    assert environ["HTTP_X_MANY"] == "1,2"
    assert "HTTP_X_FORWARDED_FOR" not in environ


# ---------------------------------------------------------------- request body


def test_wsgi_input_is_read_as_the_body_arrives(serve: Serve) -> None:
    """The body is not collected before the app runs: the app reads the first bytes while the
    client has not sent the rest (PEP 3333 wsgi.input; ARCHITECTURE property 4)."""
    got_first = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        first = stream.read(5)
        got_first.set()
        rest = stream.read()
        start_response("200 OK", [("Content-Length", str(len(first + rest)))])
        return [first + rest]

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        assert got_first.wait(WAIT), "the app did not get the first part of the body"
        sock.sendall(b"world")
        assert read_response(sock)[::2] == (200, b"helloworld")


def test_chunked_body_read_by_lines(serve: Serve) -> None:
    """readline(), readlines() and iteration over wsgi.input, on a chunked body whose chunks split
    lines (PEP 3333 "input and error streams")."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        first = stream.readline()
        limited = stream.readline(3)
        rest = list(stream)
        body = json.dumps([first.decode(), limited.decode(), [r.decode() for r in rest]]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\none\n\r\n5\r\ntwo\nt\r\n9\r\nhree\nfour\r\n0\r\n\r\n"
        )
        status, _, body = read_response(sock)
    assert status == 200
    assert json.loads(body) == ["one\n", "two", ["\n", "three\n", "four"]]


def test_client_gone_mid_body_raises_in_wsgi_input(serve: Serve) -> None:
    """A client that leaves before its body is complete: the app's read raises an OSError rather
    than returning a short body as if it were whole, and close() of nothing is owed."""
    raised: list[BaseException] = []
    done = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            raised.append(exc)
            raise
        finally:
            done.set()
        start_response("200 OK", [])
        return []

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\npartial")
    assert done.wait(WAIT)
    assert raised and isinstance(raised[0], OSError)


# ---------------------------------------------------------------- response


class Closing:
    """A response iterable recording close(); ``fail_at`` raises instead of yielding that item."""

    def __init__(self, items: list[bytes], fail_at: int | None = None, gate: threading.Event | None = None):
        self.items = items
        self.fail_at = fail_at
        self.gate = gate
        self.closed = threading.Event()
        self.close_calls = 0

    def __iter__(self) -> Iterator[bytes]:
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("failed while iterating")
            if i == 1 and self.gate is not None:
                assert self.gate.wait(WAIT), "the first piece never reached the client"
            yield item

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


def test_response_iterable_is_streamed_piece_by_piece(serve: Serve) -> None:
    """PEP 3333 "Buffering and Streaming": each piece is sent before the next is asked for; the
    second piece is produced only after the client has read the first."""
    client_got_first = threading.Event()
    iterable = Closing([b"first;", b"second"], gate=client_got_first)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iterable

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(WAIT)
        received = b""
        while b"first;" not in received:
            received += sock.recv(4096)
        client_got_first.set()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(4096)
    assert b"transfer-encoding: chunked" in received
    assert received.endswith(b"6\r\nsecond\r\n0\r\n\r\n")
    assert iterable.closed.wait(WAIT) and iterable.close_calls == 1


def test_close_is_called_after_a_normal_response(serve: Serve) -> None:
    """PEP 3333: close() of the returned iterable is called once the request is done."""
    iterable = Closing([b"a", b"b", b"c"])

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return iterable

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).content == b"abc"
    assert iterable.closed.wait(WAIT) and iterable.close_calls == 1


def test_failure_mid_iteration_cuts_the_response_and_closes(serve: Serve, caplog: Any) -> None:
    """An exception after the first piece was yielded: the status was sent, so the connection is
    cut (no truncated body passes for a whole one); close() is still called and the error logged."""
    caplog.set_level(logging.ERROR, logger="wherry.error")
    iterable = Closing([b"a", b"b", b"c"], fail_at=2)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return iterable

    server = serve(app, interface="wsgi", lifespan="off")
    data = exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) < 3
    assert iterable.closed.wait(WAIT) and iterable.close_calls == 1
    assert any("failed while iterating" in r.getMessage() + str(r.exc_info) for r in caplog.records)


def test_close_is_called_when_the_client_leaves_mid_stream(serve: Serve) -> None:
    """The client goes away while a long response streams: the thread stops producing and close()
    runs (PEP 3333 "the close() method ... upon completion of the request, whether normally or
    early termination")."""
    produced = threading.Event()

    class Endless(Closing):
        def __iter__(self) -> Iterator[bytes]:
            while True:
                produced.set()
                yield b"x" * 65536

    iterable = Endless([])

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return iterable

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert produced.wait(WAIT)
        sock.recv(1000)
    assert iterable.closed.wait(WAIT) and iterable.close_calls == 1


def test_exception_before_start_response_is_a_500(serve: Serve, caplog: Any) -> None:
    """An app that raises before any response: a 500, the traceback in the error log, and the
    connection carries on."""
    caplog.set_level(logging.ERROR, logger="wherry.error")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("boom before start")
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = serve(app, interface="wsgi", lifespan="off")
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        response = client.get("/boom")
        assert response.status_code == 500
        assert response.text == "Internal Server Error\n"
        assert client.get("/").text == "ok"
    assert any(r.exc_info and "boom before start" in str(r.exc_info[1]) for r in caplog.records)


def test_failure_before_the_first_piece_is_a_500_even_after_start_response(serve: Serve) -> None:
    """start_response was called but no body was yielded yet: nothing is committed, so the
    failure is still answered with a 500 (PEP 3333 "Error Handling")."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "3")])
        return Closing([b"abc"], fail_at=0)

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).status_code == 500


def test_exc_info_replaces_the_status_before_the_body(serve: Serve) -> None:
    """PEP 3333 start_response(exc_info): before the headers are sent, the new status and headers
    replace the old ones."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("X-Old", "1")])
        try:
            raise KeyError("missing")
        except KeyError:
            start_response("503 Service Unavailable", [("X-New", "1")], sys.exc_info())
        return [b"sorry"]

    server = serve(app, interface="wsgi", lifespan="off")
    response = httpx.get(server.url, timeout=WAIT)
    assert response.status_code == 503
    assert response.text == "sorry"
    assert "x-new" in response.headers and "x-old" not in response.headers


def test_exc_info_after_the_body_started_reraises(serve: Serve) -> None:
    """PEP 3333: start_response(exc_info) once the headers are sent must re-raise the exception;
    the response is then cut."""
    reraised: list[BaseException] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        yield b"part"
        try:
            raise KeyError("late")
        except KeyError:
            try:
                start_response("500 Internal Server Error", [], sys.exc_info())
            except KeyError as exc:
                reraised.append(exc)
                raise

    server = serve(app, interface="wsgi", lifespan="off")
    data = exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert not data.endswith(b"part" + b"x" * 6)
    assert reraised and reraised[0].args == ("late",)


def test_start_response_twice_without_exc_info_is_an_error(serve: Serve) -> None:
    """PEP 3333: calling start_response again without exc_info is a fatal error: a 500."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).status_code == 500


@pytest.mark.parametrize(
    "bad",
    [
        ("200", [("X", "\u20ac")]),  # a header value beyond Latin-1
        (200, []),  # the status is not a str
        ("OK 200", []),
    ],
)
def test_invalid_start_response_arguments_are_a_500(serve: Serve, bad: tuple[Any, Any]) -> None:
    """PEP 3333 start_response: a str status 'NNN reason' and Latin-1 str headers; anything else is
    the app's error, answered with a 500."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response(*bad)
        return [b"x"]

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).status_code == 500


def test_write_callable_sends_before_returning(serve: Serve) -> None:
    """PEP 3333 "The write() Callable": data passed to write() is sent before it returns, and comes
    before the returned iterable's output."""
    client_got_first = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        assert client_got_first.wait(WAIT), "write() returned before its data was sent"
        return [b"returned"]

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(WAIT)
        received = b""
        while b"written;" not in received:
            received += sock.recv(4096)
        client_got_first.set()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(4096)
    assert b"8\r\nwritten;\r\n8\r\nreturned\r\n0\r\n\r\n" in received


def test_wsgi_errors_lines_go_to_the_error_log(serve: Serve, caplog: Any) -> None:
    """PEP 3333 wsgi.errors: text written there reaches the server's error log, line by line."""
    caplog.set_level(logging.INFO, logger="wherry.error")

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("first line\nsecond ")
        errors.writelines(["line\n", "unterminated"])
        errors.flush()
        start_response("204 No Content", [])
        return []

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).status_code == 204
    lines = [r.getMessage() for r in caplog.records if r.name == "wherry.error"]
    assert lines[-3:] == ["first line", "second line", "unterminated"]


def test_file_wrapper_sends_the_file_and_closes_it(serve: Serve, tmp_path: Path) -> None:
    """PEP 3333 "Optional Platform-Specific File Handling": wsgi.file_wrapper(file, blksize) is an
    iterable of the file's blocks whose close() closes the file."""
    data = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "blob").write_bytes(data)
    opened: list[Any] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        handle = (tmp_path / "blob").open("rb")
        opened.append(handle)
        start_response("200 OK", [("Content-Length", str(len(data)))])
        wrapped: Iterable[bytes] = environ["wsgi.file_wrapper"](handle, 8192)
        return wrapped

    server = serve(app, interface="wsgi", lifespan="off")
    assert httpx.get(server.url, timeout=WAIT).content == data
    server.stop()  # the request is over: close() has run
    assert opened[0].closed


def test_head_request_gets_no_body(serve: Serve) -> None:
    """RFC 9110 §9.3.2: the WSGI app produces a body for HEAD; the server does not send it."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = recv_all(sock)
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"\r\n\r\n")


# ---------------------------------------------------------------- the thread pool


@pytest.mark.parametrize("threads", [1, 2])
def test_wsgi_threads_bounds_the_requests_running_at_once(serve: Serve, threads: int) -> None:
    """--wsgi-threads N: N requests run at once, the next waits for a free thread."""
    entered = [threading.Event(), threading.Event()]
    overlap: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        index = int(environ["PATH_INFO"][1:])
        entered[index].set()
        if index == 0:
            # With one thread the second request cannot start while this one holds it.
            overlap.append(entered[1].wait(WAIT if threads > 1 else 0.3))
        start_response("200 OK", [("Content-Length", "1")])
        return [b"%d" % index]

    server = serve(app, interface="wsgi", wsgi_threads=threads, lifespan="off")
    results: list[str] = []

    def get(index: int) -> None:
        results.append(httpx.get(f"{server.url}/{index}", timeout=WAIT).text)

    first = threading.Thread(target=get, args=(0,))
    first.start()
    assert entered[0].wait(WAIT)
    get(1)
    first.join(WAIT)
    assert sorted(results) == ["0", "1"]
    assert overlap == [threads > 1]


# ---------------------------------------------------------------- backpressure and memory


def test_client_not_reading_stops_the_iterable(serve: Serve) -> None:
    """A client that stops reading a long WSGI response: once the transport is full, the pool
    thread waits in send and the iterable is no longer advanced (backpressure on writes)."""
    progress = [0]
    total = 3200  # 200 MiB in 64 KiB pieces

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(total * 65536))])
        block = b"z" * 65536
        for i in range(total):
            progress[0] = i + 1
            yield block

    server = serve(app, interface="wsgi", lifespan="off")
    with server.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(4096)
        received = len(first) - first.index(b"\r\n\r\n") - 4
        last, still, deadline = -1, 0, time.monotonic() + 10
        while still < 4:  # no progress for 0.4 s: the thread is waiting for the transport
            assert time.monotonic() < deadline, "the iterable never stopped"
            time.sleep(0.1)
            now = progress[0]
            still = still + 1 if now == last else 0
            last = now
        assert last < total // 4, f"{last} pieces produced for a client that reads nothing"
        sock.settimeout(WAIT)
        while received < total * 65536:
            data = sock.recv(1 << 20)
            assert data
            received += len(data)
    assert progress[0] == total


def _vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


@pytest.fixture
def wsgi_process() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``python -m wherry bench.wsgi_apps:app`` (auto-detected as WSGI) on an inherited socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wherry",
            "bench.wsgi_apps:app",
            "--fd",
            str(listener.fileno()),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        pass_fds=[listener.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    listener.close()
    try:
        yield proc, port
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


def test_200mb_upload_and_download_keep_the_server_rss_flat(
    wsgi_process: tuple[subprocess.Popen[bytes], int],
) -> None:
    """A 200 MiB request body read through wsgi.input and a 200 MiB response iterable: the
    server's peak RSS (VmHWM) grows by less than 20 MiB over its size after a warm-up request
    (ARCHITECTURE property 4: bounded memory)."""
    proc, port = wsgi_process
    size = 200 * MB

    def request(head: bytes, upload: int = 0) -> tuple[bytes, int]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(head)
            block = b"u" * (256 * 1024)
            left = upload
            while left > 0:
                sock.sendall(block[: min(left, len(block))])
                left -= len(block)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
            status, _, rest = data.partition(b"\r\n\r\n")
            length = int(status.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            received = len(rest)
            first = rest
            while received < length:
                chunk = sock.recv(1 << 20)
                assert chunk
                received += len(chunk)
            return first[:32] if upload else status[:12], received

    deadline = time.monotonic() + 10
    while True:
        try:
            request(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n", MB)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    request(b"GET /download?1048576 HTTP/1.1\r\nHost: a\r\n\r\n")
    baseline = _vm(proc.pid, "VmRSS")
    body, _ = request(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size, size)
    assert body == b"%d" % size
    _, received = request(b"GET /download?%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
    assert received == size
    growth = _vm(proc.pid, "VmHWM") - baseline
    assert growth < 20 * 1024, f"peak RSS grew by {growth} KiB moving 400 MiB"
