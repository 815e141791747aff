"""Which event loop library runs the caller, and the few things code above the backends needs from
it without naming one: a one-shot future, a group of tasks that ends with its block, and the
object a WSGI app's pool threads reach the loop through; and which library an application that
failed was written for.

Each library's own primitives live beside its backend, in ``asyncio/primitives.py`` and
``trio/primitives.py``; this module is the face that names neither. Rules of the three:

1. They are neutral ground: at run time they import nothing of wherry's but one another (and the
   packages they sit in, ``wherry.backends`` and its ``asyncio`` and ``trio``, whose
   ``__init__`` modules import nothing), and trio only in ``trio/primitives.py``, which is
   imported once trio runs. So importing them loads no backend. The backends, the entry points
   and ``wherry.compose`` (a plain ASGI app, which must not know the server running it) all take
   their loop primitives from here. ``tests/test_layers.py`` checks it.
2. The library is asked once where a piece of work starts (``running()``, ``primitives()``:
   ``wherry.Server.serve``, a composite's lifespan), and its primitives are used from then on.
   Nothing here is on a request's path, except ``current_loop()`` once per WSGI request.
3. ``running()`` asks sniffio, the contract by which trio, anyio and trio-asyncio say which
   library runs the current task, so wherry decides as the anyio apps it serves do.
   ``current_loop()`` asks asyncio first (a third of sniffio's cost on asyncio) and falls back
   to trio: the two answers agree in every run wherry supports.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

import sniffio

if TYPE_CHECKING:
    from ..asgi.http import FutureLike
    from ..asgi.wsgi import LoopLike

LOOPS = ("asyncio", "trio")
_OTHER = {"asyncio": "trio", "trio": "asyncio"}

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class Primitives(NamedTuple):
    """What one event loop library offers code that must not name it."""

    name: str  # "asyncio" or "trio"
    create_future: Callable[[], FutureLike]  # a one-shot future: done(), set_result(None), await
    # ``async with task_group() as spawn``: ``spawn(coro)`` runs ``coro`` as a task of its own.
    # The tasks still running when the block ends (or is cancelled, or fails) are cancelled,
    # and the block is left once they have ended: end it when nothing is left for them to do.
    task_group: Callable[[], AbstractAsyncContextManager[Spawn]]


def running() -> str:
    """``asyncio`` or ``trio``: the event loop library running the current task."""
    try:
        name = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("wherry must be awaited inside an asyncio or a trio event loop") from None
    if name not in LOOPS:
        raise RuntimeError(f"wherry runs on asyncio or trio, not {name}")
    return name


def primitives(name: str | None = None) -> Primitives:
    """The primitives of ``name`` (by default of the library running the current task); on
    asyncio, its futures are those of the running loop."""
    if (name or running()) == "trio":
        from .trio.primitives import PRIMITIVES

        return PRIMITIVES
    from .asyncio.primitives import primitives as asyncio_primitives

    return asyncio_primitives(asyncio.get_running_loop())


def new_future() -> FutureLike:
    """A future of the running loop."""
    return primitives().create_future()


def current_loop() -> LoopLike:
    """What a WSGI app's threads reach the running loop through (``create_future`` and
    ``call_soon_threadsafe``): the asyncio loop itself, or trio's equivalent."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from .trio.primitives import TrioLoop

        return TrioLoop()


def foreign_loop(error: BaseException | None, running: str) -> str | None:
    """The name of the event loop library an application needs when ``error`` was raised inside
    that library while ``running`` serves it (a trio app on asyncio, say): trio outside trio
    raises "must be called from async context", asyncio outside asyncio "no running event loop",
    and a coroutine yielding to the wrong loop has the error thrown in at the other library's
    ``yield``. Each has its innermost frame in the library's own package; None otherwise."""
    needed = _OTHER.get(running)
    module = sys.modules.get(needed or "")
    where = getattr(module, "__file__", None)
    if needed is None or where is None:
        return None
    package = os.path.dirname(where) + os.sep
    seen: set[int] = set()
    stack = [error]
    while stack:
        exc = stack.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None and tb.tb_frame.f_code.co_filename.startswith(package):
            return needed
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        stack.extend((exc.__cause__, exc.__context__))
    return None
