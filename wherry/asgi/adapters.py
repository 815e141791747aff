"""Adapting application callables to ASGI 3: ASGI 2 apps, and WSGI apps (``wsgi.py``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .http import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .wsgi import LoopLike

DEFAULT_THREADS = 10  # --wsgi-threads

INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")


class Adapter:
    """An ASGI 3 application made of another kind: ``app`` is the one it runs."""

    __slots__ = ()
    app: Any


class ASGI2Adapter(Adapter):
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


def _positional_arity(app: Any) -> int | None:
    """How many positional arguments calling ``app`` takes (None when it cannot be told)."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def detect_interface(app: Any) -> str:
    """``asgi3``, ``asgi2`` or ``wsgi`` for an application object.

    ASGI 3 is a coroutine function (or an object whose ``__call__`` is one). Of the rest, a callable
    taking two positional arguments is WSGI (``app(environ, start_response)``: Flask and Django's
    ``WSGIHandler`` are objects with such a ``__call__``); anything else is ASGI 2 (``app(scope)``).
    """
    if is_asgi3(app):
        return "asgi3"
    if _positional_arity(app) == 2:
        return "wsgi"
    return "asgi2"


def adapt(
    app: Any,
    interface: str,
    *,
    current_loop: Callable[[], LoopLike] | None = None,
    wsgi_threads: int = DEFAULT_THREADS,
    multiprocess: bool = False,
) -> ASGIApp:
    """Return an ASGI 3 callable for ``app`` given ``--interface`` (auto, asgi3, asgi2 or wsgi).

    ``current_loop`` returns the running event loop; a WSGI app needs it to reach the loop from its
    pool threads."""
    if interface == "auto":
        interface = detect_interface(app)
    if interface == "asgi2":
        return ASGI2Adapter(app)
    if interface == "asgi3":
        return app  # type: ignore[no-any-return]
    if interface == "wsgi":
        if current_loop is None:
            raise ValueError("a WSGI application needs current_loop")
        from .wsgi import WSGIAdapter  # (imported for WSGI apps only)

        return WSGIAdapter(app, current_loop, wsgi_threads, multiprocess)
    raise ValueError(f"unknown interface {interface!r}")
