"""What the drivers share to send a file (wherry/connection/extensions.py): its pieces, read one
at a time, and a file that shrinks while it is sent."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from wherry.connection.extensions import read_chunks


def test_a_file_is_read_in_pieces_the_last_one_marked(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_bytes(b"abcdefghij")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    async def pieces(name: Path) -> list[tuple[bytes, bool]]:
        return [piece async for piece in read_chunks(str(name), 4)]

    assert asyncio.run(pieces(path)) == [(b"abcd", False), (b"efgh", False), (b"ij", True)]
    assert asyncio.run(pieces(empty)) == [(b"", True)]


def test_a_file_that_shrinks_while_it_is_read_is_an_error(tmp_path: Path) -> None:
    """The size is taken when the file is opened: a file cut shorter afterwards ends the
    response with an error, never with a body shorter than the one announced."""
    path = tmp_path / "data"
    path.write_bytes(b"x" * 100_000)

    async def main() -> None:
        chunks = read_chunks(str(path), 20_000)  # more than a read buffer: read as asked
        assert await anext(chunks) == (b"x" * 20_000, False)
        os.truncate(path, 20_000)
        with pytest.raises(OSError, match="became shorter while being sent"):
            async for _ in chunks:  # what was read ahead before the cut, then the error
                pass

    asyncio.run(main())
