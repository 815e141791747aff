"""The asyncio Runtime: the loop's own clock, timers and futures, and the application runners.

Rules of this module:

1. Every application call runs as an ``asyncio.Task``: ``asyncio.current_task()`` returns the same
   task from the app's first line to its last (``asyncio.timeout``, anyio cancel scopes and task
   groups, which Starlette and FastAPI use, depend on it), and cancelling that task cancels the app.
2. A connection runs at most one application call at a time, so each connection has one runner
   (``AppRunner``) and the runner has one task, used for every request of the connection. The app
   starts inside the I/O callback that completed its request, with the runner's task entered as
   the current task and the request's own copy of the context; an app that answers without
   waiting on anything pending (the common case) is done before the callback returns, with no
   scheduling. An app that does wait is handed to the runner's task at that point and goes on
   there, so its task never changes.
3. Each request runs in a fresh copy of the context (``contextvars``), as it would in a task of its
   own: what one request sets is never seen by the next one on the connection.
4. ``on_done`` is called exactly once per application call, with the exception the app ended
   with or None.
"""

from __future__ import annotations

import asyncio
import types
from asyncio import CancelledError
from asyncio.tasks import _enter_task, _leave_task  # the loop's "current task" bookkeeping
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from types import CoroutineType
from typing import Any

from ...asgi.http import ASGIApp, Scope

try:  # the loop -> task mapping behind asyncio.current_task (a Python function on 3.11)
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover - later Pythons keep it elsewhere
    _current_task = asyncio.current_task

OnDone = Callable[[BaseException | None], None]


class AsyncioRuntime:
    """Runtime contract over an asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time
        self.call_at = loop.call_at
        self.create_future = loop.create_future
        self.busy: set[AppRunner] = set()  # runners whose task carries on an application call
        self.runners: set[asyncio.Task[Any]] = set()  # every runner task not yet finished
        self.background: set[asyncio.Task[Any]] = set()  # spawned work (the lifespan driver)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task of its own; it is not one of the app calls cut at shutdown."""
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def app_runner(self) -> AppRunner:
        """A runner for the application calls of one connection, made one at a time."""
        return AppRunner(self)

    def run_app(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        """One application call that runs beside others (an HTTP/2 stream): a runner of its own."""
        runner = AppRunner(self)

        def done(exc: BaseException | None) -> None:
            runner.close()
            on_done(exc)

        runner.run(app, scope, receive, send, done)


class _Job:
    """An application call that waited on something: the runner's task carries it on."""

    __slots__ = ("context", "coro", "error", "on_done", "yielded")

    def __init__(self, coro: Any, context: Context, yielded: Any, on_done: OnDone) -> None:
        self.coro = coro
        self.context = context
        self.yielded = yielded
        self.on_done = on_done
        self.error: BaseException | None = None  # to throw into the coroutine before going on


async def _awaiting(awaitable: Any) -> None:
    """An app that returned an awaitable other than a coroutine (a future, a custom object)."""
    await awaitable


@types.coroutine
def _carry_on(job: _Job) -> Generator[Any, Any, None]:
    """Go on with a suspended application coroutine inside the current task: what it yields (the
    future it waits on) goes to the task, and what the task sends or throws goes back to it, in the
    request's own context."""
    coro = job.coro
    run = job.context.run
    yielded = job.yielded
    error = job.error
    job.yielded = job.error = None
    while True:
        if error is None:
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                error = exc
            else:
                try:
                    yielded = run(coro.send, value)
                except StopIteration:
                    return
                continue
        try:
            yielded = run(coro.throw, error)
        except StopIteration:
            return
        finally:
            error = None


class AppRunner:
    """Runs the application calls of one connection, one after another, under one task."""

    __slots__ = ("_closing", "_job", "_waiter", "busy", "loop", "runtime", "task")

    def __init__(self, runtime: AsyncioRuntime) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self.busy = False  # an application call is under way
        self._job: _Job | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closing = False
        self.task = self._new_task()

    def _new_task(self) -> asyncio.Task[None]:
        task = self.loop.create_task(self._serve())
        self.runtime.runners.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.runtime.runners.discard(task)
        job = self._job
        if job is not None and task is self.task:
            # The task was cancelled before its first step, with a call already handed to it: the
            # call gets the cancellation, in a new task.
            if job.error is None:
                job.error = CancelledError()
            self.task = self._new_task()

    def run(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        """Call the application now; it goes on in the runner's task if it has to wait."""
        loop = self.loop
        task = self.task
        if task.done():
            task = self.task = self._new_task()
        self.busy = True
        context = copy_context()
        current = _current_task(loop)
        if current is not task:
            if current is not None:
                # Called from another task (not the I/O path): the call goes to the runner's task.
                awaitable: Any = context.run(app, scope, receive, send)
                self._hand_over(_Job(_awaiting(awaitable), context, None, on_done))
                return
            _enter_task(loop, task)
        try:
            coro: Any = context.run(app, scope, receive, send)
            if type(coro) is not CoroutineType:
                coro = _awaiting(coro)
            yielded = context.run(coro.send, None)
        except StopIteration:
            self.busy = False
            on_done(None)
        except (KeyboardInterrupt, SystemExit) as exc:
            self.busy = False
            on_done(exc)
            raise
        except BaseException as exc:  # an app error, or an app that cancelled itself
            self.busy = False
            on_done(exc)
        else:
            self._hand_over(_Job(coro, context, yielded, on_done))
        finally:
            if current is None:
                _leave_task(loop, task)

    def _hand_over(self, job: _Job) -> None:
        self._job = job
        self.runtime.busy.add(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def cancel(self) -> None:
        """Cancel the application call under way (the end of a graceful shutdown)."""
        if self.busy:
            self.task.cancel()

    def close(self) -> None:
        """The connection is gone: the task ends once the call under way (if any) returns."""
        self._closing = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _serve(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = self.runtime.busy
        while True:
            job = self._job
            if job is None:
                if self._closing:
                    return
                waiter = self._waiter = self.loop.create_future()
                try:
                    await waiter
                except CancelledError as exc:
                    # Cancelled between application calls (the loop is being torn down, or an app
                    # cancelled its task just before it ended): this task ends; a call handed over
                    # meanwhile gets the cancellation, and a later one gets a new task.
                    job = self._job
                    if job is None:
                        return
                    job.error = exc
                finally:
                    self._waiter = None
                continue
            self._job = None
            error: BaseException | None = None
            try:
                await _carry_on(job)
            except BaseException as exc:
                error = exc
            self.busy = False
            busy.discard(self)
            job.on_done(error)
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise error
            if task.cancelling():
                return  # a cancellation of this task is under way: later calls get a new task
