"""Wherry as a gunicorn worker: ``gunicorn -k wherry.workers.WherryWorker module:app``.

gunicorn's arbiter binds the sockets, forks the workers and replaces them; each worker serves the
ASGI app with Wherry's asyncio server on the sockets it inherited. What gunicorn's settings mean
here:

- ``--bind``: the sockets gunicorn passes (TCP, Unix, ``fd://``), served as they are;
- ``--timeout``: the worker notifies the arbiter from its event loop, so a worker whose loop is
  stuck stops notifying and is killed by the arbiter;
- ``--graceful-timeout``: Wherry's ``--timeout-graceful-shutdown`` on SIGTERM;
- ``--keep-alive``: ``--timeout-keep-alive``;
- ``--max-requests`` (with ``--max-requests-jitter``, drawn by gunicorn per worker): the worker
  drains and exits once it has served that many, and the arbiter starts another;
- ``--access-logfile`` and ``--access-logformat``: Wherry writes the access line with gunicorn's
  atoms to gunicorn's access log (nothing when ``--access-logfile`` is not given);
- ``--forwarded-allow-ips``, ``--limit-request-fields``, ``--backlog``, ``--root-path`` and
  ``--proxy-protocol`` (the PROXY header is accepted from ``--forwarded-allow-ips`` peers);
- SIGTERM drains, SIGINT/SIGQUIT stop at once, SIGUSR1 reopens the log files.

gunicorn is not a dependency of Wherry; this module needs it installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from gunicorn.workers.base import Worker

from .asgi.lifespan import LifespanFailure
from .config import Config
from .logs import APP_TEXT
from .main import Server, loop_factory

STARTUP_FAILURE = 3  # gunicorn's WORKER_BOOT_ERROR: the arbiter stops instead of respawning


def config_from_gunicorn(cfg: Any) -> Config:
    """Wherry's options for what gunicorn's settings say (see the module docstring)."""
    allowed = cfg.forwarded_allow_ips
    if isinstance(allowed, list | tuple):
        allowed = ",".join(allowed)
    options: dict[str, Any] = {
        "timeout_keep_alive": cfg.keepalive,
        "timeout_graceful_shutdown": cfg.graceful_timeout,
        "backlog": cfg.backlog,
        "forwarded_allow_ips": allowed,
        "access_log": cfg.accesslog is not None,
        "access_log_format": cfg.access_log_format,
        "proxy_protocol": str(getattr(cfg, "proxy_protocol", "off")) not in ("off", "False", "None"),
        "root_path": getattr(cfg, "root_path", "") or "",
    }
    if cfg.limit_request_fields:
        options["limit_request_headers"] = cfg.limit_request_fields
    return Config(**options)


class WherryWorker(Worker):  # type: ignore[misc]
    """A gunicorn worker that serves an ASGI application with Wherry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wherry_config = config_from_gunicorn(self.cfg)
        self.server: Server | None = None

    def init_signals(self) -> None:
        # The event loop installs its own handlers in run(); start from the defaults.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGWINCH, signal.SIG_IGN)

    def _route_logs(self) -> None:
        """Wherry's loggers write through gunicorn's handlers (files, syslog, formats)."""
        for name, target in (("wherry.error", self.log.error_log), ("wherry.access", self.log.access_log)):
            logger = logging.getLogger(name)
            logger.handlers = list(target.handlers)
            logger.setLevel(target.level or logging.INFO)
            logger.propagate = False

    def run(self) -> None:
        self._route_logs()
        try:
            with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
                runner.run(self._serve())
        except LifespanFailure as exc:
            self.log.error("Application startup failed: %s", str(exc).rstrip(), extra=APP_TEXT)
            sys.exit(STARTUP_FAILURE)

    async def _serve(self) -> None:
        config = self.wherry_config
        server = self.server = Server(self.wsgi, config)
        sockets = [getattr(s, "sock", s) for s in self.sockets]
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, server.shutdown, True)
        loop.add_signal_handler(signal.SIGUSR1, self.log.reopen_files)
        heartbeat = loop.create_task(self._heartbeat(server))
        try:
            await server.serve(sockets)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, server: Server) -> None:
        """Tell the arbiter this worker's loop is alive; stop on max-requests or a new parent."""
        interval = min(self.timeout, 0.5) if self.timeout > 0 else 0.5
        stopping = False
        while True:
            self.notify()
            if not stopping:
                backend = server._backend
                served = backend.ctx.total_requests if backend is not None and backend.ctx is not None else 0
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    stopping = True
                elif served >= self.max_requests:
                    self.log.info("Autorestarting worker after %d requests (max-requests)", served)
                    stopping = True
                elif not getattr(self, "alive", True):
                    stopping = True
                if stopping:
                    replaced = self.ppid != os.getppid() or served >= self.max_requests
                    setattr(self, "alive", False)  # noqa: B010 - gunicorn's flag, untyped
                    if replaced and backend is not None:
                        # Another worker takes over the socket: the connections this one already
                        # accepted are served (a drain), not closed unanswered.
                        backend.request_exit(drain=True)
                    else:
                        server.shutdown()
            await asyncio.sleep(interval)
