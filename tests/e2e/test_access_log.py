"""The access log: one ``wherry.access`` line per request, with the client, the request line, the
status, the response body size and the time taken; and no raw control character from the peer in any
log record (CVE-2020-7694)."""

from __future__ import annotations

import logging
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import apps
from tests.conftest import RunningServer, exchange, read_response
from wherry.logs import SafeFormatter, configure, format_client, printable

Serve = Callable[..., RunningServer]

LINE = re.compile(
    r'^(?P<client>\S+) - "(?P<method>\S+) (?P<target>\S+) HTTP/(?P<version>1\.[01])" '
    r"(?P<status>\d{3}) (?P<size>\d+) (?P<ms>\d+\.\d)ms$"
)
REJECTED = re.compile(r'^(?P<client>\S+) - "-" (?P<status>\d{3}) (?P<size>\d+) -$')
# C0, DEL and C1: any of them can start a terminal escape sequence or forge a log line.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

WATCHED = ("wherry.access", "wherry.error")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog seeing Wherry's loggers at INFO, whatever an earlier ``configure()`` left behind."""
    saved = []
    for name in WATCHED:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.propagate = True
        caplog.set_level(logging.INFO, logger=name)
    yield caplog
    for logger, level, propagate in saved:
        logger.setLevel(level)
        logger.propagate = propagate


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "wherry.access"]


def one_request(server: RunningServer, head: bytes) -> bytes:
    """Send one request with ``Connection: close`` and read until the close.

    The access line is written before the connection is closed, so it is there once this returns.
    """
    return exchange(server, head + b"Connection: close\r\n\r\n")


async def fail(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("the application failed on " + scope["path"])


async def teapot(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-length", b"15")]
    await send({"type": "http.response.start", "status": 418, "headers": headers})
    await send({"type": "http.response.body", "body": b"short", "more_body": True})
    await send({"type": "http.response.body", "body": b" and stout"})


def test_access_line_fields(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """A line holds client, request line (method, raw target, version), status, body bytes, ms."""
    server = serve(apps.hello, access_log=True)
    one_request(server, b"GET /path/x?q=1&r=%20 HTTP/1.1\r\nHost: a\r\n")
    [line] = access_lines(logs)
    match = LINE.match(line)
    assert match, line
    host, _, port = match["client"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert match["method"] == "GET"
    assert match["target"] == "/path/x?q=1&r=%20"
    assert match["version"] == "1.1"
    assert match["status"] == "200"
    assert match["size"] == "13"
    assert 0.0 <= float(match["ms"]) < 1000.0
    [record] = [r for r in logs.records if r.name == "wherry.access"]
    assert record.levelno == logging.INFO


def test_access_line_per_request_on_keep_alive(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """Every request of a persistent connection has its own line, in order."""
    server = serve(teapot, access_log=True)
    one_request(
        server,
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.0\r\nContent-Length: 0\r\n"
        b"Connection: keep-alive\r\n\r\nDELETE /3 HTTP/1.1\r\nHost: a\r\n",
    )
    lines = [LINE.match(line) for line in access_lines(logs)]
    assert all(lines), access_lines(logs)
    assert [(m["method"], m["target"], m["version"]) for m in lines if m] == [
        ("GET", "/1", "1.1"),
        ("POST", "/2", "1.0"),
        ("DELETE", "/3", "1.1"),
    ]
    assert {(m["status"], m["size"]) for m in lines if m} == {("418", "15")}


def test_access_line_for_streamed_response(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """The size is the body bytes the app sent, not the chunked framing on the wire."""
    server = serve(apps.stream, access_log=True)
    one_request(server, b"GET /?n=7&size=100 HTTP/1.1\r\nHost: a\r\n")
    match = LINE.match(access_lines(logs)[0])
    assert match and match["status"] == "200" and match["size"] == "700"


def test_access_line_for_app_error(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """An app that raises is logged as the 500 the client received, with its body size."""
    server = serve(fail, access_log=True)
    raw = one_request(server, b"GET /boom HTTP/1.1\r\nHost: a\r\n")
    assert raw.startswith(b"HTTP/1.1 500 ")
    body = raw.partition(b"\r\n\r\n")[2]
    [line] = access_lines(logs)
    match = LINE.match(line)
    assert match and match["status"] == "500" and int(match["size"]) == len(body)
    assert any(r.name == "wherry.error" and r.levelno == logging.ERROR for r in logs.records)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ],
)
def test_access_line_for_rejected_request(
    serve: Serve, logs: pytest.LogCaptureFixture, request_bytes: bytes, status: int
) -> None:
    """A request the server rejects is in the access log too: its status, and "-" for its line."""
    server = serve(apps.hello, access_log=True)
    raw = exchange(server, request_bytes)
    assert raw.startswith(b"HTTP/1.1 %d " % status)
    body = raw.partition(b"\r\n\r\n")[2]
    [line] = access_lines(logs)
    match = REJECTED.match(line)
    assert match, line
    assert match["client"].startswith("127.0.0.1:")
    assert int(match["status"]) == status
    assert int(match["size"]) == len(body)
    # The reason stays in the error log, at info level.
    assert any(
        r.name == "wherry.error" and r.levelno == logging.INFO and "Bad request" in r.getMessage()
        for r in logs.records
    )


def test_access_line_for_request_head_timeout(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """A 408 for a head that never completed is an access line like any other rejection."""
    server = serve(apps.hello, access_log=True, timeout_request_head=0.2)
    raw = exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert raw.startswith(b"HTTP/1.1 408 ")
    [line] = access_lines(logs)
    match = REJECTED.match(line)
    assert match and match["status"] == "408"


def test_duration_of_a_slow_request(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """The time runs from the request head to the end of the app: at least the app's delay (less
    the loop's timer granularity: libuv's clock counts whole milliseconds, so uvloop may wake a sleep
    up to a millisecond before perf_counter says it is due)."""
    server = serve(apps.slow, access_log=True)
    one_request(server, b"GET /?delay=0.2 HTTP/1.1\r\nHost: a\r\n")
    match = LINE.match(access_lines(logs)[0])
    assert match
    assert 198.0 <= float(match["ms"]) < 2000.0


def test_access_log_disabled(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """--no-access-log writes no access line, for answered and rejected requests alike."""
    server = serve(apps.hello, access_log=False)
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\n")
    exchange(server, b"GET / HTTP/1.1\r\n\r\n")
    assert access_lines(logs) == []


def test_client_from_proxy_headers(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """The access line names the client the proxy headers give, IPv6 in brackets."""
    server = serve(apps.hello, access_log=True)
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 2001:db8::7\r\n")
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7:4711\r\n")
    clients = [m["client"] for m in map(LINE.match, access_lines(logs)) if m]
    assert clients == ["[2001:db8::7]:0", "203.0.113.7:4711"]


INJECTIONS = [
    # percent-encoded escapes stay encoded in the log: the raw target is logged, never the path
    b"GET /%1b[31mred%1b[0m HTTP/1.1\r\nHost: a\r\n",
    b"GET /%1B]0;title%07 HTTP/1.1\r\nHost: a\r\n",
    b"GET /?q=%0d%0aforged:%20line HTTP/1.1\r\nHost: a\r\n",
    b"GET /%c2%9b31m HTTP/1.1\r\nHost: a\r\n",
    # raw control characters are rejected by the parser; the rejection is logged without them
    b"GET /\x1b[31mred HTTP/1.1\r\nHost: a\r\n",
    b"GET /\x9b31m HTTP/1.1\r\nHost: a\r\n",
    b"GET /a\rb HTTP/1.1\r\nHost: a\r\n",
    b"GET\x1b / HTTP/1.1\r\nHost: a\r\n",
    # obs-text in a proxy header never becomes the logged client
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.7\x9b[31m\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: fe80::1%\x9b31m\r\n",
]


@pytest.mark.parametrize("head", INJECTIONS)
def test_no_control_characters_in_logs(serve: Serve, logs: pytest.LogCaptureFixture, head: bytes) -> None:
    """No log record carries a raw control character from the peer (CVE-2020-7694)."""
    server = serve(fail, access_log=True)
    raw = one_request(server, head)
    assert raw.startswith((b"HTTP/1.1 500 ", b"HTTP/1.1 400 "))
    assert access_lines(logs)
    records = [r for r in logs.records if r.name in WATCHED]
    for record in records:
        assert not CONTROL.search(record.getMessage()), record.getMessage()
    # The app's own exception text has the decoded path; the server's formatter escapes it.
    formatter = SafeFormatter("%(name)s: %(message)s")
    for record in records:
        assert not CONTROL.search(formatter.format(record).replace("\n", "").replace("\t", ""))


def test_percent_encoded_target_is_logged_raw(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """The log shows the target as sent, so %1b stays three printable characters."""
    server = serve(apps.hello, access_log=True)
    one_request(server, b"GET /%1b[31mred HTTP/1.1\r\nHost: a\r\n")
    match = LINE.match(access_lines(logs)[0])
    assert match and match["target"] == "/%1b[31mred"


def test_access_line_over_a_persistent_connection_is_written_per_response(
    serve: Serve, logs: pytest.LogCaptureFixture
) -> None:
    """The line is written when the response ends, not when the connection closes."""
    server = serve(apps.hello, access_log=True)
    with server.connect() as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.settimeout(5)
        assert sock.recv(1) == b""  # closed after the second line was written
    targets = [m["target"] for m in map(LINE.match, access_lines(logs)) if m]
    assert targets == ["/first", "/second"]


# ------------------------------------------------------------------------------------ wherry.logs

PRINTABLE_TABLE = [
    (b"/plain?q=1", "/plain?q=1"),
    (b"/\x1b[31m", "/\\x1b[31m"),
    (b"\r\n", "\\x0d\\x0a"),
    (b"\x00\x7f", "\\x00\\x7f"),
    (b"\x9b\x85", "\\x9b\\x85"),  # C1 CSI and NEL
    (b"\xe9t\xe9", "\xe9t\xe9"),  # Latin-1 letters are kept
    ("caf\u00e9\u009b", "caf\u00e9\\x9b"),
]


@pytest.mark.parametrize(("data", "expected"), PRINTABLE_TABLE)
def test_printable_table(data: bytes | str, expected: str) -> None:
    """printable() escapes C0, DEL and C1 and leaves everything else."""
    assert printable(data) == expected


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (("127.0.0.1", 5000), "127.0.0.1:5000"),
        (["::1", 80], "[::1]:80"),
        (None, "-"),
        (("bad\x1bhost", 1), "bad\\x1bhost:1"),
    ],
)
def test_format_client_table(client: Any, expected: str) -> None:
    """The client column: host:port, IPv6 bracketed, "-" for Unix-socket peers."""
    assert format_client(client) == expected


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    saved = []
    for name in WATCHED:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, list(logger.handlers)))
    yield
    for logger, level, propagate, handlers in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.mark.usefixtures("restore_loggers")
def test_configure_installs_one_safe_handler_each() -> None:
    """configure() gives each Wherry logger one handler with the escaping formatter, even if called
    twice, and turns the access logger off when the access log is off."""
    configure("info", True)
    configure("debug", False)
    access, error = logging.getLogger("wherry.access"), logging.getLogger("wherry.error")
    for logger in (access, error):
        ours = [h for h in logger.handlers if getattr(h, "_wherry", False)]
        assert len(ours) == 1
        assert isinstance(ours[0].formatter, SafeFormatter)
        assert logger.propagate is False
    assert error.isEnabledFor(logging.DEBUG)
    assert not access.isEnabledFor(logging.CRITICAL)
    configure("warning", True)
    assert not access.isEnabledFor(logging.INFO)
    assert not error.isEnabledFor(logging.INFO) and error.isEnabledFor(logging.WARNING)


def test_safe_formatter_keeps_traceback_lines() -> None:
    """A traceback keeps its newlines; control characters inside it are escaped."""
    try:
        raise ValueError("path /\x1b[2J\x9b")
    except ValueError:
        record = logging.LogRecord(
            "wherry.error", logging.ERROR, __file__, 1, "Exception\x1b %s", ("a\rb",), None
        )
        record.exc_info = sys.exc_info()
    text = SafeFormatter("%(message)s").format(record)
    first, _, rest = text.partition("\n")
    assert first == "Exception\\x1b a\\x0db"
    assert "Traceback" in rest and "\n" in rest
    assert "/\\x1b[2J\\x9b" in rest
    assert not CONTROL.search(text.replace("\n", ""))


def test_unix_socket_client_is_a_dash(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """Over a Unix socket the scope has no client: the access line shows "-"."""
    directory = tempfile.TemporaryDirectory()
    path = directory.name + "/w.sock"
    serve(apps.hello, access_log=True, uds=path)
    with directory, socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        while sock.recv(65536):
            pass
    [line] = access_lines(logs)
    assert line.startswith('- - "GET / HTTP/1.1" 200 13 ')


def test_websocket_handshakes_are_logged(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """One access line per WebSocket: 101 when the session ends (its duration), a denial's status
    and body size, and a refused handshake's 400."""
    from tests.wsframes import close_frame, handshake, open_websocket, read_until_closed

    server = serve(apps.ws_echo, access_log=True)
    with server.connect() as sock:
        open_websocket(sock, "/chat?room=1")
        sock.sendall(close_frame(1000))
        read_until_closed(sock)
    exchange(server, handshake("/bad").replace(b"Version: 13", b"Version: 7"))
    deadline = time.monotonic() + 5
    while len(access_lines(logs)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the 101 line is written when the app returns, after the close
    lines = sorted(access_lines(logs))
    assert len(lines) == 2, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    by_target = {m["target"]: m for m in parsed if m}
    assert by_target["/chat?room=1"]["status"] == "101"
    assert by_target["/bad"]["status"] == "426"


# ------------------------------------------------------------ --access-log-format, --log-format json

GUNICORN_FORMAT = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s %(q)s %(H)s '
    "%(T)s %(M)s %(D)s %(L)s %(p)s %({x-request-id}i)s %({Content-Type}o)s %({WHERRY_TEST_ENV}e)s %(nope)s"
)


def test_access_log_format_atoms(
    serve: Serve, logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--access-log-format takes gunicorn's atoms, durations included; unknown atoms are '-'."""
    monkeypatch.setenv("WHERRY_TEST_ENV", "prod")
    server = serve(apps.slow, access_log=True, access_log_format=GUNICORN_FORMAT)
    one_request(
        server,
        b"GET /s?delay=0.05 HTTP/1.1\r\nHost: a\r\nReferer: http://r.example/\r\n"
        b"User-Agent: probe/1.0\r\nX-Request-Id: abc-123\r\n",
    )
    [line] = access_lines(logs)
    pattern = (
        r"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        r'"GET /s\?delay=0\.05 HTTP/1\.1" 200 4 4 "http://r\.example/" "probe/1\.0" '
        r"GET /s delay=0\.05 HTTP/1\.1 "
        r"0 (?P<ms>\d+) (?P<us>\d+) (?P<s>\d+\.\d{6}) <\d+> abc-123 - prod -$"
    )
    match = re.match(pattern, line)
    assert match, line
    assert 50 <= int(match["ms"]) < 5000
    assert int(match["us"]) // 1000 == int(match["ms"])
    assert abs(float(match["s"]) - int(match["us"]) / 1e6) < 1e-5


def test_access_log_format_response_header_and_empty_body(
    serve: Serve, logs: pytest.LogCaptureFixture
) -> None:
    """%({name}o)s reads the app's response headers; %(b)s is '-' for an empty body (CLF)."""

    async def empty(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": [(b"X-Trace", b"t1")]})
        await send({"type": "http.response.body", "body": b""})

    server = serve(empty, access_log=True, access_log_format="%(s)s %(b)s %(B)s %({x-trace}o)s")
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert access_lines(logs) == ["204 - 0 t1"]


def test_access_log_format_reads_response_headers_given_as_lists(
    serve: Serve, logs: pytest.LogCaptureFixture
) -> None:
    """%({name}o)s reads response headers in any shape ASGI allows: here a tuple of lists."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": ([b"X-Trace", b"t2"],)}
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    server = serve(app, access_log=True, access_log_format="%(s)s %({x-trace}o)s")
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\n")
    assert access_lines(logs) == ["200 t2"]


def test_access_log_format_escapes_peer_text(serve: Serve, logs: pytest.LogCaptureFixture) -> None:
    """Header atoms go through the same escaping as the default line (CVE-2020-7694)."""
    server = serve(apps.hello, access_log=True, access_log_format="%(a)s|%({x-a}i)s")
    one_request(server, b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: a\x80\xff\r\nX-A: \x9b31m\r\n")
    [line] = access_lines(logs)
    assert not CONTROL.search(line)
    assert line == "a\\x80\xff|\\x9b31m"


def test_json_log_format(serve: Serve, monkeypatch: pytest.MonkeyPatch, restore_loggers: None) -> None:
    """--log-format json: one JSON object per line, with the access fields, escaping controls."""
    import io
    import json

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure("info", True, "json")
    server = serve(apps.hello, access_log=True, log_format="json")
    one_request(server, b"GET /p%1b HTTP/1.1\r\nHost: a\r\nUser-Agent: t\x9b[31m\r\n")
    [text] = out.getvalue().splitlines()
    assert not CONTROL.search(text)
    entry = json.loads(text)
    assert entry["logger"] == "wherry.access" and entry["level"] == "info"
    assert entry["method"] == "GET" and entry["target"] == "/p%1b"
    assert entry["status"] == 200 and entry["bytes"] == 13 and entry["duration_ms"] >= 0
    assert entry["user_agent"] == "t\\x9b[31m" and entry["client"].startswith("127.0.0.1:")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["time"])


def test_json_error_log_carries_the_traceback(
    restore_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Errors in JSON: the traceback is a field of the one line, not lines of its own."""
    import json

    configure("info", False, "json")
    try:
        raise ValueError("boom\x1b")
    except ValueError:
        logging.getLogger("wherry.error").exception("Exception in ASGI application")
    [text] = capsys.readouterr().err.splitlines()
    entry = json.loads(text)
    assert entry["level"] == "error" and "ValueError: boom" in entry["exception"]


# ------------------------------------------------------------ every protocol, one observer

PROTOCOLS = ["http/1.1", "h2", "websocket", "h2-websocket"]


def speak(server: RunningServer, protocol: str) -> None:
    """One exchange of ``protocol`` with ``apps.ws_echo`` on ``/p?q=1``, with an X-Request-Id, up
    to its end (a WebSocket is closed by the client)."""
    from tests.e2e.test_h2_websocket import WSClient
    from tests.h2util import H2Client
    from tests.wsframes import close_frame, open_websocket, read_until_closed

    if protocol == "http/1.1":
        one_request(server, b"GET /p?q=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc\r\nUser-Agent: t/1\r\n")
    elif protocol == "h2":
        with H2Client(server.host, server.port) as client:
            extra = [(b"x-request-id", b"abc"), (b"user-agent", b"t/1")]
            assert client.response(client.request("/p?q=1", headers=extra, scheme=b"http")).status == 200
    elif protocol == "websocket":
        with server.connect() as sock:
            open_websocket(sock, "/p?q=1", b"X-Request-Id: abc\r\nUser-Agent: t/1\r\n")
            sock.sendall(close_frame(1000))
            read_until_closed(sock)
    else:
        with WSClient(server.host, server.port) as h2:
            sid = h2.open(b"/p?q=1", [(b"x-request-id", b"abc"), (b"user-agent", b"t/1")])
            assert h2.opened(sid).status == 200
            h2.send(sid, close_frame(1000))
            assert h2.ended(sid).ended


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_access_log_format_is_the_same_for_every_protocol(
    serve: Serve, logs: pytest.LogCaptureFixture, protocol: str
) -> None:
    """--access-log-format applies to HTTP/1.1, HTTP/2 and WebSockets over both, with their version."""
    from tests.procs import wait_until

    log_format = "%(H)s|%(r)s|%(s)s|%(m)s|%(U)s|%(q)s|%({x-request-id}i)s|%(a)s"
    server = serve(apps.ws_echo, access_log=True, access_log_format=log_format, lifespan="off")
    speak(server, protocol)
    wait_until(lambda: access_lines(logs), 5, "the access line")
    expected = {
        "http/1.1": "HTTP/1.1|GET /p?q=1 HTTP/1.1|200|GET|/p|q=1|abc|t/1",
        "h2": "HTTP/2|GET /p?q=1 HTTP/2|200|GET|/p|q=1|abc|t/1",
        "websocket": "HTTP/1.1|GET /p?q=1 HTTP/1.1|101|GET|/p|q=1|abc|t/1",
        "h2-websocket": "HTTP/2|CONNECT /p?q=1 HTTP/2|200|CONNECT|/p|q=1|abc|t/1",
    }
    assert access_lines(logs) == [expected[protocol]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_json_fields_are_the_same_for_every_protocol(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, restore_loggers: None, protocol: str
) -> None:
    """--log-format json: every protocol's access record has the same fields, its version among them."""
    import io
    import json

    from tests.procs import wait_until

    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure("info", True, "json")
    server = serve(apps.ws_echo, access_log=True, log_format="json", lifespan="off")
    speak(server, protocol)
    wait_until(lambda: out.getvalue().endswith("\n"), 5, "the access line")
    [text] = out.getvalue().splitlines()
    entry = json.loads(text)
    version = "2" if protocol.startswith("h2") else "1.1"
    assert entry["logger"] == "wherry.access"
    assert entry["http_version"] == version, entry
    assert entry["method"] == ("CONNECT" if protocol == "h2-websocket" else "GET")
    assert entry["target"] == "/p?q=1" and entry["user_agent"] == "t/1"
    assert entry["status"] == {"websocket": 101, "h2-websocket": 200}.get(protocol, 200)
    assert entry["client"].startswith("127.0.0.1:") and entry["duration_ms"] >= 0
    assert f'"{entry["method"]} /p?q=1 HTTP/{version}" {entry["status"]} ' in entry["message"]
