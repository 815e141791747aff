"""Bad input end to end: every malformed request gets its status, ``connection: close``, a short
text body and then the close, over a real socket; it never reaches the app, never lets a request
smuggled behind it through, and never takes the server down (RFC 9112; the smuggling cases name
the advisory they come from)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer, exchange

SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

Serve = Callable[..., RunningServer]


class Recorder:
    """An app that records every call and every message it receives, then answers 200 'ok'."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.got_body = threading.Event()
        self.finished = threading.Event()
        self.delay = delay

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.serve(scope, receive, send)
        finally:
            self.finished.set()

    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.calls.append((scope["method"], scope["path"]))
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if message.get("body"):
                self.got_body.set()
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        if self.delay:
            await anyio.sleep(self.delay)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % (len(body) + 2))],
            }
        )
        await send({"type": "http.response.body", "body": b"ok" + body})


def read_until_close(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends, and whether it closed the connection within ``timeout``."""
    end = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return b"".join(chunks), False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not data:
            return b"".join(chunks), True
        chunks.append(data)


def talk(server: RunningServer, data: bytes, half_close: bool = False) -> tuple[bytes, bool]:
    with server.connect() as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_until_close(sock)


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes, bytes]:
    """One Content-Length response off the front of ``data``: status, headers, body, the rest."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, code, _ = lines[0].split(" ", 2)
    assert version == "HTTP/1.1"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        assert name.lower() not in headers, f"repeated {name} in {head!r}"
        headers[name.lower()] = value.strip()
    length = int(headers["content-length"])
    assert len(rest) >= length, f"short body in {data!r}"
    return int(code), headers, rest[:length], rest[length:]


def read_responses(sock: socket.socket, count: int, timeout: float = 3.0) -> list[tuple[int, bytes]]:
    """Read ``count`` pipelined Content-Length responses: (status, body) each."""
    sock.settimeout(timeout)
    buf = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        try:
            code, _, body, rest = split_response(buf)
        except (AssertionError, KeyError):
            data = sock.recv(65536)
            assert data, f"closed after {len(out)} responses: {buf!r}"
            buf += data
            continue
        out.append((code, body))
        buf = rest
    assert buf == b""
    return out


def assert_error_reply(data: bytes, closed: bool, status: int) -> None:
    """A status line with ``status``, connection: close, a short text/plain body, then the close."""
    assert data, "empty reply"
    assert closed, f"the server did not close after {data!r}"
    code, headers, body, rest = split_response(data)
    assert code == status, data
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("text/plain")
    assert 0 < len(body) < 200
    assert rest == b"", f"something followed the error response: {rest!r}"


def case(name: str, data: bytes, status: int, smuggle: bool = True, **options: Any) -> Any:
    return pytest.param(data + (SMUGGLED if smuggle else b""), status, options, id=name)


def get(*fields: bytes, line: bytes = b"GET / HTTP/1.1") -> bytes:
    """A request head with ``Host: a`` and ``fields``."""
    return line + b"\r\nHost: a\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


def post(*fields: bytes, body: bytes = b"") -> bytes:
    return get(*fields, line=b"POST / HTTP/1.1") + body


TE = b"Transfer-Encoding: "
CL = b"Content-Length: "
END = b"0\r\n\r\n"

# Everything in one segment, with ``GET /admin`` right behind it.
BAD_REQUESTS = [
    # Body framing (RFC 9112 §6)
    case(
        "CL and TE together (RFC 9112 §6.1; CVE-2024-6827)", post(CL + b"5", TE + b"chunked", body=END), 400
    ),
    case(
        "conflicting duplicate Content-Length (RFC 9112 §6.3)",
        post(CL + b"5", CL + b"6", body=b"hello!"),
        400,
    ),
    case("non-numeric Content-Length", post(CL + b"abc"), 400),
    case("signed Content-Length", post(CL + b"+5", body=b"hello"), 400),
    case("negative Content-Length", post(CL + b"-5"), 400),
    case("huge Content-Length (h11 #181)", post(CL + b"9" * 40), 400),
    case("Content-Length list form", post(CL + b"5, 5", body=b"hello"), 400),
    case("Content-Length in hex", post(CL + b"0x5", body=b"hello"), 400),
    case("chunk-size overflow", CHUNKED_HEAD + b"f" * 20 + b"\r\nab\r\n" + END, 400),
    case("chunk-size junk", CHUNKED_HEAD + b"zz\r\nab\r\n" + END, 400),
    case("chunk-size -1", CHUNKED_HEAD + b"-1\r\nab\r\n" + END, 400),
    case("chunk-size 0x10", CHUNKED_HEAD + b"0x10\r\n0123456789abcdef\r\n" + END, 400),
    case("NUL in the chunk size", CHUNKED_HEAD + b"10\x00\r\n0123456789abcdef\r\n" + END, 400),
    case("chunk data without CRLF (CVE-2025-43859)", CHUNKED_HEAD + b"3\r\nxxx__1a\r\n" + END, 400),
    case("bare LF after the chunk size", CHUNKED_HEAD + b"3\nabc\n0\n\n", 400),
    case(
        "Content-Length in the trailers", CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nContent-Length: 40\r\n\r\n", 400
    ),
    # Transfer-Encoding obfuscation (RFC 9112 §6.1, §6.3)
    case("unknown Transfer-Encoding (RFC 9112 §6.1)", post(TE + b"gzip", body=END), 501),
    case("xchunked", post(TE + b"xchunked", body=END), 501),
    case("chunked, identity: chunked not last", post(TE + b"chunked, identity", body=END), 400),
    case("chunked twice in one header", post(TE + b"chunked, chunked", body=END), 400),
    case(
        "duplicated Transfer-Encoding header (CVE-2024-1135)",
        post(TE + b"chunked", TE + b"chunked", body=END),
        400,
    ),
    case("vertical tab before chunked (gunicorn #3364)", post(TE + b"\x0bchunked", body=END), 400),
    case("\\x85 before chunked (gunicorn #3364)", post(TE + b"\x85chunked", body=END), 400),
    case("\\x85 after chunked (gunicorn #3364)", post(TE + b"chunked\x85", body=END), 400),
    case(
        "chunked on HTTP/1.0 (RFC 9112 §6.1)",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + END,
        400,
    ),
    # Field syntax (RFC 9112 §5)
    case("obs-fold (RFC 9112 §5.2)", get(b"X-A: b", b" c"), 400),
    case("whitespace before the colon (RFC 9112 §5.1)", get(b"X-A : b"), 400),
    case("space before a header name (CVE-2024-27982)", get(b" Content-Length: 5") + b"hello", 400),
    case("space before the first header name", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    case("control byte in a name", get(b"X\x01A: b"), 400),
    case("NUL in a name", get(b"X\x00A: b"), 400),
    case("NUL in a value (RFC 9110 §5.5)", get(b"X-A: b\x00c"), 400),
    case("ESC in a value", get(b"X-A: b\x1b[31mc"), 400),
    case("vertical tab in a value (CVE-2026-44546)", get(b"X-A: b\x0bc"), 400),
    case("DEL in a value", get(b"X-A: b\x7fc"), 400),
    case("empty field name", get(b": b"), 400),
    case("bare CR in a value (CVE-2023-30589)", get(b"X-Abc: \rxTransfer-Encoding: chunked"), 400),
    case("bare CR ending a field line", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    case("bare LF line endings (RFC 9112 §2.2)", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    case("missing Host on HTTP/1.1 (RFC 9112 §3.2)", b"GET / HTTP/1.1\r\n\r\n", 400),
    case("duplicate Host (RFC 9112 §3.2)", get(b"Host: b"), 400),
    # Request line (RFC 9112 §3)
    case("space in the target", get(line=b"GET /a b HTTP/1.1"), 400),
    case("tab in the target", get(line=b"GET /a\tb HTTP/1.1"), 400),
    case("control byte in the target", get(line=b"GET /a\x1bb HTTP/1.1"), 400),
    case("NUL in the target", get(line=b"GET /a\x00b HTTP/1.1"), 400),
    case("bad method bytes", get(line=b"G(T / HTTP/1.1"), 400),
    case("NUL in the method", get(line=b"GE\x00T / HTTP/1.1"), 400),
    case(
        "TLS handshake on the plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400
    ),
    case("unknown method token (RFC 9110 §9.1)", get(line=b"FROB / HTTP/1.1"), 501),
    case("lower-case method token (RFC 9110 §9.1)", get(line=b"get / HTTP/1.1"), 501),
    case("authority-form outside CONNECT (RFC 9112 §3.2.3)", get(line=b"GET example.com:80 HTTP/1.1"), 400),
    case("asterisk-form outside OPTIONS (RFC 9112 §3.2.4)", get(line=b"GET * HTTP/1.1"), 400),
    case("HTTP/2.0 request line (RFC 9110 §15.6.6)", get(line=b"GET / HTTP/2.0"), 505),
    case("two spaces before the target (RFC 9112 §3)", get(line=b"GET  / HTTP/1.1"), 400),
    case("two spaces before the version (RFC 9112 §3)", get(line=b"GET /  HTTP/1.1"), 400),
    case("a line that is no request line (RFC 9112 §3)", b"THIS IS NOT HTTP AT ALL\r\n\r\n", 400),
    case("HTTP/3.0", get(line=b"GET / HTTP/3.0"), 505),
    case("HTTP/0.9 simple request", b"GET /\r\n\r\n", 505),
    case("lower-case protocol name", get(line=b"GET / http/1.1"), 400),
    # Limits and expectations
    case("head over limit_request_head (431)", get(b"X-A: " + b"a" * 2000), 431, limit_request_head=1024),
    case(
        "more fields than limit_request_headers (431)",
        get(*(b"X-%d: a" % i for i in range(10))),
        431,
        limit_request_headers=5,
    ),
    case(
        "Content-Length over limit_request_body (413)",
        post(CL + b"11", body=b"hello world"),
        413,
        limit_request_body=10,
    ),
    case("unknown expectation (RFC 9110 §10.1.1)", post(b"Expect: magic", CL + b"1", body=b"x"), 417),
]


@pytest.mark.parametrize(("data", "status", "options"), BAD_REQUESTS)
def test_bad_request_gets_status_and_close(
    serve: Serve, data: bytes, status: int, options: dict[str, Any]
) -> None:
    """A malformed request is answered with its status and connection: close, then the connection
    closes; the app never sees it nor the request smuggled behind it (RFC 9112 §9.6; ARCHITECTURE
    property 5)."""
    app = Recorder()
    server = serve(app, lifespan="off", **options)
    reply, closed = talk(server, data)
    assert_error_reply(reply, closed, status)
    assert app.calls == []


@pytest.mark.parametrize(("data", "status", "options"), BAD_REQUESTS[:12])
def test_bad_request_byte_by_byte(serve: Serve, data: bytes, status: int, options: dict[str, Any]) -> None:
    """The answer does not depend on how the bad request is segmented (RFC 9112 §2.2)."""
    app = Recorder()
    server = serve(app, lifespan="off", **options)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        try:
            for i in range(len(data)):
                sock.send(data[i : i + 1])
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, status)
    # The head is parsed as it arrives, so a body error reaches an app that is already reading: it
    # then sees only a disconnect, never a complete body.
    assert app.bodies == []
    assert all(m["type"] == "http.disconnect" for m in app.messages if not m.get("more_body"))
    assert ("GET", "/admin") not in app.calls


def test_truncated_chunked_terminator_then_close(serve: Serve) -> None:
    """A chunked body cut after ``0\\r\\n`` is incomplete (gunicorn #3382): 400, never a complete
    body."""
    app = Recorder()
    server = serve(app, lifespan="off")
    reply, closed = talk(server, CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n", half_close=True)
    assert_error_reply(reply, closed, 400)
    assert app.finished.wait(3)
    assert app.bodies == []
    assert app.messages[-1] == {"type": "http.disconnect"}


def test_eof_inside_a_head_is_answered(serve: Serve) -> None:
    """A head cut short by the peer's half-close gets a 400, not silence (RFC 9112 §8)."""
    app = Recorder()
    server = serve(app, lifespan="off")
    reply, closed = talk(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b", half_close=True)
    assert_error_reply(reply, closed, 400)
    assert app.calls == []


def test_percent_encoded_control_characters_not_logged_raw(
    serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Percent-encoded control characters in the path never reach a log line raw (CVE-2020-7694)."""
    for name in ("wherry.access", "wherry.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        caplog.set_level(logging.INFO, logger=name)
    app = Recorder()
    server = serve(app, lifespan="off", access_log=True)
    target = b"/%1b[31mred%1b[0m%0d%0aFAKE%20LINE%00%7f"
    with server.connect() as sock:
        sock.sendall(get(b"Connection: close", line=b"GET " + target + b"?q=%1b%0a HTTP/1.1"))
        reply, _ = read_until_close(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert app.calls == [("GET", "/\x1b[31mred\x1b[0m\r\nFAKE LINE\x00\x7f")]
    # A rejected request whose bytes carry control characters is logged safely too.
    talk(server, b"GET /\x1b[2J HTTP/1.1\r\nHost: a\r\n\r\n")
    server.stop()
    access = [r.getMessage() for r in caplog.records if r.name == "wherry.access"]
    served = [line for line in access if '" 200 ' in line]
    assert len(served) == 1
    assert "%1b[31mred" in served[0]
    for record in caplog.records:
        if record.name.startswith("wherry"):
            text = record.getMessage()
            assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text), repr(text)


def h2_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Split HTTP/2 frames: (type, stream id, payload) (RFC 9113 §4.1)."""
    frames = []
    while data:
        assert len(data) >= 9, data
        length = int.from_bytes(data[:3], "big")
        kind, stream = data[3], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        frames.append((kind, stream, data[9 : 9 + length]))
        data = data[9 + length :]
    return frames


def test_h2_preface_refused_with_goaway(serve: Serve) -> None:
    """The HTTP/2 preface on an HTTP/1.1-only port (--no-http2) gets SETTINGS and
    GOAWAY(HTTP_1_1_REQUIRED), then the close, at once (RFC 9113 §3.4, §7)."""
    app = Recorder()
    server = serve(app, lifespan="off", http2=False)
    settings = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x03\x00\x00\x00\x64"
    started = time.monotonic()
    reply, closed = talk(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings)
    assert closed
    assert time.monotonic() - started < 1.0
    frames = h2_frames(reply)
    assert [(kind, stream) for kind, stream, _ in frames] == [(0x4, 0), (0x7, 0)]
    assert frames[0][2] == b""
    assert int.from_bytes(frames[1][2][4:8], "big") == 0xD  # HTTP_1_1_REQUIRED
    assert app.calls == []


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_prior_knowledge_fails_fast(serve: Serve) -> None:
    """With --no-http2, a client speaking HTTP/2 with prior knowledge is told off at once and does
    not hang (RFC 9113 §3.3)."""
    app = Recorder()
    server = serve(app, lifespan="off", http2=False)
    started = time.monotonic()
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "10", server.url + "/"],
        capture_output=True,
        timeout=15,
    )
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert result.returncode != 28, "curl timed out"  # CURLE_OPERATION_TIMEDOUT
    assert elapsed < 3.0
    assert app.calls == []


def test_pipelined_valid_then_bad(serve: Serve) -> None:
    """Pipelined: the valid request is answered first, then the error, then the close (RFC 9112
    §9.3.2)."""
    app = Recorder(delay=0.05)
    server = serve(app, lifespan="off")
    reply, closed = talk(
        server,
        b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        + b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n"
        + SMUGGLED,
    )
    code, headers, body, rest = split_response(reply)
    assert (code, body) == (200, b"okhi")
    assert "connection" not in headers
    assert_error_reply(rest, closed, 400)
    assert app.calls == [("POST", "/ok")]


def test_pipelined_valid_then_bad_chunked_body(serve: Serve) -> None:
    """Pipelined: a request whose body breaks framing behind a slow one never reaches the app; the
    first is answered, then the 400 (RFC 9112 §7.1, §9.3.2)."""
    app = Recorder(delay=0.05)
    server = serve(app, lifespan="off")
    reply, closed = talk(
        server,
        b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        + CHUNKED_HEAD
        + b"3\r\nxxx__1a\r\n0\r\n\r\n"
        + SMUGGLED,
    )
    code, _, body, rest = split_response(reply)
    assert (code, body) == (200, b"okhi")
    assert_error_reply(rest, closed, 400)
    assert app.calls == [("POST", "/ok")]


def test_bad_chunk_mid_upload_disconnects_app(serve: Serve) -> None:
    """A framing error in the middle of a chunked upload the app is reading: the app sees
    http.disconnect, the client gets 400 and the close (ASGI www spec 2.3; RFC 9112 §7.1)."""
    app = Recorder()
    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(CHUNKED_HEAD + b"5\r\nhello\r\n")
        assert app.got_body.wait(3)
        sock.sendall(b"zz\r\nab\r\n0\r\n\r\n" + SMUGGLED)
        reply, closed = read_until_close(sock)
    assert_error_reply(reply, closed, 400)
    assert app.finished.wait(3)
    assert app.calls == [("POST", "/")]
    assert app.messages == [
        {"type": "http.request", "body": b"hello", "more_body": True},
        {"type": "http.disconnect"},
    ]


def test_bad_chunk_after_streaming_response_started(serve: Serve) -> None:
    """When the app already started its response, a framing error in the request body cuts the
    connection: no 400 is spliced into the response in flight (RFC 9112 §9.6)."""
    started = threading.Event()
    seen: list[str] = []
    gone = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        started.set()
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                gone.set()
                return

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(CHUNKED_HEAD + b"5\r\nhello\r\n")
        assert started.wait(3)
        sock.sendall(b"zz\r\n")
        reply, closed = read_until_close(sock)
    assert closed
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b" 400 " not in reply
    assert gone.wait(3)
    assert seen[-1] == "http.disconnect"


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, id="content-length"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
            id="chunked",
        ),
    ],
)
def test_upgrade_with_body_is_not_an_upgrade(serve: Serve, framing: bytes) -> None:
    """Upgrade: foo with a body is declined (no such protocol here) and the body stays a body: it is
    never parsed as a request (RFC 9110 §7.8)."""
    app = Recorder()
    server = serve(app, lifespan="off")
    with server.connect() as sock:
        head = b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\n"
        sock.sendall(head + framing + get(b"Connection: close", line=b"GET /next HTTP/1.1"))
        reply, closed = read_until_close(sock)
    assert closed
    code, _, body, rest = split_response(reply)
    assert (code, body) == (200, b"ok" + SMUGGLED)
    code, _, body, rest = split_response(rest)
    assert (code, body, rest) == (200, b"ok", b"")
    assert app.calls == [("POST", "/up"), ("GET", "/next")]


def test_server_survives_every_bad_input(serve: Serve) -> None:
    """After every bad input of this file on one server, a normal request still works."""
    app = Recorder()
    server = serve(
        app, lifespan="off", limit_request_head=1024, limit_request_headers=5, limit_request_body=10
    )
    for param in BAD_REQUESTS:
        data, status, _ = param.values
        reply, closed = talk(server, data)
        assert_error_reply(reply, closed, status)
    talk(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    talk(server, CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n", half_close=True)
    assert app.bodies == []
    response = httpx.get(server.url + "/fine")
    assert (response.status_code, response.text) == (200, "ok")


def test_bad_body_after_its_request_was_answered_just_closes(serve: Serve) -> None:
    """A body that breaks framing after the app already answered its request: nothing is left to
    answer, so the connection closes with no unsolicited 400 after the response (RFC 9112 §9.6)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"nope"})

    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(CHUNKED_HEAD + b"5\r\nhello\r\n")
        assert read_responses(sock, 1) == [(401, b"nope")]
        sock.sendall(b"zz\r\n" + SMUGGLED)
        reply, closed = read_until_close(sock)
    assert closed
    assert reply == b""


def test_closing_in_stages_is_bounded(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an error answer the server half-closes and drops what still arrives (RFC 9112 §9.6),
    but only for LINGER seconds: a client that never closes is cut then, and nothing it sent in the
    meantime reaches the app."""
    monkeypatch.setattr("wherry.connection.lifecycle.LINGER", 0.3)
    app = Recorder()
    server = serve(app, lifespan="off")
    with server.connect() as sock:
        sock.sendall(get(b"X-A : b"))
        reply, closed = read_until_close(sock)
        assert_error_reply(reply, closed, 400)  # closed here means the server's FIN
        started = time.monotonic()
        with pytest.raises(OSError):  # the send that meets the reset
            while time.monotonic() - started < 3:
                sock.send(SMUGGLED)
                time.sleep(0.02)
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed <= 1.5
    assert app.calls == []


@pytest.mark.parametrize("host", [b"a b", b"a, b", b"u@a"])
def test_invalid_host_values_get_400(serve: Serve, host: bytes) -> None:
    """RFC 9112 §3.2: a request whose Host value is invalid gets 400, and the connection closes."""
    server = serve(apps.echo, lifespan="off")
    reply = exchange(
        server, b"GET / HTTP/1.1\r\nHost: %b\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n" % host
    )
    assert reply.startswith(b"HTTP/1.1 400 ") and reply.count(b"HTTP/1.1 ") == 1


def test_absolute_form_authority_reaches_the_app_as_host(serve: Serve) -> None:
    """RFC 9112 §3.2.2: with an absolute-form target the app's host header is the target's authority."""
    server = serve(apps.echo, lifespan="off")
    reply = exchange(
        server, b"GET http://a.example/p?q=1 HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n"
    )
    head = reply.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200 "), head
    line = next(x for x in head.split("\r\n") if x.startswith("x-scope:"))
    info = json.loads(line.partition(":")[2])
    assert [v for n, v in info["headers"] if n == "host"] == ["a.example"]
    assert info["path"] == "/p" and info["query_string"] == "q=1"
