"""The programmatic entry points: ``run()`` (blocking, owns the process) and ``Server`` /
``serve()``, which serve on the loop that awaits them (asyncio, uvloop or trio)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import os
import random
import socket
import stat
import sys
from collections.abc import Callable
from typing import Any

from .asgi.adapters import adapt
from .asgi.http import ASGIApp, FutureLike
from .asgi.lifespan import LifespanFailure
from .backends.current import backend_class
from .backends.primitives import current_loop, new_future, running
from .backends.serving import Backend
from .config import OPTIONS, Config, ConfigError, parse_bind, read_toml
from .importer import AppImportError, load_app, load_env_file
from .logs import APP_TEXT, LogConfigError, apply_log_config, configure
from .sockets import BindError, create_sockets, describe, held_signals, systemd_activated

logger = logging.getLogger("wherry.error")

STARTUP_FAILURE = 3


class Server:
    """One server: ``await server.serve()`` runs it in the current asyncio (or uvloop) loop, or
    in the current trio run, until shut down.

    Once listening, ``server.addresses`` holds the bound addresses (``(host, port)`` tuples or Unix
    socket paths), ``server.started`` is True and ``await server.wait_started()`` returns.
    """

    def __init__(self, app: Any = None, config: Config | None = None, **options: Any) -> None:
        if isinstance(app, Config):  # uvicorn's form: Server(config)
            if config is not None:
                raise TypeError("pass the Config once")
            app, config = app.app, app
        if config is None:
            config = Config(**options)
        elif options:
            raise TypeError("pass either a Config or keyword options, not both")
        self.config = config
        self.target = app if app is not None else config.app
        self.addresses: list[Any] = []
        self.sockets: list[socket.socket] = []
        self.started = False
        self._started_waiters: list[FutureLike] = []
        self._backend: Backend | None = None
        self._exit_requested = False
        self._force_exit = False
        # A supervised worker is replaced after --limit-max-requests by its supervisor; a single
        # server stops itself, as uvicorn's does.
        self.recycled_by_supervisor = False
        self.notes_said = False

    @property
    def should_exit(self) -> bool:
        """True once a shutdown was asked for; setting it True starts a graceful shutdown."""
        return self._exit_requested

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self.shutdown(force=self._force_exit)

    @property
    def force_exit(self) -> bool:
        """Setting it True (with ``should_exit``) cuts the grace period short."""
        return self._force_exit

    @force_exit.setter
    def force_exit(self, value: bool) -> None:
        self._force_exit = bool(value)
        if value and self._exit_requested:
            self.shutdown(force=True)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve in a new event loop (the ``--loop`` one) until shut down: uvicorn's
        ``Server.run``. Blocks; use ``await serve()`` inside a running loop."""
        configure_logging(self.config)
        if self.config.loop == "trio":
            _import_trio().run(functools.partial(self.serve, sockets))
        else:
            with asyncio.Runner(loop_factory=loop_factory(self.config.loop)) as runner:
                runner.run(self.serve(sockets))

    def load(self) -> ASGIApp:
        config = self.config
        change_directory(config)
        if config.env_file:
            load_env_file(config.env_file)
        primary = None
        if self.target is not None:
            app = load_app(self.target, factory=config.factory, app_dir=config.app_dir)
            primary = adapt(
                app,
                config.interface,
                current_loop=current_loop,
                wsgi_threads=config.wsgi_threads,
                multiprocess=config.workers > 1,
            )
        if config.mount or config.route or config.fallback:
            from .compose import from_config

            try:
                return from_config(primary, config)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if primary is None:
            raise ConfigError("no application given")
        return primary

    async def serve(
        self,
        sockets: list[socket.socket] | None = None,
        on_started: Callable[[Server], Any] | None = None,
    ) -> None:
        config = self.config
        if not logger.handlers and not logging.getLogger().handlers:
            configure_logging(config)  # nothing else set logging up: uvicorn's lines, as uvicorn
        if not self.notes_said:
            self.notes_said = True
            say_notes(config)
        logger.info("Started server process [%d]", os.getpid())
        backend_type = backend_class(running())
        app = self.load()
        if logger.isEnabledFor(logging.DEBUG):
            changed = [
                f"{o.name}=" + ("'***'" if "password" in o.name else repr(getattr(config, o.name)))
                for o in OPTIONS
                if o.name != "app" and getattr(config, o.name) != o.default
            ]
            logger.debug(
                "Serving on %s with %s", backend_type.loop_name, ", ".join(changed) or "the defaults"
            )
        backend = self._backend = backend_type(app, config)
        if config.limit_max_requests is not None and not self.recycled_by_supervisor:
            backend.max_requests = config.limit_max_requests + random.randint(
                0, config.limit_max_requests_jitter
            )
        if self._exit_requested:
            backend.request_exit(self._force_exit)
        own_paths: list[str] = []
        if sockets is None:
            own_paths = unix_paths(config)
            sockets = create_sockets(config)

        def started(socks: list[socket.socket]) -> None:
            self.sockets = socks
            self.addresses = [s.getsockname() for s in socks]
            self.started = True
            for sock in socks:
                where = describe(sock)
                if self.config.ssl_certfile:
                    where = where.replace("http://", "https://", 1)
                logger.info("Wherry running on %s (Press CTRL+C to quit)", where)
            for waiter in self._started_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if on_started is not None:
                on_started(self)

        try:
            await backend.serve(sockets, started)
        finally:
            for sock in sockets:
                sock.close()
            remove_unix_sockets(own_paths)
        logger.info("Finished server process [%d]", os.getpid())

    async def wait_started(self) -> None:
        if self.started:
            return
        waiter = new_future()
        self._started_waiters.append(waiter)
        await waiter

    def shutdown(self, force: bool = False) -> None:
        """Begin a graceful shutdown (``force``: skip the grace period). Safe from any thread."""
        self._exit_requested = True
        if self._backend is not None:
            self._backend.request_exit(force)

    @property
    def connections(self) -> int:
        backend = self._backend
        return len(backend.ctx.connections) if backend is not None and backend.ctx is not None else 0


async def serve(
    app: Any,
    config: Config | None = None,
    *,
    on_started: Callable[[Server], Any] | None = None,
    **options: Any,
) -> None:
    """Serve ``app`` inside the running asyncio loop or trio run until shut down (SIGINT/SIGTERM
    in the main thread)."""
    await Server(app, config, **options).serve(on_started=on_started)


def configure_logging(config: Config) -> None:
    """Wherry's handlers (with --access-logfile/--error-logfile), then --log-config's file."""
    configure(
        config.log_level,
        config.access_log,
        config.log_format,
        access_logfile=config.access_logfile,
        error_logfile=config.error_logfile,
    )
    if config.log_config:
        apply_log_config(config.log_config)


def say_notes(config: Config) -> None:
    """What Wherry does differently from what the options asked for: one line each, once."""
    for note in config.notes:
        logger.warning("%s", note)


def change_directory(config: Config) -> None:
    if config.chdir and os.getcwd() != config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise ConfigError(f"--chdir {config.chdir}: {exc.strerror}") from None


def unix_paths(config: Config) -> list[str]:
    """The Unix socket files the options bind (and so remove on exit); none under systemd
    socket activation, whose unit owns them."""
    if systemd_activated():
        return []
    if config.bind:
        return [str(target) for kind, target in map(parse_bind, config.bind) if kind == "unix"]
    if config.uds and config.fd is None:
        return [config.uds]
    return []


def remove_unix_sockets(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The asyncio loop ``--loop`` names (trio is run by ``run_in_process`` itself)."""
    if ":" in name:  # an import string, as uvicorn's Config takes: a callable making the loop
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"--loop {name}: cannot import the loop factory ({exc})") from None
        if not callable(factory):
            raise ConfigError(f"--loop {name}: not a callable that returns an event loop")
        return factory  # type: ignore[no-any-return]
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise ConfigError(
                    "--loop uvloop: uvloop is not installed (pip install 'wherry[uvloop]', or --loop auto)"
                ) from None
        else:
            return uvloop.new_event_loop  # type: ignore[no-any-return,unused-ignore]
    return asyncio.new_event_loop


def run(app: Any = None, config: Config | None = None, **options: Any) -> None:
    """Serve ``app`` (an ASGI app or 'module:attribute') in this process until SIGINT/SIGTERM.

    Exits the process with status 3 when the application's lifespan startup fails and 1 when the app
    cannot be imported or the address cannot be bound.
    """
    if config is None:
        if options.get("config"):
            merged = read_toml(options["config"])
            merged.update(options)
            options = merged
        if app is not None:
            options["app"] = app
        config = Config(**options)
    elif options:
        raise TypeError("pass either a Config or keyword options, not both")
    if app is not None:
        config.app = app
    if config.app is None and not (config.mount or config.route):
        raise ConfigError("no application given")
    try:
        configure_logging(config)
        change_directory(config)
    except (LogConfigError, ConfigError) as exc:
        _fail(str(exc))
    say_notes(config)
    if config.env_file:
        try:
            load_env_file(config.env_file)
        except AppImportError as exc:
            logger.error("Error loading application: %s", exc)
            sys.exit(1)
    from .supervisor import Supervisor, needs_supervisor
    from .supervisor.ops import (
        PrivilegeError,
        check_privileges,
        drop_privileges,
        remove_pid_file,
        write_pid_file,
    )

    if config.loop == "trio":
        try:
            _import_trio()
        except ConfigError as exc:
            _fail(str(exc))
    if needs_supervisor(config) and not isinstance(config.app, str):
        _fail(
            "--workers, --reload and --limit-worker-rss start the application in new processes: "
            "pass it as an import string, wherry.run('module:app', ...), not as an object"
        )
    own_paths = unix_paths(config)
    # From the moment the sockets listen, a client may connect and a signal may come: it is held
    # until the supervisor's or the server's own handlers take over and act on it.
    with held_signals():
        try:
            check_privileges(config.user, config.group)
            sockets = create_sockets(config)
        except PrivilegeError as exc:
            logger.error("%s", exc)
            sys.exit(1)
        except BindError as exc:
            logger.error("%s", exc.strerror or exc)
            sys.exit(1)
        if config.pid_file:
            write_pid_file(config.pid_file)
        try:
            if needs_supervisor(config):
                sys.exit(Supervisor(config, sockets).run())
            _load_server_modules(config)
            drop_privileges(config.user, config.group)
            run_in_process(config, sockets)
        finally:
            if config.pid_file:
                remove_pid_file(config.pid_file)
            remove_unix_sockets(own_paths)


def _fail(message: str) -> None:
    """A one-line error, then exit 1 (nothing was started)."""
    if logger.handlers or logging.getLogger().handlers:
        logger.error("%s", message)
    else:
        print(f"Error: {message}", file=sys.stderr)
    sys.exit(1)


def _load_server_modules(config: Config) -> None:
    """Import the server's own modules (and the standard library they need) before privileges
    are dropped: the unprivileged user may not be able to read the installation."""
    from .backends.asyncio import serve  # noqa: F401

    if config.loop == "trio":
        from .backends.trio import serve as trio_serve  # noqa: F401
    if config.user is not None or config.group is not None:
        # What a server otherwise imports when first needed (an HTTP/2 connection, a WebSocket,
        # a WSGI app, the metrics endpoint) is imported now, while the installation is readable.
        from .asgi import wsgi  # noqa: F401
        from .connection import h2websocket, http2, websocket  # noqa: F401

        if config.metrics_bind:
            import http.server  # noqa: F401


def _import_trio() -> Any:
    try:
        import trio
    except ImportError:
        raise ConfigError("--loop trio: trio is not installed (pip install 'wherry[trio]')") from None
    return trio


def run_in_process(
    config: Config, sockets: list[socket.socket] | None, control: socket.socket | None = None
) -> None:
    """Serve in this process (a single server, or one worker of several) until told to stop.

    ``control`` is a worker's end of the supervisor's control channel; without one, this process
    serves ``--metrics-bind`` itself."""
    try:
        configure_logging(config)
    except LogConfigError as exc:
        _fail(str(exc))
    server = Server(config.app, config)
    server.notes_said = True  # by run(), or by the supervisor for its workers
    server.recycled_by_supervisor = control is not None
    hooks: list[Any] = []
    exporter: Any = None
    if control is None and config.metrics_bind:
        from .supervisor.exporter import Exporter, render

        def metrics() -> str:
            ctx = server._backend.ctx if server._backend is not None else None
            if ctx is None or ctx.metrics is None:
                return render([])
            return render([ctx.metrics.snapshot(len(ctx.connections), ctx.tasks)])

        def ready() -> bool:
            backend = server._backend
            return server.started and backend is not None and not backend.should_exit

        try:
            exporter = Exporter(config.metrics_bind, metrics, ready)  # bound now: errors come first
        except BindError as exc:
            logger.error("%s", exc.strerror or exc)
            sys.exit(1)
        hooks.append(exporter.stop)

    def on_started(srv: Server) -> None:
        backend = srv._backend
        assert backend is not None
        if control is not None:
            from .backends.control import ControlChannel

            channel = ControlChannel(control, backend)
            channel.start()
            hooks.append(channel.close)
        elif exporter is not None:
            exporter.start()

    try:
        # Held signals also keep trio and asyncio.Runner from installing their own SIGINT
        # handlers (each does only over Python's default one), which would abort the run.
        with held_signals():
            if config.loop == "trio":
                trio = _import_trio()
                trio.run(functools.partial(server.serve, sockets, on_started))
            else:
                with asyncio.Runner(loop_factory=loop_factory(config.loop)) as runner:
                    runner.run(server.serve(sockets, on_started))
    except ConfigError as exc:
        logger.error("%s", exc)
        sys.exit(1)
    except LifespanFailure as exc:
        logger.error("Application startup failed: %s", str(exc).rstrip(), extra=APP_TEXT)
        logger.error("Application startup failed. Exiting.")
        sys.exit(STARTUP_FAILURE)
    except AppImportError as exc:
        logger.error("Error loading application: %s", exc)
        sys.exit(1)
    except BindError as exc:
        logger.error("%s", exc.strerror or exc)
        sys.exit(1)
    except KeyboardInterrupt:  # pragma: no cover - a signal before handlers were installed
        pass
    finally:
        for hook in hooks:
            hook()
