"""Which backend serves the code that is running (``running()``), and what the layers above need
from it without naming a loop: the server class, a future, and the loop object a WSGI app reaches
its event loop through. (Not in the package's ``__init__``: there, the ``asyncio`` and ``trio``
subpackages would shadow the libraries of the same names.)"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..asgi.http import FutureLike
    from ..asgi.wsgi import LoopLike
    from .serving import ServerBase

LOOPS = ("asyncio", "trio")


def running() -> str:
    """``asyncio`` or ``trio``: the event loop library running the caller."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    raise RuntimeError("wherry must be awaited inside an asyncio or a trio event loop")


def server_class(name: str) -> type[ServerBase]:
    if name == "trio":
        from .trio.serve import TrioServer

        return TrioServer
    from .asyncio.serve import AsyncioServer

    return AsyncioServer


def new_future() -> FutureLike:
    """A future of the running loop."""
    if running() == "trio":
        from .trio.runtime import TrioFuture

        return TrioFuture()
    return asyncio.get_running_loop().create_future()


def current_loop() -> LoopLike:
    """What a WSGI app's threads reach the running loop through (``create_future`` and
    ``call_soon_threadsafe``): the asyncio loop itself, or trio's equivalent."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        from .trio.runtime import TrioLoop

        loop: Any = TrioLoop()
        return loop  # type: ignore[no-any-return]
