"""What every connection of one server shares: the app, limits, default headers, the runtime."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..asgi.proxy_headers import ProxyView, TrustedHosts
from ..asgi.scope import http_scope
from ..asgi.tls_extension import tls_extension
from ..contracts import ASGIApp, Receive, Runtime, Scope, Send, TimerHandle, TrackedConnection, Transport
from ..logs import TRACE, format_client
from ..metrics import Metrics
from ..proto.events import Request
from ..proto.http1 import DefaultHeaders, H1Limits
from .lifecycle import Addresses, ConnectionInfo, addresses
from .observe import RequestObserver

if TYPE_CHECKING:
    from ..config import Config
    from ..proto.http2 import H2Limits
    from ..tls import TLSContext

access_logger: Final = logging.getLogger("wherry.access")
error_logger: Final = logging.getLogger("wherry.error")


async def _service_unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"20"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable\n"})


_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> bytes:
    """RFC 9110 §5.6.7 IMF-fixdate, in English whatever the locale: ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    ).encode("ascii")


_H1_EXTENSIONS: Final[dict[str, Any]] = {
    "http.response.trailers": {},
    "http.response.early_hint": {},
    "http.response.pathsend": {},
}


class ServerContext:
    """Per-server state shared by every connection driver."""

    def __init__(self, config: Config, app: ASGIApp, runtime: Runtime) -> None:
        self.config = config
        self.app = app
        self.runtime = runtime
        # The runtime's clock, read where a request is parsed or answered: one call, not a
        # method looked up by name on the runtime each time.
        self.clock: Callable[[], float] = runtime.time
        self.limits = H1Limits(
            max_head=config.limit_request_head,
            max_headers=config.limit_request_headers,
            max_body=config.limit_request_body,
            head_timeout=config.timeout_request_head,
            body_timeout=config.timeout_request_body,
            keep_alive_timeout=config.timeout_keep_alive,
            min_body_rate=config.min_body_rate,
        )
        # Upgrade tokens the HTTP/1.1 core hands to another driver instead of serving as plain
        # HTTP: h2c on plain connections only (ALPN decides over TLS), websocket on both.
        websocket = frozenset((b"websocket",)) if config.ws != "none" else frozenset()
        self.h1_tls_upgrades: frozenset[bytes] = websocket
        h2c = frozenset((b"h2c",)) if config.http2 else frozenset()
        self.h1_upgrades: frozenset[bytes] = h2c | websocket
        self.tls: TLSContext | None = None  # set by the backend when serving TLS
        self.default_headers = DefaultHeaders()
        self.root_path = config.root_path
        self.lifespan_state: dict[str, Any] | None = None
        self.connections: set[TrackedConnection] = set()
        self.tasks = 0  # requests whose app is running
        self.trace = logging.getLogger("wherry.error").isEnabledFor(TRACE)  # connection lines
        self.limit_concurrency = config.limit_concurrency
        access = config.access_log and access_logger.isEnabledFor(logging.INFO)
        self.metrics = Metrics() if config.metrics_bind else None
        # Several apps behind one server (wherry.compose): access lines name the one that answered.
        log_app_name = bool(getattr(app, "logs_app_name", False))
        self.observer = RequestObserver(
            access, config.access_log_format, config.log_format, self.metrics, log_app_name
        )
        # Whether requests are timed and handed to the observer when they end (access log or
        # metrics); decided once here so a server with both off does nothing per request.
        self.access_log = access or self.metrics is not None
        self.proxy_headers = config.proxy_headers
        self.trusted = TrustedHosts(config.forwarded_allow_ips)
        self.proxy_view = ProxyView(
            self.trusted, config.proxy_headers_style, config.root_path, config.forwarded_trust
        )
        self.read_high_water = 65536
        self.max_pipeline = 16
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
            date = http_date(time.time())
            self.default_headers.set_date(b"date: " + date + b"\r\n")
        else:
            self.default_headers.set_date(b"")

    @functools.cached_property
    def h2_limits(self) -> H2Limits:
        """The HTTP/2 settings, made when the first HTTP/2 connection comes (the HTTP/2 code is
        imported then, not by a server that never speaks it)."""
        from ..proto.http2 import H2Limits

        config = self.config
        return H2Limits(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            initial_window_size=config.h2_initial_window_size,
            max_frame_size=config.h2_max_frame_size,
            max_header_list_size=config.h2_max_header_list_size,
            max_body=config.limit_request_body,
            head_timeout=config.timeout_request_head,
            body_timeout=config.timeout_request_body,
            keep_alive_timeout=max(config.timeout_keep_alive, 1.0),
            send_timeout=config.timeout_send,
            min_body_rate=config.min_body_rate,
            # WebSocket over HTTP/2 (RFC 8441) whenever WebSocket is on.
            connect_protocol=config.ws != "none",
        )

    def identify(self, transport: Transport, named: Addresses | None = None) -> ConnectionInfo:
        """Who is at each end of a new connection (made once; handed on with the connection): the
        transport's own addresses, or ``named`` ones (a PROXY header's)."""
        client, server = addresses(transport) if named is None else named
        tls = transport.get_extra_info("sslcontext") is not None
        return ConnectionInfo(
            client,
            server,
            "https" if tls else "http",
            self.trusts(client),
            self.tls_extension(transport) if tls else None,
        )

    def tls_extension(self, transport: Transport) -> dict[str, Any] | None:
        """The ASGI ``tls`` scope extension of a TLS connection (None on plain TCP)."""
        tls = self.tls
        ssl_object = transport.get_extra_info("ssl_object")
        if tls is None or ssl_object is None:
            return None
        return tls_extension(ssl_object, tls.server_cert, tls.cipher_ids)

    def h1_extensions(self, tls: dict[str, Any] | None) -> dict[str, Any]:
        """``scope["extensions"]`` for the HTTP/1.1 requests of one connection (each request gets a
        shallow copy): one dict shared by every plain connection, one of its own over TLS."""
        if tls is None:
            return _H1_EXTENSIONS
        return {**_H1_EXTENSIONS, "tls": tls}

    def connection_closed(self, conn: TrackedConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self.on_empty is not None:
            self.on_empty()

    def call_app(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        done: Callable[[BaseException | None], None],
    ) -> None:
        """Run the app for one request; past ``--limit-concurrency`` a 503 answers instead."""
        app = self.app
        if self.limit_concurrency is not None and self.over_capacity():
            app = _service_unavailable
        self.tasks += 1
        self.total_requests += 1
        self.runtime.run_app(app, scope, receive, send, done)

    def request_scope(
        self,
        request: Request,
        http_version: str,
        info: ConnectionInfo,
        extensions: dict[str, Any],
    ) -> Scope:
        """The ``http`` scope of ``request``, seen through a trusted peer's proxy headers."""
        headers = request.headers
        root_path = self.root_path
        client = info.client
        scheme = info.scheme
        if request.forwarded and info.trusted:
            client, scheme, headers, root_path = self.proxy_view(headers, client, scheme)
        return http_scope(
            request.method,
            http_version,
            request.raw_path,
            request.query_string,
            headers,
            scheme,
            client,
            info.server,
            root_path,
            self.lifespan_state,
            extensions,
        )

    def write_deadline(self, callback: Callable[[], None]) -> TimerHandle:
        """A timer ``--timeout-send`` from now: output that waits that long for a peer that reads
        nothing has its connection cut (``callback``)."""
        runtime = self.runtime
        return runtime.call_at(runtime.time() + self.config.timeout_send, callback)

    def log_write_stalled(self, who: str, client: tuple[str, int] | None) -> None:
        error_logger.info(
            "%s %s read nothing for %.0f s; connection cut",
            who,
            format_client(client),
            self.config.timeout_send,
        )

    def trusts(self, client: tuple[str, int] | None) -> bool:
        """Proxy headers from this peer (a Unix socket's peer is "unix") are believed."""
        return self.proxy_headers and (client[0] if client else "unix") in self.trusted

    def over_capacity(self) -> bool:
        limit = self.limit_concurrency
        return limit is not None and (len(self.connections) > limit or self.tasks >= limit)
