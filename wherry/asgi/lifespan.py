"""The ASGI lifespan protocol (lifespan spec 2.0), driven the same way on every backend.

Rules of this module:

1. ``--lifespan on`` requires the app to speak the protocol: an app that raises or returns before it
   has answered ``lifespan.startup`` stops the server from starting.
2. ``auto`` tolerates an app that does not speak it: one that raises or returns *without having
   read* ``lifespan.startup`` is treated as not supporting lifespan, and no lifespan event is sent
   again. An app that read ``lifespan.startup`` and then raised did speak it: its startup failed,
   and the server does not start in either mode.
3. ``off`` never calls the app with a lifespan scope.
4. ``lifespan.startup.failed`` / ``lifespan.shutdown.failed`` carry the app's own message; it is
   what the operator sees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .http import ASGIApp, FutureLike, Message

logger = logging.getLogger("wherry.error")

LIFESPAN_SPEC_VERSION = "2.0"
# The application's own text (its failure message, often a traceback): wherry.logs keeps its line
# breaks (wherry.logs.APP_TEXT; this layer does not import the logging setup).
APP_TEXT = {"wherry_app_text": True}


class LifespanFailure(Exception):
    """Startup or shutdown failed; the message is the app's own when it gave one."""


class Lifespan:
    def __init__(
        self,
        app: ASGIApp,
        mode: str,
        create_future: Callable[[], FutureLike],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._create_future = create_future
        self._spawn = spawn
        self._events: list[str] = []
        self._receive_waiter: FutureLike | None = None
        self._startup_done = create_future()
        self._shutdown_done = create_future()
        self._startup_read = False  # the app took 'lifespan.startup' from receive()
        self._started = False  # the app answered 'lifespan.startup.complete'
        self._failed: str | None = None
        self._app_error: BaseException | None = None
        self._app_finished = False

    @property
    def app_error(self) -> BaseException | None:
        """The exception the app's lifespan call ended with (None while it runs, or if it
        returned)."""
        return self._app_error

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": LIFESPAN_SPEC_VERSION},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._app_error = exc
            if not isinstance(exc, Exception):
                raise  # cancelled (the server gave up waiting), or the process is exiting
            if self._failed is not None:
                pass  # the app reported its failure itself; its message says what happened
            elif self.mode == "auto" and not self._startup_read:
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        finally:
            self._app_finished = True
            for fut in (self._startup_done, self._shutdown_done):
                if not fut.done():
                    fut.set_result(None)

    async def _receive(self) -> Message:
        while not self._events:
            waiter = self._receive_waiter = self._create_future()
            await waiter
        event = self._events.pop(0)
        if event == "lifespan.startup":
            self._startup_read = True
        return {"type": event}

    def _push(self, event: str) -> None:
        self._events.append(event)
        waiter = self._receive_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if self._startup_done.done():
                raise RuntimeError(f"unexpected {kind!r}")
            if kind.endswith("failed"):
                self._failed = str(message.get("message", ""))
            else:
                self._started = True
            self._startup_done.set_result(None)
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if self._shutdown_done.done() or not self._started:
                raise RuntimeError(f"unexpected {kind!r}")
            if kind.endswith("failed"):
                self._failed = str(message.get("message", ""))
            self._shutdown_done.set_result(None)
        else:
            raise RuntimeError(f"unexpected lifespan message {kind!r}")

    async def startup(self) -> None:
        """Run the app's startup; raises LifespanFailure when it fails (the server must not
        start)."""
        if self.mode == "off":
            return
        logger.info("Waiting for application startup.")
        self._spawn(self._run())
        self._push("lifespan.startup")
        await self._startup_done
        if self._failed is not None:
            raise LifespanFailure(self._failed or "application startup failed")
        if self._started:
            logger.info("Application startup complete.")
            return
        # The app ended without answering 'lifespan.startup'.
        error = self._app_error
        if self.mode == "on" or self._startup_read:
            if error is None:
                raise LifespanFailure("the application returned without completing startup")
            raise LifespanFailure(f"application startup failed: {error!r}")
        self.supported = False
        self.state.clear()
        # uvicorn says so too when the app does not speak the protocol; operators wait for it.
        logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if not self.supported or self._app_finished:
            return
        logger.info("Waiting for application shutdown.")
        self._push("lifespan.shutdown")
        await self._shutdown_done
        if self._failed is not None:
            logger.error("Application shutdown failed: %s", self._failed, extra=APP_TEXT)
        elif self._started:
            logger.info("Application shutdown complete.")
