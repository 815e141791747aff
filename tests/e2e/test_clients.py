"""Real HTTP clients against Wherry: httpx (sync and async), aiohttp and curl."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests import apps
from tests.conftest import RunningServer

Serve = Callable[..., RunningServer]

WAIT = 5.0


def client_port(response: httpx.Response) -> int:
    """The client port the server saw (from the echo app's x-scope header)."""
    return int(json.loads(response.headers["x-scope"])["client"][1])


# ---------------------------------------------------------------- httpx


def test_httpx_sync_get_and_post(serve: Serve) -> None:
    """httpx.Client: a GET and a POST with a body, answered in full."""
    server = serve(apps.echo)
    with httpx.Client(base_url=server.url) as client:
        got = client.get("/path?x=1")
        posted = client.post("/upload", content=b"payload" * 1000)
    assert got.status_code == 200
    assert json.loads(got.headers["x-scope"])["query_string"] == "x=1"
    assert posted.content == b"payload" * 1000


def test_httpx_sync_reuses_the_connection(serve: Serve) -> None:
    """Keep-alive: consecutive requests of one httpx.Client share a connection (RFC 9112 §9.3)."""
    server = serve(apps.echo)
    with httpx.Client(base_url=server.url) as client:
        ports = {client_port(client.get(f"/{i}")) for i in range(5)}
    assert len(ports) == 1


def test_httpx_async_concurrent_requests_and_reuse(serve: Serve) -> None:
    """httpx.AsyncClient: concurrent requests on a bounded pool all succeed, and the pool's
    connections are reused for the next round."""
    server = serve(apps.echo)

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=server.url, limits=limits) as client:
            first = await asyncio.gather(*(client.post("/", content=b"%d" % i) for i in range(20)))
            second = await asyncio.gather(*(client.get("/") for _ in range(8)))
        return list(first), list(second)

    first, second = asyncio.run(main())
    assert [r.content for r in first] == [b"%d" % i for i in range(20)]
    ports_first = {client_port(r) for r in first}
    assert len(ports_first) <= 4
    assert {client_port(r) for r in second} <= ports_first


def test_httpx_streams_a_chunked_upload_and_download(serve: Serve) -> None:
    """An upload from a generator (chunked) and a streamed download, both through httpx."""
    server = serve(apps.echo)

    def body() -> Iterator[bytes]:
        for i in range(10):
            yield b"%d" % i * 1000

    with httpx.stream("POST", server.url, content=body()) as response:
        received = b"".join(response.iter_bytes())
    assert received == b"".join(b"%d" % i * 1000 for i in range(10))


# ---------------------------------------------------------------- aiohttp


def test_aiohttp_get_post_and_streaming(serve: Serve) -> None:
    """aiohttp: GET, POST with a body, a streamed response read in chunks, and a streamed upload."""
    echo = serve(apps.echo)
    streamer = serve(apps.stream)

    async def upload() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"piece%d;" % i

    async def main() -> dict[str, Any]:
        results: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:
            async with session.get(echo.url + "/hello?a=b") as response:
                results["get"] = (response.status, json.loads(response.headers["x-scope"])["path"])
            async with session.post(echo.url + "/", data=b"x" * 5000) as response:
                results["post"] = await response.read()
            async with session.get(streamer.url + "/?n=50&size=100") as response:
                chunks = [c async for c in response.content.iter_chunked(1000)]
                results["stream"] = (response.headers.get("transfer-encoding"), b"".join(chunks))
            async with session.post(echo.url + "/", data=upload()) as response:
                results["upload"] = await response.read()
        return results

    results = asyncio.run(main())
    assert results["get"] == (200, "/hello")
    assert results["post"] == b"x" * 5000
    assert results["stream"] == ("chunked", b"x" * 5000)
    assert results["upload"] == b"".join(b"piece%d;" % i for i in range(5))


# ---------------------------------------------------------------- curl

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--max-time", str(WAIT), *args],
        capture_output=True,
        timeout=WAIT + 5,
        check=False,
    )


@needs_curl
def test_curl_verbose_get_and_connection_reuse(serve: Serve) -> None:
    """curl -v: an HTTP/1.1 exchange, and a second URL on the same command reuses the connection."""
    server = serve(apps.hello)
    result = curl("-v", server.url + "/a", server.url + "/b")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, world!" * 2
    log = result.stderr.decode()
    assert "> GET /a HTTP/1.1" in log
    assert "< HTTP/1.1 200 OK" in log
    assert "< server: wherry" in log
    assert "Re-using existing connection" in log


@needs_curl
def test_curl_http10(serve: Serve) -> None:
    """curl --http1.0: the server answers and closes, streaming without chunks."""
    server = serve(apps.stream)
    result = curl("-v", "--http1.0", server.url + "/?n=3&size=4")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"xxxx" * 3
    log = result.stderr.decode().lower()
    assert "> get /?n=3&size=4 http/1.0" in log
    assert "< connection: close" in log
    assert "transfer-encoding" not in log


@needs_curl
def test_curl_chunked_upload(serve: Serve, tmp_path: Path) -> None:
    """curl -H 'Transfer-Encoding: chunked': the body arrives whole through receive()."""
    server = serve(apps.echo)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 300)
    result = curl("-v", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{payload}", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload.read_bytes()
    assert "transfer-encoding: chunked" in result.stderr.decode().lower()


@needs_curl
def test_curl_expect_100_continue(serve: Serve, tmp_path: Path) -> None:
    """curl -H 'Expect: 100-continue' with a body over 1 KiB: the server answers 100 as soon as the
    app reads, so curl sends the body without waiting out its expect timeout."""
    server = serve(apps.echo)
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"z" * 5000)
    started = time.monotonic()
    result = curl(
        "-v",
        "--expect100-timeout",
        str(WAIT),
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{payload}",
        server.url,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"z" * 5000
    log = result.stderr.decode()
    assert "> Expect: 100-continue" in log
    assert "< HTTP/1.1 100 Continue" in log
    assert elapsed < WAIT / 2, "curl waited for a 100 that never came"


@needs_curl
def test_curl_head(serve: Serve) -> None:
    """curl -I (HEAD): the headers of the GET, no body."""
    server = serve(apps.hello)
    result = curl("-I", server.url)
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode().lower()
    assert text.startswith("http/1.1 200 ok")
    assert "content-length: 13" in text
    assert "hello" not in text
