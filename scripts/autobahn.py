#!/usr/bin/env python3
"""Install the Autobahn|Testsuite fuzzing client (``wstest``) for the WebSocket conformance tests.

``autobahntestsuite`` 0.8.2 runs only on Python 2.7. This finds a Python 2.7 (``python2.7`` /
``python2`` on PATH, then pyenv's installs), installs ``virtualenv`` 20.15 (the last line that creates
Python 2 environments) into a private directory with that interpreter's own pip, makes a virtual
environment with it and installs the test suite there from the package index. Everything lives in
one cache directory (``$WHERRY_AUTOBAHN_DIR``, default ``~/.cache/wherry/autobahn-0.8.2``), made once
and reused; a lock file keeps parallel test workers from installing it twice.

Standard library only: ``scripts/dev.py`` imports it before the test suite runs, and the tests'
fixture imports it to find (or make) ``wstest``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

VERSION = "0.8.2"
VIRTUALENV = "virtualenv>=20.15,<20.16"


def cache_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    default = cache / "wherry" / f"autobahn-{VERSION}"
    return Path(os.environ.get("WHERRY_AUTOBAHN_DIR", default))


def find_python2() -> str | None:
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which("python2.7"), shutil.which("python2")]
    installs = sorted((pyenv_root / "versions").glob("2.7.*"), reverse=True)
    candidates += [str(install / "bin" / "python") for install in installs]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == "2.7":
            return candidate
    return None


def wstest_path() -> Path:
    return cache_dir() / "venv" / "bin" / "wstest"


def ensure_wstest(log: bool = True) -> Path:
    """The path of a working ``wstest``, installing it first if needed. Raises RuntimeError with
    the reason when it cannot be installed."""
    root = cache_dir()
    stamp = root / "installed"
    if stamp.exists():
        return wstest_path()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return wstest_path()
        python2 = find_python2()
        if python2 is None:
            raise RuntimeError("no Python 2.7 interpreter (python2.7, python2 or pyenv 2.7.*) was found")
        tool = root / "virtualenv"
        venv = root / "venv"
        for path in (tool, venv):
            if path.exists():
                shutil.rmtree(path)
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        env.pop("PYTHONPATH", None)
        steps = [
            ([python2, "-m", "pip", "install", "--quiet", "--target", str(tool), VIRTUALENV], env),
            ([python2, "-m", "virtualenv", "--quiet", str(venv)], dict(env, PYTHONPATH=str(tool))),
            ([str(venv / "bin" / "pip"), "install", "--quiet", f"autobahntestsuite=={VERSION}"], env),
        ]
        for cmd, step_env in steps:
            if log:
                print("+", " ".join(cmd), flush=True)
            done = subprocess.run(cmd, env=step_env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
        stamp.write_text(python2 + "\n")
    return wstest_path()


if __name__ == "__main__":
    try:
        print(ensure_wstest())
    except RuntimeError as exc:
        sys.exit(str(exc))
