"""Adapting application callables to ASGI 3."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .http import ASGIApp, Receive, Scope, Send


class ASGI2Adapter:
    """Runs an ASGI 2 application (``app(scope)`` returns ``instance(receive, send)``) as ASGI 3."""

    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def is_asgi3(app: Any) -> bool:
    """Tell ASGI 3 callables (``async def app(scope, receive, send)``) from ASGI 2 ones."""
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.iscoroutinefunction(app):  # functions, methods and partials of them
        return True
    if inspect.isfunction(app) or inspect.ismethod(app) or isinstance(app, functools.partial):
        return False
    call = getattr(app, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def adapt(app: Any, interface: str) -> ASGIApp:
    """Return an ASGI 3 callable for ``app`` given ``--interface`` (auto, asgi3 or asgi2)."""
    if interface == "auto":
        interface = "asgi3" if is_asgi3(app) else "asgi2"
    if interface == "asgi2":
        return ASGI2Adapter(app)
    if interface == "asgi3":
        return app  # type: ignore[no-any-return]
    raise ValueError(f"unknown interface {interface!r}")
