"""The asyncio Runtime: the loop's own clock, timers and futures, and the application runners.

Rules of this module:

1. Every application call runs as an ``asyncio.Task``: ``asyncio.current_task()`` returns the same
   task from the app's first line to its last (``asyncio.timeout``, anyio cancel scopes and task
   groups, which Starlette and FastAPI use, depend on it), and cancelling that task cancels the app.
2. Tasks are not made per call: a runner (``AppRunner``) owns one task and runs calls in it, one
   at a time, and free runners wait in a pool. A call starts inside the I/O callback that
   completed its request, with a free runner's task entered as the current task; an app that
   answers without waiting on anything pending (the common case) is done before the callback
   returns, with no scheduling, and its runner is free again. An app that does wait is handed to
   that runner's task at that point and goes on there (its task never changes); the runner is
   busy until the app returns. So there are as many runner tasks as apps waiting at once, plus
   one, whatever the number of connections.
3. A call made while a runner's task is current (the next pipelined request, started when the
   previous app returns) runs in that runner when it is free, as the previous one did.
4. Each call runs in a fresh copy of the context (``contextvars``), as it would in a task of its
   own: what one request sets is never seen by another.
5. ``on_done`` is called exactly once per application call, with the exception the app ended
   with or None.
6. Fairness: a call does not overtake the calls already waiting. While any application call
   waits (a runner is busy), a new call is not started inside the I/O callback but queued on the
   loop (``call_soon``), behind the wake-ups already due: a waiting app woken because a
   resource it asked for became free (a pool connection, a lock, a queue item) runs before a
   newcomer can take that resource, as it would if every call were a task of its own. With
   nothing waiting, calls start at once (rule 2).
7. Timers (``call_at``) are one heap (``backends/timers.py``) with one loop timer at its earliest:
   a connection's deadline costs a small object, not a loop handle. A callback's exception goes to
   the loop's exception handler, as it would from a loop timer.
"""

from __future__ import annotations

import asyncio
import math
import types
from asyncio import CancelledError
from asyncio.tasks import _enter_task, _leave_task  # the loop's "current task" bookkeeping
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from types import CoroutineType
from typing import Any, BinaryIO

from ...contracts import ASGIApp, OnDone, Scope, Transport
from ..timers import Timer, TimerHeap

try:  # the loop -> task mapping behind asyncio.current_task (a Python function on 3.11)
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    _current_task = _current_tasks.get
except ImportError:  # pragma: no cover - later Pythons keep it elsewhere
    _current_task = asyncio.current_task

_Call = tuple[ASGIApp, Scope, Any, Any, OnDone]

MAX_FREE_RUNNERS = 64  # runners kept waiting for work after a burst of waiting apps
TIMER_SLACK = 0.001  # a timer due this close to now runs now


class AsyncioRuntime:
    """Runtime contract over an asyncio event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.time = loop.time
        self.create_future = loop.create_future
        self.timers = TimerHeap()
        self._wake: asyncio.TimerHandle | None = None  # the loop timer at the earliest of ``timers``
        self._wake_at = math.inf
        self.free: list[AppRunner] = []  # runners whose task waits for work
        self.by_task: dict[asyncio.Task[None], AppRunner] = {}  # every runner whose task runs
        self.busy: set[AppRunner] = set()  # runners whose task carries on an application call
        self.background: set[asyncio.Task[Any]] = set()  # spawned work (the lifespan driver)
        self.queued: deque[_Call] = deque()  # calls started behind the waiting ones (rule 6)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """A timer in the runtime's heap (rule 7); the loop wakes once for the earliest."""
        timer = self.timers.push(when, callback)
        if when < self._wake_at:
            if self._wake is not None:
                self._wake.cancel()
            self._wake_at = when
            self._wake = self.loop.call_at(when, self._run_timers)
        return timer

    def _run_timers(self) -> None:
        self._wake = None
        self._wake_at = -math.inf  # timers the callbacks add are woken for below
        timers = self.timers
        # The loop may wake a little before the deadline (its clock has a resolution).
        timers.run_due(self.loop.time() + TIMER_SLACK, self._report)
        when = self._wake_at = timers.next_when()
        if when != math.inf:
            self._wake = self.loop.call_at(when, self._run_timers)

    def after_io(self, callback: Callable[[], None]) -> None:
        """``callback`` after the I/O already pending is delivered. asyncio's loop queues due timers
        behind the I/O callbacks of the same turn, but uvloop (libuv) runs due timers, then what
        is queued, then polls: two turns put the call behind one poll on both."""
        self.loop.call_soon(self.loop.call_soon, callback)

    def _report(self, context: dict[str, Any]) -> None:
        self.loop.call_exception_handler(context)

    async def sendfile(self, transport: Transport, file: BinaryIO, offset: int, count: int) -> bool:
        """``loop.sendfile`` (``os.sendfile``: the kernel copies the file) where the loop and the
        transport allow it: a plain socket on asyncio's own loop. False, with nothing sent,
        elsewhere (uvloop, TLS, a wrapped transport)."""
        try:
            await self.loop.sendfile(transport, file, offset, count, fallback=False)  # type: ignore[arg-type]
        except (NotImplementedError, AttributeError, RuntimeError, asyncio.SendfileNotAvailableError):
            file.seek(offset)
            return False
        return True

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task of its own; it is not one of the app calls cut at shutdown."""
        task = self.loop.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def run_app(
        self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone, queued: bool = False
    ) -> None:
        """Call the application in a runner's task (rule 2): now, or, while other calls wait,
        behind the wake-ups already due (rule 6). It goes on in that task if it has to wait.
        (``queued``: the call was queued and its turn has come.)"""
        if self.busy and not queued:
            self.queued.append((app, scope, receive, send, on_done))
            self.loop.call_soon(self._start_queued)
            return
        loop = self.loop
        current = _current_task(loop)
        if current is not None:
            runner = self.by_task.get(current)
            if runner is not None and not runner.busy and not runner.closing:
                runner.start(app, scope, receive, send, on_done)  # rule 3
                return
        free = self.free
        runner = free.pop() if free else AppRunner(self)
        if current is None:
            task = runner.task
            _enter_task(loop, task)
            try:
                runner.start(app, scope, receive, send, on_done)
            finally:
                _leave_task(loop, task)
        else:
            # Called from a task that is no runner's (not the I/O path): the call starts in the
            # runner's task.
            runner.start_later(app, scope, receive, send, on_done)
        if not runner.busy:  # back to the pool (release(), inlined on this path)
            if len(free) < MAX_FREE_RUNNERS and not runner.closing:
                free.append(runner)
            else:
                runner.close()

    def _start_queued(self) -> None:
        queued = self.queued
        if queued:  # (close() may have started it already)
            self.run_app(*queued.popleft(), True)

    def close(self) -> list[asyncio.Task[None]]:
        """Serving is over: queued calls start, free runners end; returns the runner tasks
        still to finish."""
        queued = self.queued
        while queued:
            self.run_app(*queued.popleft(), True)
        for runner in self.free:
            runner.close()
        self.free.clear()
        for runner in self.busy:
            runner.closing = True  # its task ends once its call returns
        return [task for task in self.by_task if not task.done()]


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
    call's own context."""
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
    """One task that runs application calls, one at a time."""

    __slots__ = ("_job", "_waiter", "busy", "closing", "loop", "runtime", "task")

    def __init__(self, runtime: AsyncioRuntime) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self.busy = False  # an application call waits, carried on by this runner's task
        self.closing = False
        self._job: _Job | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] = self.loop.create_task(self._serve())
        runtime.by_task[self.task] = self
        self.task.add_done_callback(self._task_done)

    def start(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        """Step the call with this runner's task current, until it returns or waits."""
        context = copy_context()
        try:
            coro: Any = context.run(app, scope, receive, send)
            if type(coro) is not CoroutineType:
                coro = _awaiting(coro)
            yielded = context.run(coro.send, None)
        except StopIteration:
            on_done(None)
        except (KeyboardInterrupt, SystemExit) as exc:
            on_done(exc)
            raise
        except BaseException as exc:  # an app error, or an app that cancelled itself
            on_done(exc)
        else:
            self._hand_over(_Job(coro, context, yielded, on_done))

    def start_later(self, app: ASGIApp, scope: Scope, receive: Any, send: Any, on_done: OnDone) -> None:
        """The whole call goes to this runner's task (it starts at the task's next step)."""
        context = copy_context()
        awaitable: Any = context.run(app, scope, receive, send)
        self._hand_over(_Job(_awaiting(awaitable), context, None, on_done))

    def _hand_over(self, job: _Job) -> None:
        self._job = job
        self.busy = True
        self.runtime.busy.add(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def release(self) -> None:
        """Back to the pool, or end when the pool is full."""
        free = self.runtime.free
        if len(free) < MAX_FREE_RUNNERS and not self.closing:
            free.append(self)
        else:
            self.close()

    def cancel(self) -> None:
        """Cancel the application call under way (the end of a graceful shutdown)."""
        if self.busy:
            self.task.cancel()

    def close(self) -> None:
        """End the task once the call under way (if any) returns."""
        self.closing = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        runtime = self.runtime
        runtime.by_task.pop(task, None)
        runtime.busy.discard(self)
        self.closing = True
        if self in runtime.free:
            runtime.free.remove(self)
        job = self._job
        if job is not None:
            # The task was cancelled before its first step, with a call already handed to it: the
            # call gets the cancellation, in a runner of its own.
            self._job = None
            if job.error is None:
                job.error = CancelledError()
            AppRunner(runtime)._hand_over(job)

    async def _serve(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        busy = self.runtime.busy
        while True:
            job = self._job
            if job is None:
                if self.closing:
                    return
                waiter = self._waiter = self.loop.create_future()
                try:
                    await waiter
                except CancelledError as exc:
                    # Cancelled between application calls (the loop is being torn down, or an app
                    # cancelled its task just before it ended): this runner ends; a call handed
                    # over meanwhile gets the cancellation.
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
            job.on_done(error)  # may start the connection's next call in this runner (rule 3)
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise error
            if task.cancelling():
                return  # a cancellation of this task is under way: it takes no more calls
            if not self.busy and self._job is None:
                self.release()
