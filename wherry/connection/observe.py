"""What the server records when a request ends: the access line and the metrics.

Rules of this module:

1. Nothing here runs unless it was asked for. The connection driver times a request and calls
   ``RequestObserver.request_done`` only when the access log or the metrics are on (the server
   context decides once, at start), so a server with both off pays nothing per request.
2. One path for every protocol. Each driver hands its finished requests to the same
   ``request_done`` (HTTP/1.1 and HTTP/2 their ``HTTPCycle``, the WebSocket driver over either a
   record of its handshake): the same line, ``--access-log-format`` atoms, JSON fields and
   counters whatever carried the request. The version is the scope's ``http_version`` (what the
   app was told: "2" for a stream of an HTTP/2 connection, an h2c Upgrade's included).
3. The counting itself is ``wherry.metrics.Metrics`` (the one home of the metrics: counters,
   histogram bounds, snapshots); this module only calls it.
4. Access lines hold no raw text from the peer: every field that came from it goes through
   ``printable`` (and JSON escapes again).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any, Final, Protocol

from ..asgi.http import Scope
from ..logs import answered_by, format_client, printable
from ..metrics import Metrics
from ..proto.events import AppHeaders, Request

access_logger: Final = logging.getLogger("wherry.access")


class Answered(Protocol):
    """What the observer reads of a finished request: an ``Answered``, or the WebSocket driver's
    record of a handshake. (A protocol, not ``HTTPCycle``: compiled, a declared class is checked.)"""

    @property
    def scope(self) -> Scope: ...
    @property
    def request(self) -> Request: ...
    @property
    def status(self) -> int: ...
    @property
    def sent_bytes(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def response_headers(self) -> AppHeaders: ...  # the app's, as it gave them; () if none


_ATOM: Final = re.compile(r"%\((\{[^}]*\}[ioe]|[^)]*)\)")


class _Atoms(dict[str, Any]):
    """The atoms of one line; anything the format names that is not computed is ``-``."""

    def __missing__(self, key: str) -> str:
        return "-"


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    values = [value for key, value in headers if key == name]
    return printable(b", ".join(values)) if values else "-"


def _version(cycle: Answered) -> str:
    """The HTTP version the request was served with, as the scope says it ("1.1", "2")."""
    return str(cycle.scope["http_version"])


def _request_date(seconds_ago: float) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(time.time() - seconds_ago))


Getter = Callable[[Answered, float], Any]


def _simple_getters() -> dict[str, Getter]:
    def client_host(c: Answered, _s: float) -> str:
        client = c.scope.get("client")
        return printable(str(client[0])) if client else "-"

    def request_line(c: Answered, _s: float) -> str:
        r = c.request
        return f"{printable(r.method)} {printable(r.target)} HTTP/{_version(c)}"

    pid = str(os.getpid())
    return {
        "h": client_host,
        "l": lambda _c, _s: "-",
        "u": lambda _c, _s: "-",
        "t": lambda _c, s: _request_date(s),
        "r": request_line,
        "m": lambda c, _s: printable(c.request.method),
        "U": lambda c, _s: printable(c.request.raw_path),
        "q": lambda c, _s: printable(c.request.query_string),
        "H": lambda c, _s: f"HTTP/{_version(c)}",
        "s": lambda c, _s: c.status,
        "B": lambda c, _s: c.sent_bytes,
        "b": lambda c, _s: c.sent_bytes or "-",
        "f": lambda c, _s: _header(c.scope["headers"], b"referer"),
        "a": lambda c, _s: _header(c.scope["headers"], b"user-agent"),
        "T": lambda _c, s: int(s),
        "D": lambda _c, s: int(s * 1_000_000),
        "M": lambda _c, s: int(s * 1000),
        "L": lambda _c, s: f"{s:.6f}",
        "p": lambda _c, _s: f"<{pid}>",
    }


def _request_header(name: bytes) -> Getter:
    def get(cycle: Answered, _s: float) -> str:
        return _header(cycle.scope["headers"], name)

    return get


def _response_header(name: bytes) -> Getter:
    def get(cycle: Answered, _s: float) -> str:
        return _header([(n.lower(), v) for n, v in cycle.response_headers], name)

    return get


def _constant(value: str) -> Getter:
    def get(_c: Answered, _s: float) -> str:
        return value

    return get


def _compile(fmt: str) -> list[tuple[str, Getter]]:
    """The atoms ``fmt`` names, each with the function that computes it (only those)."""
    simple = _simple_getters()
    getters: list[tuple[str, Getter]] = []
    for key in dict.fromkeys(_ATOM.findall(fmt)):
        if key in simple:
            getters.append((key, simple[key]))
        elif key.startswith("{") and len(key) > 3:
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                getters.append((key, _request_header(name.lower().encode("latin-1"))))
            elif kind == "o":
                getters.append((key, _response_header(name.lower().encode("latin-1"))))
            else:
                getters.append((key, _constant(printable(os.environ.get(name, "-")))))
    return getters


class RequestObserver:
    """Access line and metrics for each finished request (rule 1: called only when needed)."""

    __slots__ = ("_access", "_app_name", "_format", "_getters", "_json", "metrics")

    def __init__(
        self,
        access: bool,
        access_format: str | None,
        log_format: str,
        metrics: Metrics | None,
        app_name: bool = False,
    ) -> None:
        self._access = access
        self._app_name = app_name  # add " app=NAME" (the app of a composite that answered)
        self._format = access_format
        self._getters = _compile(access_format) if access_format else []
        self._json = log_format == "json"
        self.metrics = metrics

    def request_done(self, cycle: Answered) -> None:
        seconds = perf_counter() - cycle.started_at
        metrics = self.metrics
        if metrics is not None:
            metrics.observe(cycle.status, seconds)
        if self._access:
            self._log(cycle, seconds)

    def request_rejected(self, client: Sequence[Any] | None, status: int, size: int) -> None:
        """A request the server answered itself: its line is unknown, so "-"."""
        metrics = self.metrics
        if metrics is not None:
            metrics.rejected(status)
        if not self._access:
            return
        text = format_client(client)
        if self._json:
            fields = {"client": text, "request": None, "status": status, "bytes": size}
            access_logger.info('%s - "-" %d %d -', text, status, size, extra={"access": fields})
        else:
            access_logger.info('%s - "-" %d %d -', text, status, size)

    def _log(self, cycle: Answered, seconds: float) -> None:
        fmt = self._format
        if fmt is not None:
            atoms = _Atoms({key: get(cycle, seconds) for key, get in self._getters})
            line = fmt % atoms
            if self._json:
                access_logger.info("%s", line, extra={"access": self._fields(cycle, seconds)})
            else:
                access_logger.info("%s", line)
            return
        request = cycle.request
        client = format_client(cycle.scope.get("client"))
        method = printable(request.method)
        target = printable(request.target)
        args = (
            client,
            method,
            target,
            _version(cycle),
            cycle.status,
            cycle.sent_bytes,
            seconds * 1000.0,
            answered_by(cycle.scope) if self._app_name else "",
        )
        if self._json:
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d %d %.1fms%s', *args, extra={"access": self._fields(cycle, seconds)}
            )
        else:
            access_logger.info('%s - "%s %s HTTP/%s" %d %d %.1fms%s', *args)

    @staticmethod
    def _fields(cycle: Answered, seconds: float) -> dict[str, Any]:
        request = cycle.request
        client = cycle.scope.get("client")
        return {
            "client": format_client(client),
            "method": printable(request.method),
            "target": printable(request.target),
            "http_version": _version(cycle),
            "status": cycle.status,
            "bytes": cycle.sent_bytes,
            "duration_ms": round(seconds * 1000.0, 3),
            "user_agent": _header(cycle.scope["headers"], b"user-agent"),
        }
