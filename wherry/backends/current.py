"""The backend that serves the loop running the caller (which loop that is:
``wherry.backends.primitives``).
(Not in the package's ``__init__``: there, the ``asyncio`` and ``trio`` subpackages would shadow
the libraries of the same names.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .serving import Backend


def backend_class(name: str) -> type[Backend]:
    if name == "trio":
        from .trio.serve import TrioBackend

        return TrioBackend
    from .asyncio.serve import AsyncioBackend

    return AsyncioBackend
