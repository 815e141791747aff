"""``--reload``: watch files with watchfiles (in a thread of the supervisor) and report changes.

What is watched: every ``--reload-dir`` (the current directory by default), recursively, minus
the directories tools keep their state in (``.git``, ``__pycache__``, virtual environments...).
A file counts when its name or path matches an ``--reload-include`` pattern (``*.py`` by default)
and no ``--reload-exclude`` pattern. Changes arriving within ``--reload-delay`` of each other are
reported together, once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..config import Config

logger = logging.getLogger("wherry.error")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", ".py[cod]", ".sw.*", "~*")
IGNORED_DIRS = frozenset(
    (
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "node_modules",
        "site-packages",
    )
)


class ReloadFilter:
    """Which changed paths trigger a reload (see the module docstring)."""

    def __init__(self, includes: list[str], excludes: list[str]) -> None:
        self.includes = tuple(includes) or DEFAULT_INCLUDES
        self.excludes = tuple(excludes) or DEFAULT_EXCLUDES

    def __call__(self, _change: Any, path: str) -> bool:
        parts = Path(path).parts
        if any(part in IGNORED_DIRS or part.startswith(".venv") for part in parts[:-1]):
            return False
        name = parts[-1] if parts else path
        if any(fnmatch(name, pattern) or fnmatch(path, pattern) for pattern in self.excludes):
            return False
        return any(fnmatch(name, pattern) or fnmatch(path, pattern) for pattern in self.includes)


class Reloader:
    def __init__(self, config: Config, on_change: Callable[[list[str]], None]) -> None:
        try:
            import watchfiles  # noqa: F401 - checked here so the error is clear and early
        except ImportError:
            raise RuntimeError("--reload needs watchfiles: pip install 'wherry[reload]'") from None
        self.dirs = [os.path.abspath(d) for d in (config.reload_dirs or ["."])]
        self.filter = ReloadFilter(config.reload_includes, config.reload_excludes)
        self.step_ms = max(1, int(config.reload_delay * 1000))
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wherry-reload", daemon=True)

    def start(self) -> None:
        logger.info("Watching %s for changes", ", ".join(self.dirs))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from watchfiles import watch

        for changes in watch(
            *self.dirs,
            watch_filter=self.filter,
            step=self.step_ms,
            stop_event=self._stop,
            rust_timeout=500,
            yield_on_timeout=False,
            raise_interrupt=False,
        ):
            paths = sorted({path for _change, path in changes})
            if paths:
                self.on_change(paths)
