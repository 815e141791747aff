"""WSGI applications for ``bench/wsgi_compare.py``: one plain WSGI app, and the same app behind
the WSGI-to-ASGI adapters of other libraries (when they are installed).

Routes: ``/`` answers ``Hello, world!`` after reading the body; ``/upload`` reads the body in
64 KiB pieces and answers its size; ``/download?N`` streams N bytes in 64 KiB pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

BLOCK = b"x" * 65536

StartResponse = Callable[..., Any]


def _upload(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    stream = environ["wsgi.input"]
    size = 0
    while True:
        chunk = stream.read(65536)
        if not chunk:
            break
        size += len(chunk)
    body = b"%d" % size
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _download(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    size = int(environ.get("QUERY_STRING") or 0)
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])

    def pieces() -> Iterator[bytes]:
        left = size
        while left > 0:
            n = min(left, len(BLOCK))
            yield BLOCK[:n]
            left -= n

    return pieces()


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/upload":
        return _upload(environ, start_response)
    if path == "/download":
        return _download(environ, start_response)
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, world!"]


try:
    from a2wsgi import WSGIMiddleware

    a2wsgi_app: Any = WSGIMiddleware(app, workers=10)
except ImportError:  # pragma: no cover - optional
    a2wsgi_app = None

try:
    from asgiref.wsgi import WsgiToAsgi

    asgiref_app: Any = WsgiToAsgi(app)
except ImportError:  # pragma: no cover - optional
    asgiref_app = None
