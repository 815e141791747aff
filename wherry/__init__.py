"""Wherry: a production ASGI server."""

from .compose import compose
from .config import Config
from .main import Server, run, serve

__version__ = "0.1.0"
__all__ = ["Config", "Server", "__version__", "compose", "run", "serve"]
