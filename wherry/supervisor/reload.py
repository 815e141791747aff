"""``--reload``: watch files with watchfiles (in a thread of the supervisor) and report changes.

What is watched: every ``--reload-dir`` (the current directory by default), recursively, minus
the directories tools keep their state in (``.git``, ``__pycache__``, virtual environments...).
A file counts when its name or path matches an ``--reload-include`` pattern (``*.py`` by default)
and no ``--reload-exclude`` pattern. Changes arriving within ``--reload-delay`` of each other are
reported together, once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from ..config import Config

logger = logging.getLogger("wherry.error")

POLL_MIN = 0.25  # seconds between two scans when polling
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
            import watchfiles  # noqa: F401 - checked here so the warning comes early
        except ImportError:
            self.polling = True
            logger.warning(
                "watchfiles is not installed: --reload compares file times every %.2f s instead "
                "(pip install 'wherry[reload]' to be told of changes)",
                max(config.reload_delay, POLL_MIN),
            )
        else:
            self.polling = False
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
        if self.polling:
            self._poll()
            return
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

    def _scan(self) -> dict[str, float]:
        """Modification time of every watched file."""
        found: dict[str, float] = {}
        for top in self.dirs:
            for folder, subdirs, files in os.walk(top):
                subdirs[:] = [d for d in subdirs if d not in IGNORED_DIRS and not d.startswith(".venv")]
                for name in files:
                    path = os.path.join(folder, name)
                    if self.filter(None, path):
                        with contextlib.suppress(OSError):  # removed while walking
                            found[path] = os.stat(path).st_mtime
        return found

    def _poll(self) -> None:
        """Without watchfiles: compare file times every --reload-delay (at least POLL_MIN s)."""
        interval = max(self.step_ms / 1000, POLL_MIN)
        before = self._scan()
        while not self._stop.wait(interval):
            now = self._scan()
            changed = sorted(p for p in before.keys() | now.keys() if before.get(p) != now.get(p))
            before = now
            if changed:
                self.on_change(changed)
