"""Telling ASGI 3, ASGI 2 and WSGI applications apart (``--interface auto``)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from wherry.asgi.adapters import ASGI2Adapter, adapt, detect_interface
from wherry.asgi.wsgi import WSGIAdapter
from wherry.contracts import Message


async def asgi3_function(scope: Any, receive: Any, send: Any) -> None: ...


class ASGI3Object:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


class ASGI2Class:
    def __init__(self, scope: Any) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None: ...


def asgi2_function(scope: Any) -> Any:
    return ASGI2Class(scope)


def wsgi_function(environ: Any, start_response: Any) -> Any:
    return []


class WSGIObject:
    def __call__(self, environ: Any, start_response: Any) -> Any:
        return []


class WSGIClass:
    """PEP 3333 allows a class as the application: calling it returns the iterable."""

    def __init__(self, environ: Any, start_response: Any) -> None:
        start_response("200 OK", [])

    def __iter__(self) -> Any:
        return iter([b""])


def test_flask_and_django_are_detected_as_wsgi() -> None:
    """Flask and Django's WSGIHandler are objects whose __call__(environ, start_response) is sync."""
    from django.core.handlers.wsgi import WSGIHandler
    from flask import Flask

    assert detect_interface(Flask("detect")) == "wsgi"
    assert detect_interface(WSGIHandler.__new__(WSGIHandler)) == "wsgi"


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (asgi3_function, "asgi3"),
        (ASGI3Object(), "asgi3"),
        (functools.partial(asgi3_function), "asgi3"),
        (ASGI2Class, "asgi2"),
        (asgi2_function, "asgi2"),
        (wsgi_function, "wsgi"),
        (WSGIObject(), "wsgi"),
        (WSGIClass, "wsgi"),
        (functools.partial(wsgi_function), "wsgi"),
    ],
)
def test_interface_is_told_from_the_callable(app: Any, interface: str) -> None:
    """ASGI 3: a coroutine function; WSGI: two positional parameters; ASGI 2: one (``app(scope)``)."""
    assert detect_interface(app) == interface


def test_adapt_wraps_by_interface() -> None:
    """auto picks the adapter; an explicit --interface wins over detection."""
    loop = asyncio.new_event_loop
    assert adapt(asgi3_function, "auto") is asgi3_function
    assert isinstance(adapt(asgi2_function, "auto"), ASGI2Adapter)
    assert isinstance(adapt(wsgi_function, "auto", current_loop=loop), WSGIAdapter)
    assert isinstance(adapt(asgi2_function, "wsgi", current_loop=loop), WSGIAdapter)
    with pytest.raises(ValueError, match="current_loop"):
        adapt(wsgi_function, "wsgi")
    with pytest.raises(ValueError, match="threads"):
        adapt(wsgi_function, "wsgi", current_loop=loop, wsgi_threads=0)


def test_wsgi_adapter_speaks_lifespan_and_refuses_websockets() -> None:
    """Lifespan spec 2.0: startup and shutdown are answered (the pool is released at shutdown);
    a WebSocket is refused with websocket.close before accept (www spec: a 403)."""
    adapter = WSGIAdapter(wsgi_function, asyncio.get_running_loop)

    async def drive(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        await adapter(scope, receive, send)
        return sent

    lifespan = asyncio.run(
        drive({"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    )
    assert [m["type"] for m in lifespan] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    websocket = asyncio.run(drive({"type": "websocket"}, [{"type": "websocket.connect"}]))
    assert [m["type"] for m in websocket] == ["websocket.close"]


class UnreadableSignature:
    """A callable whose signature inspect cannot tell (a broken ``__signature__``)."""

    __signature__ = "not a signature"

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return []


def star_args(*args: Any) -> Any:
    return []


def wsgi_with_keyword_only(environ: Any, start_response: Any, *, debug: bool = False, **extra: Any) -> Any:
    return []


@pytest.mark.parametrize(
    ("app", "interface"),
    [
        (UnreadableSignature(), "asgi2"),
        (star_args, "asgi2"),
        (wsgi_with_keyword_only, "wsgi"),
    ],
    ids=["unreadable-signature", "var-positional", "keyword-only"],
)
def test_only_a_countable_arity_of_two_is_wsgi(app: Any, interface: str) -> None:
    """A callable whose positional arity cannot be told (no signature, or ``*args``) is taken for
    ASGI 2; keyword-only and ``**`` parameters do not count towards the two of WSGI."""
    assert detect_interface(app) == interface


def test_an_unknown_interface_is_refused() -> None:
    """adapt() refuses an --interface it does not know."""
    with pytest.raises(ValueError, match="unknown interface 'asgi4'"):
        adapt(asgi3_function, "asgi4")
