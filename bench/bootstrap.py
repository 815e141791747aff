"""Prepare the machine for a benchmark run: system tools and the harness's own virtualenv.

Only the standard library is used here, because this module runs under the system Python
before the virtualenv exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_VENV = BENCH_DIR / ".venv"
STAMP_NAME = "wherry-bench-stamp.json"

# The peers are installed at their current releases when the virtualenv is created (or
# with --upgrade); the versions actually used are recorded in every result file.
REQUIREMENTS: tuple[str, ...] = (
    "uvicorn[standard]",
    "granian",
    "hypercorn",
    "daphne",
    "fastapi",
    "httptools",
    "zttp",
    "uvloop",
    "trio",
    "asyncpg",
    "jinja2",
    "matplotlib",
)

# Packages reported in the result files, in this order.
REPORTED_PACKAGES: tuple[str, ...] = (
    "wherry",
    "uvicorn",
    "granian",
    "hypercorn",
    "daphne",
    "fastapi",
    "starlette",
    "httptools",
    "zttp",
    "uvloop",
    "trio",
    "asyncpg",
    "jinja2",
    "h11",
    "h2",
    "twisted",
    "matplotlib",
)

# Debian packages that provide each load tool.
APT_PACKAGES: dict[str, str] = {"wrk": "wrk", "h2load": "nghttp2-client"}


class BootstrapError(RuntimeError):
    """The machine cannot run the benchmark; the message says what to do."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def running_in(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


# --- system tools ------------------------------------------------------------------------


def _apt_get(args: Sequence[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("apt-get " + " ".join(args))
    done = subprocess.run(["apt-get", *args], env=env, check=False)
    return done.returncode == 0


def ensure_tools(tools: Iterable[str]) -> None:
    """Make sure every load tool (and taskset) is on PATH, installing them with apt when root."""
    if shutil.which("taskset") is None:
        raise BootstrapError("taskset is missing (Debian package util-linux)")
    # Tools that are not in APT_PACKAGES are the harness's own (bench/wsload.py).
    missing = sorted({tool for tool in tools if tool in APT_PACKAGES and shutil.which(tool) is None})
    if not missing:
        return
    # wrk and h2load are installed together: later scenarios need both.
    packages = sorted({APT_PACKAGES[tool] for tool in missing} | set(APT_PACKAGES.values()))
    can_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_apt:
        raise BootstrapError(
            f"missing {', '.join(missing)}; install with: sudo apt-get install -y " + " ".join(packages)
        )
    install = ["install", "-y", "--no-install-recommends", *packages]
    if not _apt_get(install) and not (_apt_get(["update"]) and _apt_get(install)):
        raise BootstrapError("apt-get could not install " + " ".join(packages))
    still = [tool for tool in missing if shutil.which(tool) is None]
    if still:
        raise BootstrapError(f"still missing after apt-get: {', '.join(still)}")


# PostgreSQL for the database scenarios (bench/postgres.py runs the binaries directly).
POSTGRES_ROOT = Path("/usr/lib/postgresql")
POSTGRES_APT = "postgresql"
POSTGRES_MISSING = (
    f"PostgreSQL is not installed (no {POSTGRES_ROOT}/<version>/bin/postgres); "
    f"install with: sudo apt-get install -y {POSTGRES_APT}"
)


def postgres_bin_dir() -> Path | None:
    """The bin directory of the newest PostgreSQL installed from Debian's packages."""
    found = [
        path.parent
        for path in POSTGRES_ROOT.glob("*/bin/postgres")
        if path.parent.parent.name.isdigit() and (path.parent / "initdb").exists()
    ]
    return max(found, key=lambda path: int(path.parent.name), default=None)


def ensure_postgres() -> str | None:
    """Install PostgreSQL with apt when it is missing and we are root; None when it is there,
    otherwise why not (the database scenarios are then skipped)."""
    if postgres_bin_dir() is not None:
        return None
    can_apt = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_apt:
        return POSTGRES_MISSING
    install = ["install", "-y", "--no-install-recommends", POSTGRES_APT]
    if not _apt_get(install) and not (_apt_get(["update"]) and _apt_get(install)):
        return f"apt-get could not install {POSTGRES_APT}"
    return None if postgres_bin_dir() is not None else POSTGRES_MISSING


# --- virtualenv ----------------------------------------------------------------------------


def _run_pip(python: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    cmd = [str(python), "-m", "pip", "--disable-pip-version-check", *args]
    log(" ".join(cmd[2:]))
    return subprocess.run(cmd, check=False, text=True, capture_output=True)


def _create_venv(venv: Path) -> None:
    log(f"creating virtualenv {venv}")
    cmd = [sys.executable, "-m", "venv", str(venv)]
    done = subprocess.run(cmd, check=False, text=True, capture_output=True)
    if done.returncode == 0:
        return
    shutil.rmtree(venv, ignore_errors=True)
    # Debian splits venv/ensurepip into python3-venv; install it when we may.
    if "ensurepip" in (done.stdout + done.stderr) and os.geteuid() == 0:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
        install = ["install", "-y", "--no-install-recommends", "python3-venv", version]
        if _apt_get(install) or (_apt_get(["update"]) and _apt_get(install)):
            done = subprocess.run(cmd, check=False, text=True, capture_output=True)
            if done.returncode == 0:
                return
    raise BootstrapError(f"could not create {venv}:\n{done.stdout}{done.stderr}")


def _project_fingerprint(root: Path) -> str | None:
    """Hash of the files that decide how the project installs (None: not installable yet)."""
    digest = hashlib.sha256()
    found = False
    for name in ("pyproject.toml", "setup.py", "setup.cfg"):
        path = root / name
        if path.is_file():
            found = True
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest() if found else None


def _read_stamp(venv: Path) -> dict[str, object]:
    try:
        data = json.loads((venv / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(venv: Path, stamp: dict[str, object]) -> None:
    (venv / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")


def ensure_venv(venv: Path = DEFAULT_VENV, *, upgrade: bool = False) -> dict[str, object]:
    """Create the virtualenv and install the peers and the project; return the stamp.

    Installing the project is allowed to fail (the server may not be installable yet): the
    failure is recorded in the stamp and retried on the next run.
    """
    if not venv_python(venv).exists():
        _create_venv(venv)
    python = venv_python(venv)
    stamp = _read_stamp(venv)

    if upgrade or stamp.get("requirements") != list(REQUIREMENTS):
        log("installing peers (current releases)")
        done = _run_pip(python, ["install", "--upgrade", "--quiet", *REQUIREMENTS])
        if done.returncode != 0:
            raise BootstrapError(f"pip install failed:\n{done.stdout}{done.stderr}")
        stamp = {"requirements": list(REQUIREMENTS)}
        _write_stamp(venv, stamp)

    fingerprint = _project_fingerprint(REPO_ROOT)
    wherry_state = stamp.get("wherry")
    wherry_ok = isinstance(wherry_state, dict) and wherry_state.get("ok") is True
    same = isinstance(wherry_state, dict) and wherry_state.get("fingerprint") == fingerprint
    if fingerprint is None:
        stamp["wherry"] = {"ok": False, "fingerprint": None, "error": "no pyproject.toml"}
    elif upgrade or not (wherry_ok and same):
        log(f"installing the project in editable mode from {REPO_ROOT}")
        done = _run_pip(python, ["install", "--quiet", "-e", str(REPO_ROOT)])
        error = (done.stdout + done.stderr).strip()[-2000:]
        if done.returncode != 0:
            log("editable install of the project failed; it will be reported as a failed server")
        stamp["wherry"] = {
            "ok": done.returncode == 0,
            "fingerprint": fingerprint,
            "error": "" if done.returncode == 0 else error,
        }
    _write_stamp(venv, stamp)
    return stamp


def reexec_in(venv: Path, argv: Sequence[str]) -> None:
    """Replace this process with the same command run by the virtualenv's Python."""
    python = str(venv_python(venv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(python, [python, *argv])
