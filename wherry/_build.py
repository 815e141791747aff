"""Which build of Wherry runs: the request path compiled with mypyc, or pure Python.

``setup.py`` reads ``COMPILED_MODULES`` from this file (without importing the package) and compiles
those modules with mypyc unless ``WHERRY_PURE=1``; the same source runs interpreted in the pure
build. This module itself is never compiled, and imports nothing but the standard library.
See docs/discussion/compiled.md.
"""

from __future__ import annotations

import sys
from importlib.machinery import EXTENSION_SUFFIXES
from importlib.util import find_spec

# The request path of HTTP/1.1 and HTTP/2: protocol cores, the ASGI cycle and scope, the drivers
# and what they share. Every other module stays interpreted (why: docs/discussion/compiled.md).
COMPILED_MODULES = (
    "wherry.proto.events",
    "wherry.proto.fields",
    "wherry.proto.http1",
    "wherry.proto.http2",
    "wherry.proto.websocket",
    "wherry.asgi.http",
    "wherry.asgi.scope",
    "wherry.asgi.proxy_headers",
    "wherry.asgi.extensions",
    "wherry.asgi.websocket",
    "wherry.metrics",
    "wherry.connection.context",
    "wherry.connection.lifecycle",
    "wherry.connection.observe",
    "wherry.connection.http1",
    "wherry.connection.http2",
    "wherry.connection.h2websocket",
    "wherry.connection.websocket",
    "wherry.backends.timers",
)


def is_extension(module: str) -> bool:
    """``module`` is (or, if not imported yet, would be) loaded from a compiled extension file."""
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None) if loaded is not None else None
    if origin is None:
        spec = find_spec(module)
        origin = spec.origin if spec is not None else None
    return origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES))


def compiled() -> bool:
    """The compiled build runs: the HTTP/1.1 core is a mypyc extension module."""
    return is_extension("wherry.proto.http1")


def describe() -> str:
    """What ``wherry --version`` says about the build, e.g. ``compiled with mypyc, CPython 3.12``."""
    build = "compiled with mypyc" if compiled() else "pure Python"
    name = sys.implementation.name
    implementation = "CPython" if name == "cpython" else name
    return f"{build}, {implementation} {sys.version_info[0]}.{sys.version_info[1]}"
