"""Several applications behind one server: mounts, method-aware routes and a fallback.

Rules of this module:

1. A ``Composite`` is a plain ASGI 3 application. It uses nothing of the server but the scope,
   ``receive`` and ``send`` it is called with, so it runs under any ASGI server, on asyncio or on
   trio, and it can be mounted inside another one. Requests are dispatched without a call to
   either library; the one that runs is asked once per lifespan (``wherry.backends.primitives``).
2. Dispatch: of the entries whose prefix matches the request path on a segment boundary (``/api``
   takes ``/api`` and ``/api/x``, never ``/apiary``) and whose methods include the request's, the
   longest prefix wins; at equal length an entry with methods beats one without. ``GET`` takes
   ``HEAD`` too, and a WebSocket handshake counts as a ``GET``. A request no entry takes goes to
   the default app, or to the fallback when there is no default app, or gets a 404.
3. Paths follow the www spec (2.5, "WSGI Compatibility": PATH_INFO is ``path`` less ``root_path``):
   ``path`` and ``raw_path`` always hold the whole request path, and ``root_path`` is the prefix
   the app is mounted at. A composite matches ``path`` less its own ``root_path``; a mount extends
   ``root_path`` by its prefix (as Starlette's ``Mount`` does); a route changes nothing. So at any
   depth an app sees ``root_path`` = all the prefixes above it.
4. Fallback: a request for the default app is answered by it, unless its response status is one of
   ``fallback_on``. That response is then held back, not sent, and the request is replayed to the
   fallback app: the body the default app read is kept (up to ``fallback_body_limit`` bytes) and
   given again, followed by the rest of the stream. When the body it read passes the limit, or the
   refused response passes ``HELD_RESPONSE_LIMIT``, no replay is possible and the default app's
   answer stands. A WebSocket that
   the default app closes before accepting, or refuses with a denial response of such a status,
   is replayed the same way.
5. Lifespan: every distinct app gets its own lifespan (spec 2.0, in ``auto`` mode: an app that
   does not speak it is not started), started in declaration order (default, entries, fallback)
   and shut down in reverse; the first startup that fails stops the rest and fails the
   composite's startup with that app's message. An app whose lifespan failed inside the other
   event loop library (a trio app under asyncio) fails it too, whether or not it had read
   ``lifespan.startup``: its requests would fail the same way. Each app's lifespan call is a task
   of a group that lives as long as the composite's own lifespan call: cancelling that call
   cancels them, and one still running when it ends is cancelled. Each app's requests carry a
   copy of its own lifespan state.
6. The app that answered is written in the scope (``ANSWERED_BY``, innermost composite last), for
   the access log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .asgi.adapters import DEFAULT_THREADS, Adapter, adapt
from .asgi.http import ASGIApp, Message, Receive, Scope, Send
from .asgi.lifespan import Lifespan, LifespanFailure
from .backends.primitives import current_loop, foreign_loop, primitives
from .config import parse_mount, parse_route
from .importer import load_app
from .logs import ANSWERED_BY

logger = logging.getLogger("wherry.error")

DEFAULT_BODY_LIMIT = 1024 * 1024
HELD_RESPONSE_LIMIT = 64 * 1024  # a refused answer longer than this is sent rather than held

_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"10")]


class App:
    """One distinct application of a composite, with its name and lifespan state."""

    __slots__ = ("asgi", "lifespan", "name", "state")

    def __init__(self, asgi: ASGIApp, name: str) -> None:
        self.asgi = asgi
        self.name = name
        self.state: dict[str, Any] | None = None  # set when its lifespan startup ran
        self.lifespan: Lifespan | None = None


class Entry:
    """A mount (``mount=True``: root_path grows by ``prefix``) or a route (paths unchanged)."""

    __slots__ = ("app", "methods", "mount", "prefix", "prefix_slash")

    def __init__(self, prefix: str, methods: frozenset[str] | None, app: App, mount: bool) -> None:
        self.prefix = prefix.rstrip("/")  # "/" mounts at the root: prefix ""
        self.prefix_slash = self.prefix + "/"
        self.methods = methods
        self.app = app
        self.mount = mount

    def describe(self) -> str:
        methods = ",".join(sorted(self.methods)) + " " if self.methods else ""
        kind = "mount" if self.mount else "route"
        return f"{kind} {methods}{self.prefix or '/'} -> {self.app.name}"


def app_name(app: Any) -> str:
    """``module:qualname`` of an application object (or of its class)."""
    target = app if hasattr(app, "__qualname__") else type(app)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', '?')}"


class Composite:
    """An ASGI application dispatching to several others (see the module's rules)."""

    def __init__(
        self,
        default: App | None,
        entries: Iterable[Entry],
        fallback: App | None = None,
        fallback_on: Iterable[int] = (404,),
        fallback_body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self.default = default
        self.fallback = fallback
        self.fallback_on = frozenset(fallback_on)
        self.fallback_body_limit = fallback_body_limit
        entries = list(entries)
        # Longest prefix first; at equal length, entries with methods first.
        self.entries = sorted(entries, key=lambda e: (-len(e.prefix), e.methods is None))
        # The entries a request can match, by the first segment of its path ("" for the root).
        by_segment: dict[str, list[Entry]] = {}
        for entry in self.entries:
            by_segment.setdefault(_first_segment(entry.prefix), []).append(entry)
        root = by_segment.pop("", [])
        self._by_segment = {key: (*found, *root) for key, found in by_segment.items()}
        self._root_entries = tuple(root)
        apps: list[App] = []
        for app in [default, *(e.app for e in entries), fallback]:
            if app is not None and all(app is not a for a in apps):
                apps.append(app)
        self.apps = apps

    logs_app_name = True  # the server adds the answering app's name to access lines

    def __repr__(self) -> str:
        parts = [e.describe() for e in self.entries]
        if self.default is not None:
            parts.append(f"default -> {self.default.name}")
        if self.fallback is not None:
            parts.append(f"fallback on {sorted(self.fallback_on)} -> {self.fallback.name}")
        return f"<Composite {'; '.join(parts)}>"

    # ---------------------------------------------------------------- requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        method = scope.get("method", "GET") if kind == "http" else "GET"
        parts = path.split("/", 2)  # the first segment picks the few entries worth a look
        for entry in self._by_segment.get(parts[1] if len(parts) > 1 else "", self._root_entries):
            methods = entry.methods
            if (methods is None or method in methods) and (
                path.startswith(entry.prefix_slash) or path == entry.prefix
            ):
                # No copy: nothing else will see this scope (as in Starlette's routers).
                app = entry.app
                cell = scope.get(ANSWERED_BY)
                if cell is None:
                    scope[ANSWERED_BY] = [app.name]
                else:
                    cell[0] = app.name
                if entry.mount and entry.prefix:
                    scope["root_path"] = root + entry.prefix
                if app.state is not None:
                    scope["state"] = app.state.copy()
                await app.asgi(scope, receive, send)
                return
        default = self.default
        fallback = self.fallback
        if default is None:
            if fallback is not None:
                await fallback.asgi(_child_scope(fallback, scope), receive, send)
            else:
                await _not_found(scope, receive, send)
            return
        if fallback is None or kind not in ("http", "websocket"):
            _answered(default, scope)
            if default.state is not None:
                scope["state"] = default.state.copy()
            await default.asgi(scope, receive, send)
            return
        replay = _Replay(kind, receive, send, self.fallback_on, self.fallback_body_limit)
        try:
            await default.asgi(_child_scope(default, scope), replay.receive_primary, replay.send_primary)
        except Exception:
            if not replay.swallowing:
                raise
            # It had refused the request already: the fallback answers; the error is still logged.
            logger.exception("Exception in %s after it answered a fallback status", default.name)
        if replay.swallowing:
            await fallback.asgi(_child_scope(fallback, scope), replay.receive_fallback, send)

    # ---------------------------------------------------------------- lifespan

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            raise RuntimeError(f"expected 'lifespan.startup', got {message['type']!r}")
        loop = primitives()  # asyncio's or trio's, for this lifespan
        failure: str | None = None
        async with loop.task_group() as spawn:
            started: list[App] = []
            for app in self.apps:
                lifespan = Lifespan(app.asgi, "auto", loop.create_future, spawn)
                failed: str | None = None
                try:
                    await lifespan.startup()
                except LifespanFailure as exc:
                    failed = str(exc)
                # Failing inside the other loop library is a failure even where ``auto`` would
                # take it for "no lifespan": the app's requests would fail the same way.
                failed = _wrong_loop(lifespan, loop.name) or failed
                if failed is not None:
                    failure = f"{app.name}: {failed}"
                    break
                app.lifespan = lifespan
                app.state = lifespan.state if lifespan.supported else None
                started.append(app)
            else:
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
            for app in reversed(started):
                await _shutdown(app)
        if failure is not None:
            await send({"type": "lifespan.startup.failed", "message": failure})
        else:
            await send({"type": "lifespan.shutdown.complete"})


def _wrong_loop(lifespan: Lifespan, running: str) -> str | None:
    """What to say when the app's lifespan failed inside the other event loop library."""
    error = lifespan.app_error
    needed = foreign_loop(error, running)
    if needed is None:
        return None
    return f"the application runs on {needed}, not {running} ({error!r})"


def _first_segment(path: str) -> str:
    """``api`` for ``/api/v1/x``, ``""`` for ``/`` and ``""`` (as ``__call__`` reads it)."""
    parts = path.split("/", 2)
    return parts[1] if len(parts) > 1 else ""


def _answered(app: App, scope: Scope) -> None:
    """Name ``app`` in the answered-by cell of ``scope`` (made here for the outermost composite:
    the server reads it in the scope it made; copies and nested composites share the cell)."""
    cell = scope.get(ANSWERED_BY)
    if cell is None:
        scope[ANSWERED_BY] = [app.name]
    else:
        cell[0] = app.name


def _child_scope(app: App, scope: Scope) -> Scope:
    """A copy of ``scope`` for ``app`` (the default app and the fallback of one request must not
    see each other's changes), with that app's own lifespan state."""
    _answered(app, scope)
    child = dict(scope)
    if app.state is not None:
        child["state"] = app.state.copy()
    return child


async def _shutdown(app: App) -> None:
    lifespan, app.lifespan = app.lifespan, None
    app.state = None
    if lifespan is not None:
        await lifespan.shutdown()


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 404, "headers": _NOT_FOUND_HEADERS})
    await send({"type": "http.response.body", "body": b"Not Found\n"})


# Where a _Replay stands.
_UNDECIDED = 0  # the default app has not answered yet: what it reads is recorded
_PASSED = 1  # its answer goes to the client; nothing more is recorded
_SWALLOWING = 2  # its answer is a fallback status: held back, and the fallback will answer


class _Replay:
    """Records what the default app reads and holds back a response the fallback will replace."""

    __slots__ = (
        "_held",
        "_held_size",
        "_kind",
        "_limit",
        "_receive",
        "_recorded",
        "_recorded_size",
        "_replayed",
        "_response_done",
        "_send",
        "_state",
        "_statuses",
    )

    def __init__(self, kind: str, receive: Receive, send: Send, statuses: frozenset[int], limit: int) -> None:
        self._kind = kind
        self._receive = receive
        self._send = send
        self._statuses = statuses
        self._limit = limit
        self._state = _UNDECIDED
        self._recorded: list[Message] = []
        self._recorded_size = 0
        self._held: list[Message] = []
        self._held_size = 0
        self._response_done = False
        self._replayed = 0

    @property
    def swallowing(self) -> bool:
        return self._state == _SWALLOWING

    # ---------------------------------------------------------------- the default app's side

    async def receive_primary(self) -> Message:
        if self._response_done and self._state == _SWALLOWING:
            # Its (held) answer is complete: it must not read what the fallback will need.
            if self._kind == "http":
                return {"type": "http.disconnect"}
            return {"type": "websocket.disconnect", "code": 1000}
        message = await self._receive()
        if self._state != _PASSED and self._record(message):
            await self._give_up()
        return message

    def _record(self, message: Message) -> bool:
        """Keep ``message`` for the replay; True when the body kept passes the limit."""
        data = message.get("body") or message.get("bytes") or message.get("text")
        if data:
            self._recorded_size += len(data)
            if self._recorded_size > self._limit:
                return True
        self._recorded.append(message)
        return False

    async def send_primary(self, message: Message) -> None:
        state = self._state
        if state == _PASSED:
            await self._send(message)
            return
        kind = message["type"]
        if state == _UNDECIDED:
            if kind in ("http.response.start", "websocket.http.response.start"):
                if message.get("status") in self._statuses:
                    self._state = _SWALLOWING
                    self._held.append(message)
                    return
            elif kind == "websocket.close":
                self._state = _SWALLOWING  # refused before accepting: a 403
                self._held.append(message)
                self._response_done = True
                return
            self._pass()
            await self._send(message)
            return
        # Swallowing: hold the rest of the refused answer, within the limit.
        self._held.append(message)
        body = message.get("body", b"")
        self._held_size += len(body) if isinstance(body, bytes | bytearray) else 0
        if not message.get("more_body", False):
            self._response_done = True
        if self._held_size > HELD_RESPONSE_LIMIT:
            await self._give_up()

    def _pass(self) -> None:
        self._state = _PASSED
        self._recorded = []  # nothing will be replayed: the memory goes now

    async def _give_up(self) -> None:
        """No replay is possible: the default app's answer stands (sent as it was held)."""
        held = self._held
        self._held = []
        self._pass()
        for message in held:
            await self._send(message)

    # ---------------------------------------------------------------- the fallback's side

    async def receive_fallback(self) -> Message:
        recorded = self._recorded
        if self._replayed < len(recorded):
            message = recorded[self._replayed]
            self._replayed += 1
            if self._replayed == len(recorded):
                self._recorded = []
                self._replayed = 0
            return message
        return await self._receive()


# ------------------------------------------------------------------ building composites


class _Builder:
    """Turns application objects and ``module:attr`` strings into ``App``s, each object once."""

    def __init__(self, wsgi_threads: int, app_dir: str | None, multiprocess: bool = False) -> None:
        self.wsgi_threads = wsgi_threads
        self.app_dir = app_dir
        self.multiprocess = multiprocess
        self._by_id: dict[int, App] = {}
        self._keep: list[Any] = []  # the objects behind _by_id's keys stay alive

    def app(self, target: Any, *, interface: str = "auto", name: str | None = None) -> App:
        if isinstance(target, App):
            return target
        if isinstance(target, str):
            name = name or target
            target = load_app(target, app_dir=self.app_dir)
        found = self._by_id.get(id(target))
        if found is not None:
            return found
        if isinstance(target, Composite):
            asgi: ASGIApp = target
        else:
            asgi = adapt(
                target,
                interface,
                current_loop=current_loop,
                wsgi_threads=self.wsgi_threads,
                multiprocess=self.multiprocess,
            )
        app = App(asgi, name or app_name(target))
        self._by_id[id(target)] = app
        self._keep.append(target)
        return app


def compose(
    app: Any = None,
    *,
    mount: Mapping[str, Any] | None = None,
    route: Mapping[str, Any] | None = None,
    fallback: Any = None,
    fallback_on: Iterable[int] = (404,),
    fallback_body_limit: int = DEFAULT_BODY_LIMIT,
    wsgi_threads: int = DEFAULT_THREADS,
) -> Composite:
    """An ASGI application serving several others; it runs under any ASGI server, on asyncio or
    trio.

    ``app`` is the default application. ``mount`` maps path prefixes to applications mounted
    there (``{"/legacy": legacy_app}``); ``route`` maps ``"[METHODS ]PATH"`` to applications that
    get those requests with their path unchanged (``{"POST /orders": legacy_app}``). ``fallback``
    answers what ``app`` answers with a status in ``fallback_on``. Applications are objects or
    ``"module:attr"`` strings, ASGI 3, ASGI 2 or WSGI (told apart as the server does).
    """
    builder = _Builder(wsgi_threads, None)
    return _compose(
        builder,
        builder.app(app) if app is not None else None,
        [(path, target) for path, target in (mount or {}).items()],
        [(spec, target) for spec, target in (route or {}).items()],
        builder.app(fallback) if fallback is not None else None,
        fallback_on,
        fallback_body_limit,
    )


def _compose(
    builder: _Builder,
    default: App | None,
    mounts: list[tuple[str, Any]],
    routes: list[tuple[str, Any]],
    fallback: App | None,
    fallback_on: Iterable[int],
    fallback_body_limit: int,
) -> Composite:
    entries = []
    seen: set[tuple[str, frozenset[str] | None]] = set()
    for path, target in mounts:
        path, _ = parse_mount(f"{path}=x:x")
        entries.append(Entry(path, None, builder.app(target), mount=True))
    for spec, target in routes:
        methods, path, _ = parse_route(f"{spec}=x:x")
        wanted = set(methods)
        if "GET" in wanted:
            wanted.add("HEAD")
        entries.append(Entry(path, frozenset(wanted) if wanted else None, builder.app(target), mount=False))
    for entry in entries:
        key = (entry.prefix, entry.methods)
        if key in seen or (entry.prefix == "" and entry.methods is None and default is not None):
            raise ValueError(f"two applications for the same requests: {entry.describe()}")
        seen.add(key)
    if fallback_body_limit < 0:
        raise ValueError("fallback_body_limit must not be negative")
    return Composite(default, entries, fallback, fallback_on, fallback_body_limit)


def from_config(primary: Any, config: Any) -> Composite:
    """The composite ``--mount``, ``--route`` and ``--fallback`` describe, around the (already
    adapted) APP ``primary`` (None when only mounts and routes were given)."""
    builder = _Builder(config.wsgi_threads, config.app_dir, config.workers > 1)
    default = None
    if primary is not None:
        name = config.app if isinstance(config.app, str) else app_name(primary)
        default = App(primary, name)
        builder._by_id[id(primary)] = default
        if isinstance(primary, Adapter):  # the same object named again
            builder._by_id[id(primary.app)] = default
    mounts = [parse_mount(text) for text in config.mount]
    routes = []
    for text in config.route:
        methods, path, spec = parse_route(text)
        routes.append((f"{','.join(methods)} {path}" if methods else path, spec))
    fallback = builder.app(config.fallback) if config.fallback else None
    return _compose(
        builder, default, mounts, routes, fallback, config.fallback_on, config.fallback_body_limit
    )
