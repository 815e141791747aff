"""The wire side of the ASGI extension messages that is not one protocol's alone: the HTTP/1.1
trailer section, and reading a file for a pathsend response in bounded pieces."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from typing import Final

from ..proto.events import Headers
from ..proto.fields import trailer_fields

CHUNK: Final = 65536


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
