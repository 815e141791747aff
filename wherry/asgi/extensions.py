"""The ASGI extension messages a response may carry (asgiref ``docs/extensions.rst``), with their
order rules; ``HTTPCycle.send`` hands every message other than ``http.response.start`` and
``http.response.body`` here.

- ``http.response.trailers``: only after the last body of a response whose start said
  ``trailers: True``; ``more_trailers`` gathers several messages into one trailer section. The
  protocol decides whether the client gets them (HTTP/1.1 only with chunked framing and
  ``TE: trailers``); either way the last one completes the response.
- ``http.response.early_hint``: a 103 with ``links`` as Link fields, after the start and before
  the head is written (HTTP/1.1 writes the head with the first body); later ones are dropped.
- ``http.response.push``: between the start and the last body; the protocol promises the path
  if the client takes pushes, and ignores it otherwise.
- ``http.response.pathsend``: the final body, as the file at ``path`` (absolute); the protocol
  sends it without reading it whole into memory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..proto.events import Headers
from ..proto.fields import check_field

if TYPE_CHECKING:
    from .http import HTTPCycle, Message


def _fields(value: Any, kind: str) -> Headers:
    """The fields of a trailers or push message, checked when the app sends them, with the rule
    every protocol sends fields by (``proto/fields.py``): a field no protocol can carry is the
    app's error at once, whichever protocol the client speaks, before any of it is written."""
    fields: Headers = []
    for item in value:
        name, field = item
        if not isinstance(name, bytes) or not isinstance(field, bytes):
            raise TypeError(f"{kind}: header names and values must be bytes, got {item!r}")
        if name[:1] == b":":
            raise ValueError(f"{kind}: pseudo-header {name!r} is not allowed")
        fields.append((name, check_field(name, field, f"{kind} field")))
    return fields


async def send_extension(cycle: HTTPCycle, message: Message) -> None:
    from .http import BODY, COMPLETE, START, TRAILERS

    kind = message["type"]
    state = cycle._state
    stream = cycle.stream
    if kind == "http.response.trailers":
        if state != TRAILERS:
            raise RuntimeError(
                "unexpected 'http.response.trailers': it follows the last body of a response "
                "whose http.response.start had trailers: True"
            )
        cycle._trailer_fields = [*cycle._trailer_fields, *_fields(message.get("headers", ()), kind)]
        if message.get("more_trailers", False):
            return
        cycle._state = COMPLETE
        stream.write_trailers(cycle, cycle._trailer_fields)
        cycle._wake()
        if stream.write_paused:
            await stream.drain()
        return
    if state == TRAILERS:
        raise RuntimeError(f"expected 'http.response.trailers', got {kind!r}")
    if kind == "http.response.early_hint":
        links = message.get("links", ())
        if isinstance(links, bytes | str):
            raise TypeError("http.response.early_hint 'links' must be an iterable of bytes")
        fields = []
        for link in links:
            if not isinstance(link, bytes):
                raise TypeError(f"http.response.early_hint: a link must be bytes, got {link!r}")
            fields.append((b"link", link))
        if state == START and fields and not cycle._disconnected:
            stream.write_informational(cycle, 103, fields)
        return
    if kind == "http.response.push":
        path = message.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"http.response.push 'path' must be an absolute path, got {path!r}")
        headers = _fields(message.get("headers", ()), kind)
        if not cycle._disconnected:
            stream.push(cycle, path.encode("utf-8"), headers)
        return
    if kind == "http.response.pathsend":
        path = message.get("path")
        if not isinstance(path, str):
            raise TypeError(f"http.response.pathsend 'path' must be a str, got {path!r}")
        if not os.path.isabs(path):
            raise ValueError(f"http.response.pathsend 'path' must be absolute, got {path!r}")
        size = os.stat(path).st_size  # a missing file fails here, while a 500 can still be sent
        if cycle._disconnected:
            from .http import ClientDisconnected

            raise ClientDisconnected("the client is gone")
        more = cycle._trailers
        if state == START:
            start = cycle._start
            assert start is not None
            cycle._state = BODY
            try:
                stream.write_response(cycle, cycle.status, start.get("headers", ()), b"", True)
            except Exception:
                cycle._state = START
                raise
        await stream.send_file(cycle, path, more)
        cycle.sent_bytes += size
        cycle._state = TRAILERS if more else COMPLETE
        cycle._wake()
        return
    raise RuntimeError(f"expected 'http.response.body', got {kind!r}")
