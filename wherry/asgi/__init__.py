"""ASGI semantics, written once for every protocol and backend."""
