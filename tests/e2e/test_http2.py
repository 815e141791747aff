"""HTTP/2 end to end (RFC 9113): real sockets, a real h2 client, curl, nghttp, httpx and a
browser. Every behaviour test runs over TLS (ALPN h2) and over h2c (prior knowledge), on asyncio
uvloop and trio."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer, read_response
from tests.e2e.test_http_semantics import HEADER_SHAPES, shaped_headers_app
from tests.h2util import WAIT, Certs, H2Client, make_certs, settings
from tests.procs import wait_until

Serve = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@dataclass
class H2Driver:
    server: RunningServer
    tls: bool
    certs: Certs

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.server.port}"

    def client(self, **options: Any) -> H2Client:
        context = self.certs.client_context(("h2",)) if self.tls else None
        return H2Client(self.server.host, self.server.port, context, **options)

    @property
    def scheme(self) -> bytes:
        return b"https" if self.tls else b"http"


H2Start = Callable[..., H2Driver]


@pytest.fixture(params=["tls", "h2c"])
def h2serve(request: pytest.FixtureRequest, serve: Serve, certs: Certs) -> H2Start:
    tls = request.param == "tls"

    def start(app: Any, **options: Any) -> H2Driver:
        if tls:
            options.setdefault("ssl_certfile", str(certs.server_file))
        options.setdefault("lifespan", "off")
        return H2Driver(serve(app, **options), tls, certs)

    return start


def body_of(events: list[Any]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))


# ---------------------------------------------------------------- apps


async def info(scope: Any, receive: Any, send: Any) -> None:
    """Echo the body; the scope's essentials come back as JSON in x-scope."""
    body = await apps.read_body(receive)
    data = {
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "query_string": scope["query_string"].decode(),
        "headers": [[n.decode(), v.decode()] for n, v in scope["headers"]],
        "extensions": sorted(scope["extensions"]),
        "tls_version": scope["extensions"].get("tls", {}).get("tls_version"),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-scope", json.dumps(data).encode()), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def scope_of(response: Any) -> dict[str, Any]:
    value = response.header(b"x-scope")
    assert value is not None
    return json.loads(value)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- requests and streams


def test_request_and_response_over_http2(h2serve: H2Start) -> None:
    """RFC 9113 §8.1: a request with a body is one ASGI cycle with http_version "2"; the scope has
    no pseudo-headers, host comes from :authority, the scheme is the connection's; the tls
    extension is present exactly on TLS connections (ASGI TLS extension)."""
    env = h2serve(info)
    with env.client() as client:
        sid = client.request("/a/b?x=1", "POST", [(b"x-custom", b"1")], body=b"payload", scheme=env.scheme)
        response = client.response(sid)
    assert response.status == 200 and response.ended
    assert response.body == b"payload"
    scope = scope_of(response)
    assert scope["http_version"] == "2"
    assert scope["scheme"] == ("https" if env.tls else "http")
    assert (scope["path"], scope["query_string"], scope["method"]) == ("/a/b", "x=1", "POST")
    assert ["host", "localhost"] in scope["headers"]
    assert not any(name.startswith(":") for name, _ in scope["headers"])
    assert ("tls" in scope["extensions"]) == env.tls
    if env.tls:
        assert scope["tls_version"] in (0x0303, 0x0304)
    assert {"http.response.trailers", "http.response.early_hint", "http.response.pathsend"} <= set(
        scope["extensions"]
    )


def test_streams_are_served_concurrently_on_one_connection(h2serve: H2Start) -> None:
    """RFC 9113 §5: streams are independent; ten slow requests on one connection are answered
    together, not one after another."""
    env = h2serve(apps.slow)
    with env.client() as client:
        started = time.monotonic()
        sids = [client.request("/?delay=0.3", scheme=env.scheme) for _ in range(10)]
        responses = [client.response(sid) for sid in sids]
        elapsed = time.monotonic() - started
    assert all(r.status == 200 and r.body == b"done" for r in responses)
    assert elapsed < 2.0


def test_app_error_after_start_resets_only_its_stream(h2serve: H2Start) -> None:
    """RFC 9113 §5.4.2: an app that fails mid-response gets RST_STREAM INTERNAL_ERROR; other
    streams and the connection go on. A failure before the start is a 500."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/mid":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise RuntimeError("boom")
        if scope["path"] == "/before":
            raise RuntimeError("boom")
        await apps.hello(scope, receive, send)

    env = h2serve(app)
    with env.client() as client:
        mid = client.response(client.request("/mid", scheme=env.scheme))
        assert mid.reset == h2.errors.ErrorCodes.INTERNAL_ERROR
        before = client.response(client.request("/before", scheme=env.scheme))
        assert before.status == 500
        ok = client.response(client.request("/", scheme=env.scheme))
        assert (ok.status, ok.body) == (200, b"Hello, world!")
        assert client.goaway is None


@pytest.mark.parametrize("shape", list(HEADER_SHAPES))
def test_response_headers_may_be_any_iterable_of_pairs_over_http2(h2serve: H2Start, shape: str) -> None:
    """ASGI www spec, http.response.start: 'headers' is any iterable of [name, value] pairs, or
    absent, over HTTP/2 as over HTTP/1.1 (and compiled as interpreted)."""
    env = h2serve(shaped_headers_app(HEADER_SHAPES[shape]))
    with env.client() as client:
        for _ in range(2):  # the second time, the connection's caches know the fields
            response = client.response(client.request("/", scheme=env.scheme))
            assert (response.status, response.body) == (200, b"ok")
            assert response.header(b"x-shape") == (None if shape == "absent" else b"1")


@pytest.mark.parametrize(("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_head_204_and_304_have_no_data_frames(h2serve: H2Start, method: str, status: int) -> None:
    """RFC 9110 §9.3.2, §15.3.5, §15.4.5 over RFC 9113 §8.1: the HEADERS frame ends the stream;
    no DATA frame is sent even when the app sends a body."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"" if status != 200 else b"hello"})

    env = h2serve(app)
    with env.client() as client:
        response = client.response(client.request("/", method, scheme=env.scheme))
    assert response.status == status and response.ended
    assert response.data_frames == 0


def test_connection_specific_headers_from_the_app_are_removed(h2serve: H2Start) -> None:
    """RFC 9113 §8.2.2: connection-specific fields the app sends never reach the wire (a client
    would treat them as malformed)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"connection", b"close"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"x-kept", b"yes"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    env = h2serve(app)
    with env.client() as client:
        response = client.response(client.request("/", scheme=env.scheme))
    names = {name for name, _ in response.headers}
    assert response.status == 200 and response.body == b"ok"
    assert names.isdisjoint({b"connection", b"keep-alive", b"transfer-encoding"})
    assert b"x-kept" in names


# ---------------------------------------------------------------- flow control


def test_send_waits_while_the_client_does_not_open_its_window(h2serve: H2Start) -> None:
    """RFC 9113 §5.2: a client that stops crediting data makes the app's send() wait: the server
    sends no more than the windows allow and resumes when WINDOW_UPDATE arrives."""
    sent: list[int] = []
    total = 400_000

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 16384
        for offset in range(0, total, len(chunk)):
            await send({"type": "http.response.body", "body": chunk[: total - offset], "more_body": True})
            sent.append(offset)
        await send({"type": "http.response.body", "body": b""})

    env = h2serve(app)
    with env.client(auto_ack=False) as client:
        sid = client.request("/", scheme=env.scheme)
        response = client.responses[sid]
        assert client.wait(lambda: len(response.body) >= 65535)
        while client.events(0.3):  # until nothing more comes: the window is spent
            pass
        assert len(response.body) == 65535  # the connection and stream windows the client gave
        assert len(sent) <= 6  # the app was held, not buffered ahead (65535 / 16384 + the pending one)
        client.auto_ack = True
        client.conn.acknowledge_received_data(len(response.body), sid)
        client.flush()
        response = client.response(sid)
    assert response.ended and len(response.body) == total


def test_upload_is_held_by_the_window_until_the_app_reads(h2serve: H2Start) -> None:
    """RFC 9113 §5.2: a client that sends faster than the app reads is stopped by its window; the
    server buffers no more than the window, and credits it back as the app reads."""
    release = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.to_thread.run_sync(release.wait, WAIT, abandon_on_cancel=True)
        body = await apps.read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    env = h2serve(app)
    with env.client() as client:
        sid = client.request("/", "POST", end=False, scheme=env.scheme)
        sent = 0
        total = 300_000
        while sent < total:
            room = min(client.conn.local_flow_control_window(sid), 16384, total - sent)
            if room <= 0:
                break
            client.conn.send_data(sid, b"u" * room)
            client.flush()
            sent += room
        assert sent == 65535  # held by the stream window: the server did not credit unread data
        client.events(0.2)  # no WINDOW_UPDATE comes while the app does not read
        assert client.conn.local_flow_control_window(sid) == 0
        release.set()
        while sent < total:
            if not client.wait(lambda: client.conn.local_flow_control_window(sid) > 0):
                break
            room = min(client.conn.local_flow_control_window(sid), 16384, total - sent)
            client.conn.send_data(sid, b"u" * room, end_stream=sent + room == total)
            client.flush()
            sent += room
        response = client.response(sid)
    assert response.body == b"%d" % total


def test_request_body_over_the_limit_is_413(h2serve: H2Start) -> None:
    """--limit-request-body holds on HTTP/2 too: the stream gets a 413 and is reset; the
    connection goes on."""
    env = h2serve(apps.echo, limit_request_body=1000)
    with env.client() as client:
        sid = client.request("/", "POST", body=b"x" * 5000, scheme=env.scheme)
        response = client.response(sid)
        assert response.status == 413
        ok = client.response(client.request("/", "POST", body=b"small", scheme=env.scheme))
        assert ok.body == b"small"


# ---------------------------------------------------------------- shutdown


def test_graceful_shutdown_sends_goaway_and_lets_streams_finish(h2serve: H2Start) -> None:
    """RFC 9113 §6.8: on shutdown the server sends GOAWAY naming the last stream it will serve;
    the stream in flight completes, then the connection closes."""
    started = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await apps.slow(scope, receive, send)

    env = h2serve(app)
    with env.client() as client:
        sid = client.request("/?delay=0.5", scheme=env.scheme)
        assert started.wait(WAIT)
        stopper = threading.Thread(target=env.server.stop)
        stopper.start()
        goaway = client.wait_goaway()
        assert goaway is not None and goaway.error_code == 0 and goaway.last_stream_id == sid
        response = client.response(sid)
        assert (response.status, response.body) == (200, b"done")
        assert client.wait_closed()
    stopper.join(WAIT)


# ---------------------------------------------------------------- ASGI extensions over HTTP/2


def test_trailers_are_sent_after_the_body(h2serve: H2Start) -> None:
    """ASGI http.response.trailers; RFC 9113 §8.1: a trailing HEADERS frame ends the stream."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.trailers" in scope["extensions"]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-sum")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"data", "more_body": True})
        await send({"type": "http.response.body", "body": b"more"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-other", b"2")]})

    env = h2serve(app)
    with env.client() as client:
        response = client.response(client.request("/", headers=[(b"te", b"trailers")], scheme=env.scheme))
    assert response.body == b"datamore"
    assert response.trailers == [(b"x-sum", b"1"), (b"x-other", b"2")]


def test_early_hints_come_before_the_response(h2serve: H2Start) -> None:
    """ASGI http.response.early_hint, RFC 8297: a 103 with the Link fields precedes the final
    response on the same stream."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send({"type": "http.response.body", "body": b"page"})

    env = h2serve(app)
    with env.client() as client:
        response = client.response(client.request("/", scheme=env.scheme))
    assert response.informational == [(103, [(b"link", b"</style.css>; rel=preload; as=style")])]
    assert (response.status, response.body) == (200, b"page")


async def pushing(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/style.css":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/css")]}
        )
        await send({"type": "http.response.body", "body": b"body{}"})
        return
    pushed = "http.response.push" in scope["extensions"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.push", "path": "/style.css", "headers": [(b"accept", b"text/css")]})
    await send({"type": "http.response.body", "body": b"pushed" if pushed else b"no push"})


def test_push_is_promised_when_the_client_allows_it(h2serve: H2Start) -> None:
    """ASGI http.response.push, RFC 9113 §8.4: a PUSH_PROMISE for the path on the request's
    stream, then the pushed response served by the app as its own request."""
    env = h2serve(pushing)
    with env.client() as client:
        sid = client.request("/", scheme=env.scheme)
        response = client.response(sid)
        assert response.body == b"pushed"
        assert client.wait(lambda: bool(client.pushed))
        promised, (parent, headers) = next(iter(client.pushed.items()))
        assert parent == sid
        assert (b":path", b"/style.css") in headers and (b":authority", b"localhost") in headers
        pushed = client.response(promised)
    assert (pushed.status, pushed.body) == (200, b"body{}")


def test_no_push_when_the_client_disables_it(h2serve: H2Start) -> None:
    """RFC 9113 §6.5.2 SETTINGS_ENABLE_PUSH=0: the scope has no push extension and a push message
    is ignored."""
    env = h2serve(pushing)
    with env.client(settings=settings(enable_push=0)) as client:
        # The SETTINGS go before the request on the same connection: the server has them first.
        # A PUSH_PROMISE would come before the end of the response it belongs to.
        response = client.response(client.request("/", scheme=env.scheme))
    assert response.body == b"no push"
    assert client.pushed == {}


def test_pathsend_streams_a_file_through_the_window(h2serve: H2Start, tmp_path: Path) -> None:
    """ASGI http.response.pathsend over HTTP/2: the file (larger than the windows) arrives whole
    as DATA frames."""
    path = tmp_path / "big.bin"
    content = os.urandom(300_000)
    path.write_bytes(content)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"%d" % len(content))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": str(path)})

    env = h2serve(app)
    with env.client() as client:
        response = client.response(client.request("/", scheme=env.scheme))
    assert response.body == content


# ---------------------------------------------------------------- attacks over the network


def test_rapid_reset_attack_gets_goaway_enhance_your_calm(h2serve: H2Start) -> None:
    """CVE-2023-44487: opening and resetting streams in a burst ends with GOAWAY
    ENHANCE_YOUR_CALM, and the apps it started see a disconnect."""
    env = h2serve(apps.slow)
    with env.client() as client:
        for _ in range(400):
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":path", b"/?delay=5"),
                    (b":scheme", env.scheme),
                    (b":authority", b"x"),
                ],
            )
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        with contextlib.suppress(OSError):  # the server may already have closed
            client.flush()
        goaway = client.wait_goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_zero_window_stall_is_reset_after_the_send_timeout(h2serve: H2Start) -> None:
    """A client that never opens its window holds the app's send() only until --timeout-send;
    then the stream is reset and the app's send() raises (ASGI www spec 2.4)."""
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": "http.response.body", "body": b"x" * 1000, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            outcome.append("sent")
        except OSError:
            outcome.append("disconnected")
        done.set()

    env = h2serve(app, timeout_send=0.5)
    with env.client(settings=settings(initial_window_size=0)) as client:
        started = time.monotonic()
        response = client.response(client.request("/", scheme=env.scheme))
        assert done.wait(WAIT)
    assert response.reset == h2.errors.ErrorCodes.CANCEL
    assert outcome == ["disconnected"]
    assert 0.4 < time.monotonic() - started < 3.0


def test_client_that_stops_reading_is_cut_after_the_send_timeout(h2serve: H2Start) -> None:
    """A client that opens its windows but never reads the socket fills the server's send buffer;
    the app's send() waits, and after --timeout-send the connection is closed."""
    outcome: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            for _ in range(2000):
                await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})
            outcome.append("sent")
        except OSError:
            outcome.append("disconnected")
        done.set()

    env = h2serve(app, timeout_send=0.5)
    with env.client(settings=settings(initial_window_size=2**31 - 1)) as client:
        client.conn.increment_flow_control_window(2**31 - 1 - 65535)
        client.flush()
        assert client.wait(
            lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in client.all_events)
        )
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.request("/", scheme=env.scheme)
        assert done.wait(10)  # nothing is read here: the server must give up by itself
    assert outcome == ["disconnected"]


def test_more_streams_than_allowed_are_refused_and_may_be_retried(h2serve: H2Start) -> None:
    """RFC 9113 §5.1.2 and §8.7: streams a client opens beyond SETTINGS_MAX_CONCURRENT_STREAMS
    (from --h2-max-concurrent-streams; here sent before the client read the server's SETTINGS)
    get RST_STREAM(REFUSED_STREAM); the others are answered and the connection stays usable."""
    env = h2serve(apps.slow, h2_max_concurrent_streams=2)
    with env.client() as client:
        sids = [client.request("/?delay=0.2", scheme=env.scheme) for _ in range(3)]
        assert client.response(sids[2]).reset == h2.errors.ErrorCodes.REFUSED_STREAM
        for sid in sids[:2]:
            assert client.response(sid).body == b"done"
        retry = client.request("/?delay=0", scheme=env.scheme)
        assert client.response(retry).body == b"done"
        assert client.goaway is None


@pytest.mark.parametrize(
    ("name", "value"),
    [(b"X-Upper", b"v"), (b"x-a", b"a\r\nb"), (b"x-a", b"a\x00b")],
    ids=["uppercase", "crlf", "nul"],
)
def test_malformed_header_fields_never_reach_the_app(h2serve: H2Start, name: bytes, value: bytes) -> None:
    """RFC 9113 §8.2.1 (CVE-2025-57804): an uppercase name or CR/LF/NUL in a value is a protocol
    error; the app is never called."""
    calls: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope)
        await apps.hello(scope, receive, send)

    env = h2serve(app)
    with env.client() as client:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        client.conn.config = config
        sid = client.conn.get_next_available_stream_id()
        client.conn.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":path", b"/"),
                (b":scheme", env.scheme),
                (b":authority", b"x"),
                (name, value),
            ],
            end_stream=True,
        )
        client.flush()
        goaway = client.wait_goaway()
    assert goaway is not None and goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert calls == []


# ---------------------------------------------------------------- real clients


def test_httpx_over_http2(h2serve: H2Start) -> None:
    """httpx with http2 (ALPN over TLS, prior knowledge on h2c) gets HTTP/2 responses."""
    env = h2serve(info)
    verify: Any = ssl.create_default_context(cafile=str(env.certs.ca_file)) if env.tls else False
    with httpx.Client(http1=False, http2=True, verify=verify, timeout=WAIT) as client:
        for index in range(3):
            response = client.post(env.url + f"/x{index}", content=b"abc")
            assert response.http_version == "HTTP/2"
            assert response.content == b"abc"
            assert scope_of_httpx(response)["path"] == f"/x{index}"


def scope_of_httpx(response: httpx.Response) -> dict[str, Any]:
    return json.loads(response.headers["x-scope"])  # type: ignore[no-any-return]


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_nghttp = pytest.mark.skipif(
    shutil.which("nghttp") is None, reason="nghttp (nghttp2-client) is not installed"
)


@needs_curl
def test_curl_http2(h2serve: H2Start) -> None:
    """curl --http2: ALPN h2 over TLS; the h2c Upgrade on plain connections."""
    env = h2serve(info)
    args = ["--cacert", str(env.certs.ca_file)] if env.tls else []
    result = subprocess.run(
        ["curl", "-sS", "--http2", *args, "-d", "body", "-o", "-", "-w", "\n%{http_version}", env.url + "/c"],
        capture_output=True,
        timeout=15,
        check=True,
    )
    body, _, version = result.stdout.rpartition(b"\n")
    assert version == b"2"
    assert body == b"body"


@needs_curl
def test_h2c_upgrade_is_logged_as_http2(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """The request of an h2c Upgrade is answered on stream 1: its access line and %(H)s say HTTP/2."""
    caplog.set_level("INFO", logger="wherry.access")  # before the start: the server decides then
    server = serve(apps.hello, access_log=True, access_log_format="%(H)s %(r)s %(s)s", lifespan="off")
    result = subprocess.run(
        ["curl", "-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}", server.url + "/up?x=1"],
        capture_output=True,
        timeout=15,
        check=True,
    )
    assert result.stdout == b"2"

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "wherry.access"]

    wait_until(lines, 5, "the access line")  # written when the app returns
    assert lines() == ["HTTP/2 GET /up?x=1 HTTP/2 200"]


@needs_curl
def test_curl_http2_prior_knowledge(h2serve: H2Start) -> None:
    """curl --http2-prior-knowledge: the preface on the HTTP/1.1 port is served as HTTP/2."""
    env = h2serve(info)
    args = ["--cacert", str(env.certs.ca_file)] if env.tls else []
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2-prior-knowledge",
            *args,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
            env.url + "/",
        ],
        capture_output=True,
        timeout=15,
        check=True,
    )
    assert result.stdout == b"2"


@needs_nghttp
def test_nghttp_fetches_with_several_streams(h2serve: H2Start) -> None:
    """nghttp -nv: a strict HTTP/2 client (frame log checked for errors) fetching two resources."""
    env = h2serve(info)
    result = subprocess.run(
        ["nghttp", "-nv", "-t", "10", env.url + "/one", env.url + "/two"],
        capture_output=True,
        timeout=20,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert out.count(":status: 200") == 2
    assert "PROTOCOL_ERROR" not in out and "RST_STREAM" not in out


@needs_nghttp
def test_nghttp_upgrade_with_a_body(serve: Serve, tmp_path: Path) -> None:
    """nghttp -nvu: h2c by Upgrade (RFC 7540 §3.2) for a request that carries a body; the body is
    read as HTTP/1.1, the response comes on stream 1."""
    server = serve(info, lifespan="off")
    data = tmp_path / "body.txt"
    data.write_bytes(b"upgraded body")
    result = subprocess.run(
        ["nghttp", "-nvu", "-t", "10", "-d", str(data), server.url + "/up"],
        capture_output=True,
        timeout=20,
    )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "HTTP Upgrade response" in out or "101" in out
    assert ":status: 200" in out


def test_h2c_upgrade_with_body_by_hand(serve: Serve) -> None:
    """RFC 7540 §3.2: POST with Upgrade: h2c, HTTP2-Settings and a Content-Length body gets 101,
    then the response to it on stream 1 over HTTP/2, with the body the app read."""
    server = serve(info, lifespan="off")
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config)
    settings_header = conn.initiate_upgrade_connection()
    assert settings_header is not None
    with server.connect() as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: " + settings_header + b"\r\nContent-Length: 5\r\n\r\nhello"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 ")
        sock.sendall(conn.data_to_send())
        body = b""
        ended = False
        sock.settimeout(WAIT)
        while not ended:
            data = sock.recv(65536)
            assert data
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    assert event.stream_id == 1
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
    assert body == b"hello"


def test_h2c_upgrade_with_chunked_body_is_served_as_http11(serve: Serve) -> None:
    """An Upgrade: h2c request with a chunked body is answered over HTTP/1.1 (the upgrade is
    declined, RFC 9110 §7.8): only HTTP/1.1 framing can say where its body ends."""
    server = serve(apps.echo, lifespan="off")
    with server.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAAP__\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"hello")


@pytest.mark.parametrize(
    "settings",
    [b"not*base64!", b"AAMAAA", b"AAIAAAAC"],
    ids=["not-base64url", "not-a-settings-payload", "enable-push-2"],
)
def test_h2c_upgrade_with_malformed_http2_settings_is_400(serve: Serve, settings: bytes) -> None:
    """RFC 7540 §3.2.1: HTTP2-Settings is a base64url SETTINGS payload; one that is not (or holds
    a value out of range, RFC 9113 §6.5.2) is answered 400 with connection: close, never 101."""
    server = serve(apps.hello, lifespan="off")
    with server.connect() as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        status, headers, _body = read_response(sock)
    assert status == 400
    assert headers.get("connection") == "close"


def test_h2c_upgrade_is_ignored_over_tls(serve: Serve, certs: Certs) -> None:
    """RFC 9113 §3.1: h2c is for cleartext; over TLS an Upgrade: h2c request is plain HTTP/1.1."""
    server = serve(apps.hello, lifespan="off", ssl_certfile=str(certs.server_file))
    context = certs.client_context(("http/1.1",))
    with context.wrap_socket(server.connect(), server_hostname="localhost") as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
        )
        status, _, body = read_response(sock)
    assert (status, body) == (200, b"Hello, world!")


# ---------------------------------------------------------------- a browser


BROWSER = shutil.which("chromium-headless-shell")


async def page(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/api":
        body = json.dumps({"version": scope["http_version"]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    html = (
        "<!doctype html><html><body><p id=page>page over HTTP/{}</p><p id=api>pending</p><script>"
        "fetch('/api').then(r => r.json()).then(j => {{document.getElementById('api').textContent ="
        " 'api over HTTP/' + j.version}})</script></body></html>".format(scope["http_version"])
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
    await send({"type": "http.response.body", "body": html})


@pytest.mark.skipif(BROWSER is None, reason="chromium-headless-shell is not installed")
def test_browser_loads_a_page_over_http2_with_tls(serve: Serve, certs: Certs, tmp_path: Path) -> None:
    """A real browser (Chromium) negotiates h2 by ALPN, loads the page and runs its fetch over
    the same HTTP/2 connection; the DOM it renders says so."""
    server = serve(page, lifespan="off", ssl_certfile=str(certs.server_file))
    assert BROWSER is not None
    result = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--ignore-certificate-errors",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            f"https://localhost:{server.port}/",
        ],
        capture_output=True,
        timeout=60,
    )
    dom = result.stdout.decode()
    assert "page over HTTP/2" in dom, dom + result.stderr.decode()[-2000:]
    assert "api over HTTP/2" in dom


def test_idle_connection_gets_goaway_and_closes(h2serve: H2Start) -> None:
    """--timeout-keep-alive on HTTP/2: a connection with no open stream past the timeout gets
    GOAWAY NO_ERROR and is closed."""
    env = h2serve(apps.hello, timeout_keep_alive=1.0)
    with env.client() as client:
        response = client.response(client.request("/", scheme=env.scheme))
        assert response.status == 200
        started = time.monotonic()
        goaway = client.wait_goaway(WAIT)
        assert goaway is not None and goaway.error_code == 0
        assert client.wait_closed()
    assert 0.5 < time.monotonic() - started < 4.0


def test_stalled_request_body_is_reset_after_the_body_timeout(h2serve: H2Start) -> None:
    """--timeout-request-body on HTTP/2: a stream whose body stops arriving while its app waits
    is reset (CANCEL) and the app sees http.disconnect; the connection goes on."""
    seen: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/ok":
            await apps.hello(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        seen.append(message["type"])
        done.set()

    env = h2serve(app, timeout_request_body=0.5)
    with env.client() as client:
        sid = client.request("/", "POST", body=b"part", end=False, scheme=env.scheme)
        response = client.response(sid)
        assert response.reset == h2.errors.ErrorCodes.CANCEL
        assert done.wait(WAIT)
        ok = client.response(client.request("/ok", scheme=env.scheme))
        assert ok.status == 200
    assert seen == ["http.disconnect"]


def test_access_log_line_for_an_http2_request(h2serve: H2Start, caplog: pytest.LogCaptureFixture) -> None:
    """The access log has one line per HTTP/2 request, with HTTP/2 as its version."""
    caplog.set_level("INFO", logger="wherry.access")  # before the start: the server decides then
    env = h2serve(apps.hello, access_log=True)
    with env.client() as client:
        response = client.response(client.request("/logged?x=1", scheme=env.scheme))
        assert response.status == 200
        assert client.wait(lambda: any("/logged" in r.getMessage() for r in caplog.records), WAIT)
    line = next(r.getMessage() for r in caplog.records if "/logged" in r.getMessage())
    assert '"GET /logged?x=1 HTTP/2" 200 13' in line


def test_h2c_upgrade_body_that_stalls_meets_the_body_deadline(serve: Serve) -> None:
    """--timeout-request-body holds for the HTTP/1.1 body of an h2c Upgrade request: a body that
    stops arriving is answered 408 in HTTP/1.1 (the 101 waits for the whole body, so nothing was
    switched) and the connection ends; the app sees http.disconnect."""
    seen: list[str] = []
    done = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        seen.append(message["type"])
        done.set()

    server = serve(app, lifespan="off", timeout_request_body=0.5)
    with server.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAAP__\r\nContent-Length: 100\r\n\r\nonly part"
        )
        sock.settimeout(WAIT)
        data = b""
        while piece := sock.recv(65536):
            data += piece
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b"101" not in data
    assert done.wait(WAIT)
    assert seen == ["http.disconnect"]


def test_h2c_upgrade_body_is_held_until_the_app_reads_it(serve: Serve) -> None:
    """The body of an h2c Upgrade request is outside HTTP/2 flow control: the server stops reading
    it while the app has not taken it (the HTTP/1.1 way), and the whole body arrives in the end."""
    release = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await anyio.to_thread.run_sync(release.wait, WAIT, abandon_on_cancel=True)
        body = await apps.read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    server = serve(app, lifespan="off")
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    conn = h2.connection.H2Connection(config)
    settings_header = conn.initiate_upgrade_connection()
    assert settings_header is not None
    size = 16_000_000
    with server.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings_header + b"\r\nContent-Length: %d\r\n\r\n" % size
        )
        sock.setblocking(False)
        sent = 0
        chunk = b"b" * 65536
        deadline = time.monotonic() + WAIT
        while sent < size and time.monotonic() < deadline:  # until the server stops taking it
            try:
                sent += sock.send(chunk[: size - sent])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], 0.3)
                if not writable:
                    break
        assert sent < size  # held back: kernel buffers are far smaller than 16 MB
        release.set()
        sock.setblocking(True)
        sock.sendall(b"b" * (size - sent))
        sock.sendall(conn.data_to_send())
        sock.settimeout(WAIT)
        body = b""
        ended = False
        while not ended:
            data = sock.recv(65536)
            assert data
            if data.startswith(b"HTTP/1.1 101"):
                data = data.split(b"\r\n\r\n", 1)[1]
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
    assert body == b"%d" % size


def test_reset_streams_count_while_their_apps_run(h2serve: H2Start) -> None:
    """CVE-2023-44487, slow-app variant: a stream the client reset still counts against
    --h2-max-concurrent-streams while its app runs, so resets cannot pile up running apps; the
    stream over the limit is refused (REFUSED_STREAM) and the connection stays usable."""
    release = threading.Event()
    running: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/stuck":
            running.append(scope["path"])
            # An app that ignores http.disconnect and keeps working for a while.
            await anyio.to_thread.run_sync(release.wait, WAIT, abandon_on_cancel=True)
            return
        await apps.hello(scope, receive, send)

    env = h2serve(app, h2_max_concurrent_streams=3)
    try:
        with env.client() as client:
            assert client.wait(lambda: client.conn.remote_settings.max_concurrent_streams == 3)
            for _ in range(3):
                sid = client.request("/stuck", end=True, scheme=env.scheme)
                client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                client.flush()
            assert client.wait(lambda: len(running) == 3)
            refused = client.response(client.request("/", scheme=env.scheme))
            assert refused.reset == h2.errors.ErrorCodes.REFUSED_STREAM
            release.set()
            assert client.goaway is None
    finally:
        release.set()


CL_MISMATCH = {
    "/long": (b"2", [(b"hello", False)]),
    "/short": (b"100", [(b"hello", False)]),
    "/long-first-piece": (b"2", [(b"hello", True), (b"", False)]),
    "/long-later-piece": (b"5", [(b"hel", True), (b"lo!!", False)]),
}


def test_body_that_differs_from_its_content_length(h2serve: H2Start) -> None:
    """RFC 9113 §8.1.1: a response whose DATA does not match its content-length is malformed. A
    body refused before anything was sent (one message, or a first piece already too long) gets a
    clean 500: one HEADERS frame, never a second HEADERS without END_STREAM; once part of the body
    is sent, the stream is reset (INTERNAL_ERROR). The connection goes on either way."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] not in CL_MISMATCH:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        length, pieces = CL_MISMATCH[scope["path"]]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
        for body, more in pieces:
            await send({"type": "http.response.body", "body": body, "more_body": more})

    env = h2serve(app)
    with env.client() as client:
        for path in ("/long", "/short", "/long-first-piece"):
            response = client.response(client.request(path, scheme=env.scheme))
            assert (response.status, response.reset) == (500, None), path
            assert response.ended and response.body == b"Internal Server Error\n", path
        sid = client.request("/long-later-piece", scheme=env.scheme)
        while client.responses[sid].reset is None:
            assert client.events(), "no reset"
        assert client.responses[sid].reset == 2  # INTERNAL_ERROR
        assert client.responses[sid].status == 200 and client.responses[sid].body == b"hel"
        ok = client.response(client.request("/", scheme=env.scheme))
        assert (ok.status, ok.body) == (200, b"ok")
        assert client.goaway is None
