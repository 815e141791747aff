"""How the HTTP/1.1 driver carries the ASGI extension messages (trailers, early hints, pathsend),
and reading a file for a response in bounded pieces. Kept out of ``http1.py``: ``H1Server``
only delegates here."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from ..asgi.http import ClientDisconnected, HTTPCycle
from ..proto.events import Headers, LocalProtocolError
from ..proto.fields import trailer_fields

if TYPE_CHECKING:
    from .http1 import H1Server

CHUNK = 65536


async def read_chunks(path: str, size: int) -> AsyncGenerator[tuple[bytes, bool], None]:
    """The file at ``path`` in pieces of at most ``size`` bytes, each with "is it the last".
    Only one piece is in memory at a time; the caller waits for the peer between pieces."""
    with open(path, "rb") as f:
        left = os.fstat(f.fileno()).st_size
        if not left:
            yield b"", True
            return
        while left > 0:
            chunk = f.read(min(size, left))
            if not chunk:
                raise OSError(f"{path} became shorter while being sent")
            left -= len(chunk)
            yield chunk, left <= 0


def accepts_trailers(headers: Headers) -> bool:
    """The request said ``TE: trailers`` (RFC 9110 §10.1.4)."""
    return any(name == b"te" and b"trailers" in value.lower() for name, value in headers)


def encode_trailers(headers: Headers) -> bytes:
    """The trailer section's lines (``fields.trailer_fields``: the fields that must not be
    trailers left out, the others checked as every field the server sends)."""
    return b"".join(name + b": " + value + b"\r\n" for name, value in trailer_fields(headers))


def h1_write_trailers(driver: H1Server, cycle: HTTPCycle, headers: Headers) -> None:
    """End a chunked response with its trailer section when the client accepts trailers;
    otherwise end it as usual and drop them (ASGI: sent only after ``TE: trailers``)."""
    if driver._closed:
        raise ClientDisconnected("the connection is closed")
    try:
        fields = encode_trailers(headers)
        end = driver.core.response_end(driver.ctx.runtime.time())
    except LocalProtocolError:
        driver.abort(cycle)
        raise
    if end == b"0\r\n\r\n" and fields and accepts_trailers(cycle.request.headers):
        end = b"0\r\n" + fields + b"\r\n"
    if end:
        driver.transport.write(end)
    if cycle is driver._reading and not cycle.body_complete:
        driver._drop_unread_body()


def h1_write_informational(driver: H1Server, cycle: HTTPCycle, status: int, headers: Headers) -> None:
    """1xx before the head (103 Early Hints); HTTP/1.0 clients do not get them (RFC 9110 §15.2)."""
    if driver._closed or cycle is not driver._current or cycle.request.http_version != "1.1":
        return
    driver.transport.write(driver.core.informational(status, headers))


async def h1_send_file(driver: H1Server, cycle: HTTPCycle, path: str, more_body: bool) -> None:
    """The body of the response in flight is the file at ``path``: ``loop.sendfile`` (the kernel
    copies it: ``os.sendfile``) on a plain socket, bounded pieces through the transport
    elsewhere (TLS, loops without sendfile). The head is already written."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        framing = driver.core.response_file_framing(size)
        if framing is not None and size:
            prefix, suffix = framing
            transport = driver.transport
            if prefix:
                transport.write(prefix)
            sent = False
            if transport.get_extra_info("sslcontext") is None:
                try:
                    loop = asyncio.get_running_loop()
                    await loop.sendfile(transport, f, 0, size, fallback=False)
                    sent = True
                except (NotImplementedError, AttributeError, RuntimeError, asyncio.SendfileNotAvailableError):
                    f.seek(0)
                except OSError as exc:
                    driver.abort(cycle)
                    raise ClientDisconnected("the connection is closed") from exc
            if not sent:
                left = size
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        driver.abort(cycle)
                        raise OSError(f"{path} became shorter while being sent")
                    left -= len(chunk)
                    if driver._closed:
                        raise ClientDisconnected("the connection is closed")
                    transport.write(chunk)
                    if driver.write_paused:
                        await driver.drain()
            if suffix:
                transport.write(suffix)
    if not more_body:
        driver.write_body(cycle, b"", False)
