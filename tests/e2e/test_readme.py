"""The Python snippets of README.md, read from the file and run as they are written: each in its own
interpreter, beside a ``myapp`` module that has the names they import; a snippet that serves until
stopped is stopped with CTRL+C (SIGINT) once it answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ..procs import ROOT, free_port, wait_until

README = ROOT / "README.md"

MYAPP = """
from tests.apps import echo as legacy_app
from tests.apps import hello as app
from tests.apps import hello as new_app


def create_app():
    return app
"""


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


SNIPPETS = python_snippets()


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 3


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet-{i}" for i in range(len(SNIPPETS))])
def test_readme_snippet_runs(snippet: str, tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(MYAPP)
    port = free_port()
    code = snippet.replace("8080", str(port))  # a free port for the snippets that bind one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    log = tmp_path / "snippet.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        if re.search(r"^(server|wherry)\.run\(", snippet, re.MULTILINE):  # serves until stopped
            wait_until(lambda: proc.poll() is not None or answers(port), 20, "the snippet to serve")
            assert proc.poll() is None, log.read_text()
            proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
