#!/usr/bin/env python3
"""Set up and run Wherry from a fresh checkout: ``demo`` serves examples/, ``test`` runs every gate.

Needs only a Python 3.11+ interpreter and the package registries. Each supported Python found on the
machine (3.11, 3.12, 3.13: on PATH or under pyenv) gets its own virtual environment (``.venv`` for the
interpreter running this script, ``.venv-3.X`` for the others).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")
# command -> Debian package, used by the end-to-end tests (nginx and haproxy live in /usr/sbin).
SYSTEM_TOOLS = {
    "curl": "curl",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "openssl": "openssl",
    "nghttp": "nghttp2-client",
    "chromium-headless-shell": "chromium-headless-shell",
}


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def find_python(version: str) -> str | None:
    """An interpreter for ``version``: pythonX.Y on PATH, then pyenv's installs."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    # pyenv's installs by path: its shims answer only for the versions selected in this shell.
    installs = sorted((pyenv_root / "versions").glob(f"{version}.*"), reverse=True)
    candidates += [str(install / "bin" / "python3") for install in installs]
    for candidate in candidates:
        if candidate and _runs(candidate, version):
            return candidate
    return None


def _runs(python: str, version: str) -> bool:
    """``python`` starts and is the version asked for (a pyenv shim may exist and fail)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == version


def venv_for(python: str, version: str, extras: str) -> Path:
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = ROOT / (".venv" if version == current else f".venv-{version}")
    bin_python = venv / "bin" / "python"
    if not bin_python.exists():
        run([python, "-m", "venv", str(venv)])
        run([str(bin_python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(bin_python), "-m", "pip", "install", "--quiet", "-e", f".[{extras}]"])
    return venv


def ensure_system_tools() -> None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [pkg for cmd, pkg in SYSTEM_TOOLS.items() if shutil.which(cmd, path=path) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"note: {', '.join(missing)} not installed; the tests that need them are skipped")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    except subprocess.CalledProcessError:
        run(["apt-get", "update"], env=env)
        run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)


def demo(args: argparse.Namespace) -> None:
    venv = venv_for(sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}", "uvloop")
    os.execv(
        str(venv / "bin" / "python"),
        [
            str(venv / "bin" / "python"),
            "-m",
            "wherry",
            "examples.demo:app",
            "--host",
            args.host,
            "--port",
            str(args.port),
        ],
    )


def ensure_autobahn() -> None:
    """The WebSocket conformance client, on Python 2.7 in a virtualenv of its own (scripts/autobahn.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import autobahn

    try:
        autobahn.ensure_wstest()
    except RuntimeError as exc:
        print(f"note: the Autobahn|Testsuite client could not be installed; its tests are skipped: {exc}")


def test(args: argparse.Namespace) -> None:
    ensure_system_tools()
    ensure_autobahn()
    versions = [v for v in SUPPORTED if args.python in (None, v)]
    tested = []
    for version in versions:
        python = find_python(version)
        if python is None:
            print(f"note: Python {version} not found; skipped")
            continue
        venv = venv_for(python, version, "test")
        bin_dir = venv / "bin"
        if not tested:  # the static gates once, on the first interpreter
            run([str(bin_dir / "ruff"), "check", "wherry", "tests", "examples", "bench", "scripts"])
            run([str(bin_dir / "ruff"), "format", "--check", "wherry", "tests", "examples", "scripts"])
            run([str(bin_dir / "mypy")])
        workers = "auto" if (os.cpu_count() or 1) > 1 else "0"
        run([str(bin_dir / "python"), "-m", "pytest", "-n", workers, "-q", *args.pytest_args])
        tested.append(version)
    if not tested:
        sys.exit("no supported Python (3.11+) found")
    print(f"tested on Python {', '.join(tested)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="serve examples/demo.py on http://127.0.0.1:8000")
    p_demo.add_argument("--host", default="127.0.0.1")
    p_demo.add_argument("--port", type=int, default=8000)
    p_test = sub.add_parser("test", help="lint, type-check and run the test suite on every Python found")
    p_test.add_argument("--python", choices=SUPPORTED, help="only this Python version")
    p_test.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    {"demo": demo, "test": test}[args.command](args)


if __name__ == "__main__":
    main()
