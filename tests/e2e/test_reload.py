"""--reload: watchfiles reports changes, the workers are restarted with the new code, a broken
app is reported and the watching goes on; which files count is decided by --reload-include and
--reload-exclude."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import Wherry, wait_until
from wherry.supervisor.reload import ReloadFilter

pytest.importorskip("watchfiles")

APP = """
VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = VERSION.encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "reloaded.py").write_text(APP.format(version="one"))
    return directory


@pytest.fixture
def reloading(app_dir: Path, tmp_path: Path) -> Iterator[Wherry]:
    server = Wherry(
        [
            "reloaded:app",
            "--app-dir",
            str(app_dir),
            "--reload",
            "--reload-dir",
            str(app_dir),
            "--reload-delay",
            "0.05",
            "--workers",
            "2",
            "--lifespan",
            "off",
            "--no-access-log",
        ],
        tmp_path,
    )
    try:
        server.wait_serving()
        yield server
    finally:
        server.close()


def both_ready(server: Wherry) -> None:
    """Both workers imported the first code and the watcher runs: a change from here is a reload
    (a worker still starting would import the changed file without one)."""
    wait_until(lambda: server.log().count(" is ready") >= 2, what="two workers ready")
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    server.wait_log("Watching ")


def answers(server: Wherry, text: str) -> bool:
    try:
        return httpx.get(server.url, timeout=2).text == text
    except httpx.TransportError:
        return False


def test_change_restarts_workers_and_syntax_error_keeps_watching(reloading: Wherry, app_dir: Path) -> None:
    """A saved change is served by new workers; a syntax error is reported, the running workers
    stay, and the next good change is picked up (uvicorn #2146-style reload breakage)."""
    server = reloading
    both_ready(server)
    assert httpx.get(server.url).text == "one"
    first = server.workers()
    (app_dir / "reloaded.py").write_text(APP.format(version="two"))
    wait_until(lambda: answers(server, "two"), what="the changed code")
    # Every worker of the old code is gone (replaced one at a time) before the next step.
    wait_until(lambda: len(server.workers()) == 2 and not server.workers() & first, what="two new workers")
    (app_dir / "reloaded.py").write_text("def broken(:\n")
    server.wait_log("SyntaxError")
    server.wait_log("waiting for a change to try again")
    assert httpx.get(server.url).text == "two"  # the last good code goes on serving
    (app_dir / "reloaded.py").write_text(APP.format(version="three"))
    wait_until(lambda: answers(server, "three"), what="the fixed code")
    assert server.stop() == 0


def test_excluded_file_does_not_restart(reloading: Wherry, app_dir: Path) -> None:
    """Files that match no --reload-include pattern (a .txt here) change nothing."""
    server = reloading
    both_ready(server)
    (app_dir / "notes.txt").write_text("hello")
    (app_dir / "reloaded.py").write_text(APP.format(version="two"))  # a change that does count
    wait_until(lambda: answers(server, "two"), what="the changed code")
    server.wait_log("reloaded.py")
    log = server.log()
    assert "reloaded.py" in log  # the changed files are named ...
    assert "notes.txt" not in log  # ... and the ignored one is not among them


FILTER_TABLE = [
    # (includes, excludes, path, watched?)
    ([], [], "/srv/app/main.py", True),
    ([], [], "/srv/app/README.md", False),
    ([], [], "/srv/app/.hidden.py", False),  # default excludes: dot files
    ([], [], "/srv/app/main.pyc", False),
    ([], [], "/srv/app/.main.py.swp", False),
    ([], [], "/srv/app/~main.py", False),
    ([], [], "/srv/app/__pycache__/main.py", False),
    ([], [], "/srv/app/.git/hooks/x.py", False),
    ([], [], "/srv/app/.venv/lib/site.py", False),
    (["*.html"], [], "/srv/app/templates/index.html", True),
    (["*.html"], [], "/srv/app/main.py", False),  # an include list replaces the default
    (["*.py", "*.toml"], [], "/srv/app/settings.toml", True),
    ([], ["tests_*.py"], "/srv/app/tests_main.py", False),
    ([], ["*/migrations/*"], "/srv/app/migrations/0001.py", False),
    ([], ["*/migrations/*"], "/srv/app/models.py", True),
]


@pytest.mark.parametrize(("includes", "excludes", "path", "watched"), FILTER_TABLE)
def test_reload_filter_table(includes: list[str], excludes: list[str], path: str, watched: bool) -> None:
    """--reload-include/--reload-exclude match a file's name or its whole path (uvicorn's
    defaults: *.py in, dot files, compiled and editor files out)."""
    assert ReloadFilter(includes, excludes)(None, path) is watched
