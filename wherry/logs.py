"""Log configuration: ``wherry.error`` for the server, ``wherry.access`` for one line per request."""

from __future__ import annotations

import logging
import sys

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}


def configure(log_level: str, access_log: bool) -> None:
    level = LEVELS[log_level]
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name, enabled in (("wherry.error", True), ("wherry.access", access_log)):
        logger = logging.getLogger(name)
        logger.setLevel(level if enabled else logging.CRITICAL + 1)
        logger.propagate = False
        for handler in list(logger.handlers):
            if getattr(handler, "_wherry", False):
                logger.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr if name == "wherry.error" else sys.stdout)
        handler._wherry = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        logger.addHandler(handler)
