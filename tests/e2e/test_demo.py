"""The demo of the README: what a browser gets from it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx

from examples.certificate import write_certificate
from examples.demo import app as demo_app


def test_echo_answers_a_form_as_text_a_browser_shows(serve: Any) -> None:
    """The page's form posts application/x-www-form-urlencoded; the answer is text/plain, which a
    browser shows (its own content type would make the browser download it)."""
    server = serve(demo_app)
    response = httpx.post(f"{server.url}/echo", data={"message": "hello"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "message=hello"


def test_the_page_links_the_metrics_and_reads_the_stream(serve: Any) -> None:
    server = serve(demo_app)
    page = httpx.get(server.url).text
    assert "/metrics" in page and "--metrics-bind" in page
    assert 'fetch("/stream")' in page
    with httpx.stream("GET", f"{server.url}/stream") as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines == [f"line {i}" for i in range(10)]


def test_the_demo_certificate_serves_the_page_over_http2(serve: Any, tmp_path: Path) -> None:
    """What ``scripts/dev.py demo`` serves on its TLS port: the page over HTTP/2 (ALPN), trusted
    through the authority written beside the certificate."""
    ca, cert, key = write_certificate(tmp_path / "tls")
    server = serve(demo_app, ssl_certfile=str(cert), ssl_keyfile=str(key))
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(ca))) as client:
        response = client.get(f"https://127.0.0.1:{server.port}/")
    assert response.status_code == 200 and response.http_version == "HTTP/2"
    assert "Wherry" in response.text
