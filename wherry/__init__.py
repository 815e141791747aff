"""Wherry: a production ASGI server."""

from ._build import compiled as _compiled
from .compose import compose
from .config import Config
from .main import Server, run, serve

__version__ = "0.1.0"
# True when the request path runs compiled with mypyc, False in the pure-Python build
# (`wherry --version` says which; docs/discussion/compiled.md).
COMPILED: bool = _compiled()
__all__ = ["COMPILED", "Config", "Server", "__version__", "compose", "run", "serve"]
