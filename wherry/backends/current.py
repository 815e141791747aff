"""The backend that serves the loop running the caller (which loop that is:
``wherry.backends.primitives``).
(Not in the package's ``__init__``: there, the ``asyncio`` and ``trio`` subpackages would shadow
the libraries of the same names.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .serving import ServerBase


def server_class(name: str) -> type[ServerBase]:
    if name == "trio":
        from .trio.serve import TrioServer

        return TrioServer
    from .asyncio.serve import AsyncioServer

    return AsyncioServer
