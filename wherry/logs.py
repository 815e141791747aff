"""Log configuration: ``wherry.error`` for the server, ``wherry.access`` for one line per request.

Rules of this module:

1. Text that came from the peer goes through ``printable`` before it is a log argument, so a
   record's message never carries a raw control character (C0, DEL or C1: ``\\x1b[`` and ``\\x9b``
   both start a terminal escape). That is the defence against log and terminal injection
   (CVE-2020-7694).
2. The handlers ``configure`` installs format with ``SafeFormatter``, which escapes control
   characters in the final text again, traceback text from applications included, keeping only the
   newlines and tabs of tracebacks; or, with ``--log-format json``, with ``JSONFormatter``: one
   JSON object per line, in which ``json`` escapes every control character.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

TRACE = 5

# The scope key under which a composite of several apps (wherry.compose) names the app that
# answered, for the access log: a one-item list shared by the copies of the scope it makes.
ANSWERED_BY = "wherry.answered_by"
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

# ``extra=APP_TEXT`` marks a record whose arguments are the application's or the operator's own text
# (a lifespan failure with its traceback), never the peer's: its line breaks are kept.
APP_TEXT = {"wherry_app_text": True}

_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_ESCAPES = {i: f"\\x{i:02x}" for i in _CONTROLS}
_ESCAPES_BUT_LINES = {i: e for i, e in _ESCAPES.items() if i not in (0x09, 0x0A)}


def printable(data: bytes | str) -> str:
    """Log-safe text: control characters from the peer never reach a log line raw.

    Bytes are read as Latin-1, so every byte maps to one character and the C1 range is escaped
    like C0.
    """
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    return text.translate(_ESCAPES)


def answered_by(scope: Any) -> str:
    """`` app=NAME`` for an access line: the app of a composite that answered (`` app=-`` if none)."""
    cell = scope.get(ANSWERED_BY)
    return f" app={printable(cell[0]) if cell and cell[0] else '-'}"


def format_client(client: Sequence[Any] | None) -> str:
    """``host:port`` of a scope's client (IPv6 in brackets), or ``-`` without one (Unix sockets)."""
    if not client:
        return "-"
    host = printable(str(client[0]))
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{client[1]}"


class SafeFormatter(logging.Formatter):
    """A formatter whose output holds no raw control characters but the newlines of tracebacks."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        escapes = _ESCAPES_BUT_LINES if getattr(record, "wherry_app_text", False) else _ESCAPES
        return super().formatMessage(record).translate(escapes)

    def format(self, record: logging.LogRecord) -> str:
        # The traceback text may come from another handler's cache (``record.exc_text``): escape
        # the whole output, keeping the line structure of tracebacks and stacks.
        return super().format(record).translate(_ESCAPES_BUT_LINES)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, logger, message, the structured
    fields of an access record (``record.access``) and the traceback, if any. ``json.dumps``
    escapes every control character (C0, DEL and, with ``ensure_ascii``, C1)."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


def configure(
    log_level: str,
    access_log: bool,
    log_format: str = "text",
    *,
    access_logfile: str | None = None,
    error_logfile: str | None = None,
) -> None:
    """Send ``wherry.error`` to stderr and ``wherry.access`` to stdout (only when ``access_log``),
    as text or as JSON lines (``log_format``); ``access_logfile`` / ``error_logfile`` name a file
    instead ('-': the standard stream).

    Calling it again replaces the handlers it installed before and leaves other handlers alone.
    """
    level = LEVELS[log_level]
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JSONFormatter()
    else:
        formatter = SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name, enabled, path in (
        ("wherry.error", True, error_logfile),
        ("wherry.access", access_log, access_logfile),
    ):
        logger = logging.getLogger(name)
        logger.setLevel(level if enabled else logging.CRITICAL + 1)
        logger.propagate = False
        for old in list(logger.handlers):
            if getattr(old, "_wherry", False):
                logger.removeHandler(old)
                if isinstance(old, logging.FileHandler):
                    old.close()
        handler: logging.Handler
        if path and path != "-":
            try:
                handler = logging.FileHandler(path, encoding="utf-8")
            except OSError as exc:
                flag = "--error-logfile" if name == "wherry.error" else "--access-logfile"
                raise LogConfigError(f"{flag} {path}: cannot open it: {exc.strerror}") from None
        else:
            handler = logging.StreamHandler(sys.stderr if name == "wherry.error" else sys.stdout)
        setattr(handler, "_wherry", True)  # noqa: B010 - marks the handlers configure() owns
        handler.setFormatter(formatter)
        logger.addHandler(handler)


class LogConfigError(ValueError):
    """A logging configuration file or log file cannot be used; the message says which."""


def apply_log_config(path: str | dict[str, Any]) -> None:
    """Configure logging from ``path`` as uvicorn's ``--log-config`` does: ``.json`` and
    ``.yaml``/``.yml`` hold a ``logging.config.dictConfig`` dictionary, anything else is a
    ``fileConfig`` file. A file written for uvicorn configures ``uvicorn.error`` and
    ``uvicorn.access``: Wherry's loggers then log through the handlers it gives those (unless the
    file configures ``wherry.error`` / ``wherry.access`` themselves)."""
    import logging.config

    name = path if isinstance(path, str) else "(a dictConfig dictionary)"
    try:
        if isinstance(path, dict):
            logging.config.dictConfig(path)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(json.load(f))
        elif path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError:
                raise LogConfigError(
                    f"--log-config {name}: reading YAML needs PyYAML: pip install pyyaml"
                ) from None
            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(yaml.safe_load(f))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except OSError as exc:
        raise LogConfigError(f"--log-config {name}: cannot read it: {exc.strerror}") from None
    except Exception as exc:  # json, yaml and configparser errors, and dictConfig's ValueError
        text = " ".join(str(exc).split())
        raise LogConfigError(f"--log-config {name}: cannot configure logging: {text}") from None
    for ours, theirs in (("wherry.error", "uvicorn.error"), ("wherry.access", "uvicorn.access")):
        logger = logging.getLogger(ours)
        if any(not getattr(h, "_wherry", False) for h in logger.handlers):
            continue  # the file configures Wherry's logger itself
        source = logging.getLogger(theirs)
        handlers = source.handlers or (
            logging.getLogger("uvicorn").handlers if theirs != "uvicorn.access" else []
        )
        if not handlers:
            continue
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        for handler in handlers:
            logger.addHandler(handler)
        if source.level != logging.NOTSET:
            logger.setLevel(source.level)
        logger.propagate = False
