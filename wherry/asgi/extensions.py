"""The ASGI extension messages a response may carry (asgiref ``docs/extensions.rst``): the checks
of what they hold. Their order is a part of the response's state machine, the table
``_TRANSITIONS`` of ``asgi/http.py``, which calls these helpers; none of them sees a cycle.

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
from typing import Any

from ..proto.events import Headers
from ..proto.fields import check_field


def fields(value: Any, kind: str) -> Headers:
    """The fields of a trailers or push message, checked when the app sends them, with the rule
    every protocol sends fields by (``proto/fields.py``): a field no protocol can carry is the
    app's error at once, whichever protocol the client speaks, before any of it is written."""
    checked: Headers = []
    for item in value:
        name, field = item
        if not isinstance(name, bytes) or not isinstance(field, bytes):
            raise TypeError(f"{kind}: header names and values must be bytes, got {item!r}")
        if name[:1] == b":":
            raise ValueError(f"{kind}: pseudo-header {name!r} is not allowed")
        checked.append((name, check_field(name, field, f"{kind} field")))
    return checked


def early_hint_fields(links: Any) -> Headers:
    """The Link fields of an ``http.response.early_hint``'s ``links`` (an iterable of bytes)."""
    if isinstance(links, bytes | str):
        raise TypeError("http.response.early_hint 'links' must be an iterable of bytes")
    checked: Headers = []
    for link in links:
        if not isinstance(link, bytes):
            raise TypeError(f"http.response.early_hint: a link must be bytes, got {link!r}")
        checked.append((b"link", link))
    return checked


def push_path(path: Any) -> bytes:
    """The path of an ``http.response.push``, which must be absolute, as the protocol sends it."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"http.response.push 'path' must be an absolute path, got {path!r}")
    return path.encode("utf-8")


def pathsend_path(path: Any) -> str:
    """The ``path`` of an ``http.response.pathsend``: a str, absolute."""
    if not isinstance(path, str):
        raise TypeError(f"http.response.pathsend 'path' must be a str, got {path!r}")
    if not os.path.isabs(path):
        raise ValueError(f"http.response.pathsend 'path' must be absolute, got {path!r}")
    return path
