"""Running a cycle's coroutines by hand, without an event loop: ``Waiter`` is the future a test
stream creates, and ``Stepped`` runs a coroutine until it waits on one or returns."""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Waiter:
    """A ``FutureLike`` that a ``Stepped`` coroutine waits on until its result is set."""

    def __init__(self) -> None:
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: None) -> None:
        assert not self._done, "a result is set once"
        self._done = True

    def __await__(self) -> Generator[Any, None, None]:
        if not self._done:
            yield self
        assert self._done, "stepped on before its result was set"


class Stepped(Generic[T]):
    """A coroutine run up to its first wait; ``step()`` runs it on to the next one."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self.done = False
        self._result: T | None = None
        self.step()

    def step(self) -> None:
        assert not self.done
        try:
            self._coro.send(None)
        except StopIteration as stop:
            self.done = True
            self._result = stop.value

    @property
    def result(self) -> T:
        assert self.done, "the coroutine is still waiting"
        return self._result  # type: ignore[return-value]
