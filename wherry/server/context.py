"""What every connection of one server shares: the app, limits, default headers, the runtime."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from ..asgi.http import ASGIApp, FutureLike, Scope
from ..asgi.scope import TrustedHosts
from ..proto.http1 import DefaultHeaders, H1Limits

if TYPE_CHECKING:
    from ..config import Config

access_logger = logging.getLogger("wherry.access")


class TimerHandle(Protocol):
    def cancel(self) -> None: ...

    def when(self) -> float: ...


class Runtime(Protocol):
    """The small contract a backend offers the connection drivers (see docs/discussion/backends.md)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...

    def create_future(self) -> FutureLike: ...

    def run_app(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Any,
        send: Any,
        on_done: Callable[[BaseException | None], None],
    ) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> object: ...


class Connection(Protocol):
    def shutdown(self) -> None: ...

    def abort_all(self) -> None: ...


class ServerContext:
    """Per-server state shared by every connection driver."""

    def __init__(self, config: Config, app: ASGIApp, runtime: Runtime) -> None:
        self.config = config
        self.app = app
        self.runtime = runtime
        self.limits = H1Limits(
            max_head=config.limit_request_head,
            max_headers=config.limit_request_headers,
            max_body=config.limit_request_body,
            head_timeout=config.timeout_request_head,
            body_timeout=config.timeout_request_body,
            keep_alive_timeout=config.timeout_keep_alive,
        )
        self.default_headers = DefaultHeaders()
        self.root_path = config.root_path
        self.lifespan_state: dict[str, Any] | None = None
        self.connections: set[Connection] = set()
        self.tasks = 0  # requests whose app is running
        self.limit_concurrency = config.limit_concurrency
        self.access_log = config.access_log and access_logger.isEnabledFor(logging.INFO)
        self.proxy_headers = config.proxy_headers
        self.trusted = TrustedHosts(config.forwarded_allow_ips)
        self.read_high_water = 65536
        self.max_pipeline = 16
        # Upgrade tokens the HTTP/1.1 core hands to a driver instead of treating as plain HTTP.
        self.accepted_upgrades = frozenset((b"websocket",)) if config.ws != "none" else frozenset()
        self.shutting_down = False
        self.on_empty: Callable[[], None] | None = None
        self.total_requests = 0
        self._set_static_headers()
        self.refresh_date()

    def _set_static_headers(self) -> None:
        server = b"server: wherry\r\n" if self.config.server_header else b""
        rest = []
        for name, value in self.config.header_pairs():
            line = b"%b: %b\r\n" % (name, value)
            if name == b"server":
                server = line  # --header server:... replaces the default
            else:
                rest.append(line)
        self.default_headers.server = server
        self.default_headers.rest = b"".join(rest)

    def refresh_date(self) -> None:
        """Recompute the date line of the default headers; called once a second."""
        if self.config.date_header:
            date = formatdate(usegmt=True).encode("ascii")
            self.default_headers.set_date(b"date: " + date + b"\r\n")
        else:
            self.default_headers.set_date(b"")

    def connection_closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if not self.connections and self.on_empty is not None:
            self.on_empty()

    def over_capacity(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) > limit or self.tasks >= limit)
