"""The connection drivers over an in-memory transport and a hand-moved clock (tests/helpers/memory.py),
with a real client library on the other side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.memory import ManualRuntime


@pytest.fixture
def runtime() -> Iterator[ManualRuntime]:
    """A runtime for one test; nothing may have reached the loop's exception handler."""
    rt = ManualRuntime()
    yield rt
    rt.close()
    assert not rt.errors, f"unhandled errors in the event loop: {rt.errors}"
