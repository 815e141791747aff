#!/usr/bin/env python3
"""Set up and run Wherry from a fresh checkout: ``demo`` serves examples/, ``test`` runs every gate.

Needs only a Python 3.11+ interpreter, a C compiler and the package registries. Each supported
Python found on the machine (3.11, 3.12, 3.13: on PATH or under pyenv) gets its own virtual
environment (``.venv`` for the interpreter running this script, ``.venv-3.X`` for the others) with
the compiled build installed in place (``pip install -e .``: the mypyc extension modules land next to
their sources, one per Python by their ABI tag). A venv is reinstalled only when what the build
depends on changed (a stamp of the hashes of pyproject.toml, setup.py and the compiled sources).

``test`` runs the static gates once, the whole suite on the compiled build on every Python found,
and the whole suite once more on the pure-Python build: in a copy of the tree (``.pure/``, where no
compiled module shadows a source) with its own venv, installed with ``WHERRY_PURE=1``. That last run
measures branch coverage (compiled modules are not traced), reports it per layer and fails below
the gates of ``COVERAGE_GATES``.
``WHERRY_EXPECT_BUILD`` tells the tests which build they must find (tests/test_build.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = ("3.11", "3.12", "3.13")
PURE_TREE = ROOT / ".pure"  # a copy of the tree for the pure-Python run (ignored by git)
STAMP = "wherry-install.json"  # in a venv: what was installed there, and from which sources
# What each extra brings of the others (the test extra brings uvloop and trustme too).
EXTRAS_INCLUDED = {"test": {"test", "uvloop", "demo"}, "demo": {"demo", "uvloop"}}
# command -> Debian package, used by the end-to-end tests (nginx and haproxy live in /usr/sbin).
SYSTEM_TOOLS = {
    "curl": "curl",
    "nginx": "nginx",
    "haproxy": "haproxy",
    "openssl": "openssl",
    "nghttp": "nghttp2-client",
    "chromium-headless-shell": "chromium-headless-shell",
}

# Branch coverage of the pure-Python run, per layer (a folder of wherry/; "rest" is every other
# module): the least each gated layer may have, in percent. A ratchet: each gate is the figure
# measured when it was set (the lower of two runs: timing moves it by about 0.1), rounded down;
# raise it when tests cover more, never lower it. The target is 100 everywhere
# (docs/discussion/compiled.md, "Coverage"). None: reported, not gated.
COVERAGE_GATES: dict[str, int | None] = {
    "wherry/proto": 100,
    "wherry/asgi": 100,
    "wherry/connection": 100,
    "wherry/backends": None,
    "rest": None,
}


def run(cmd: list[str], cwd: Path = ROOT, **kwargs: object) -> None:
    where = "" if cwd == ROOT else f"(in {cwd.relative_to(ROOT)}) "
    print("+", where + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=cwd, **kwargs)  # type: ignore[call-overload]


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


def build_inputs(root: Path) -> str:
    """A hash of what the installed build depends on: the build files and the compiled sources
    (the other modules are used in place by the editable install, so changing them needs nothing)."""
    compiled = runpy.run_path(str(root / "wherry" / "_build.py"))["COMPILED_MODULES"]  # stdlib only
    files = ["pyproject.toml", "setup.py", "wherry/_build.py"]
    files += [str(Path(*name.split(".")).with_suffix(".py")) for name in compiled]
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def venv_for(python: str, version: str, extras: str, *, root: Path = ROOT, pure: bool = False) -> Path:
    """The venv of ``version`` with Wherry installed in place from ``root`` (compiled, or pure),
    reinstalled only if the stamp says the build inputs or the extras changed since."""
    current = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv = root / (".venv" if version == current else f".venv-{version}")
    bin_python = venv / "bin" / "python"
    if not bin_python.exists():
        run([python, "-m", "venv", str(venv)])
        run([str(bin_python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    stamp_file = venv / STAMP
    wanted = {"inputs": build_inputs(root), "pure": pure}
    try:
        stamp = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        stamp = {}
    installed = set(EXTRAS_INCLUDED.get(stamp.get("extras", ""), {stamp.get("extras", "")}))
    # (A compiled build's extension modules could have been deleted from the tree since.)
    extensions = [] if pure else list((root / "wherry").rglob(f"*.cpython-{version.replace('.', '')}-*"))
    up_to_date = all(stamp.get(key) == value for key, value in wanted.items()) and extras in installed
    if up_to_date and (pure or extensions):
        print(f"{venv.relative_to(ROOT)}: up to date ({'pure Python' if pure else 'compiled'} build)")
        for extension in extensions:  # built from these very sources (a checkout may touch them)
            extension.touch()
        return venv
    stamp_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop("WHERRY_PURE", None)
    if pure:
        env["WHERRY_PURE"] = "1"
    else:
        print(f"building the compiled build for Python {version} (mypyc and a C compiler: about a minute)")
    run([str(bin_python), "-m", "pip", "install", "--quiet", "-e", f".[{extras}]"], cwd=root, env=env)
    stamp_file.write_text(json.dumps({**wanted, "extras": extras}))
    return venv


def copy_tree(target: Path) -> None:
    """The files git tracks (and new ones it does not ignore) copied to ``target``, whose previous
    content goes, except its venvs: what the pure-Python run tests."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    target.mkdir(exist_ok=True)
    for child in target.iterdir():
        if not child.name.startswith(".venv"):
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # (a file deleted but not yet committed is listed too)
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


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
    """The demo on http://HOST:PORT (HTTP/1.1, and h2c), and the same app on https://HOST:TLS_PORT
    (HTTP/2 by ALPN, with a certificate made for this machine in .demo-tls/)."""
    venv = venv_for(sys.executable, f"{sys.version_info.major}.{sys.version_info.minor}", "demo")
    python = str(venv / "bin" / "python")
    certs = ROOT / ".demo-tls"
    if not (certs / "server.key").exists():
        subprocess.run([python, "-m", "examples.certificate", str(certs)], cwd=ROOT, check=True)
    serve = [python, "-m", "wherry", "examples.demo:app", "--host", args.host]
    tls = subprocess.Popen(
        [
            *serve,
            "--port",
            str(args.tls_port),
            "--ssl-certfile",
            str(certs / "server.pem"),
            "--ssl-keyfile",
            str(certs / "server.key"),
        ],
        cwd=ROOT,
    )
    print(
        f"HTTPS and HTTP/2: https://{args.host}:{args.tls_port} (certificate authority: {certs / 'ca.pem'})"
    )
    try:
        # The page links the Prometheus metrics and the health probes served here.
        metrics = ["--metrics-bind", f"{args.host}:{args.metrics_port}"]
        subprocess.run([*serve, "--port", str(args.port), *metrics], cwd=ROOT, check=False)
    except KeyboardInterrupt:
        pass  # the servers got the same Ctrl-C and shut down gracefully
    finally:
        if tls.poll() is None:
            tls.terminate()
        tls.wait()


def ensure_autobahn() -> None:
    """The WebSocket conformance client, on Python 2.7 in a virtualenv of its own (scripts/autobahn.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import autobahn

    try:
        autobahn.ensure_wstest()
    except RuntimeError as exc:
        print(f"note: the Autobahn|Testsuite client could not be installed; its tests are skipped: {exc}")


def pytest(venv: Path, root: Path, build: str, extra: list[str], *, coverage: bool = False) -> None:
    """The suite in ``venv``; with ``coverage``, under coverage.py ([tool.coverage] of pyproject.toml:
    every Python process the tests start is measured too, each into a data file of its own)."""
    workers = "auto" if (os.cpu_count() or 1) > 1 else "0"
    env = dict(os.environ, WHERRY_EXPECT_BUILD=build)
    env.pop("WHERRY_PURE", None)
    python = str(venv / "bin" / "python")
    if coverage:
        run([python, "-m", "coverage", "erase"], cwd=root)
    runner = [python, "-m", "coverage", "run", "-m", "pytest"] if coverage else [python, "-m", "pytest"]
    run([*runner, "-n", workers, "-q", *extra], cwd=root, env=env)


def coverage_layers(venv: Path, root: Path, gated: bool) -> None:
    """Combine the data of the run in ``root``, print the coverage of each module (least covered
    first) and of each layer, and fail if ``gated`` and a layer is below its gate."""
    python = str(venv / "bin" / "python")
    run([python, "-m", "coverage", "combine", "--quiet"], cwd=root)
    run([python, "-m", "coverage", "report", "--sort=cover", "--skip-covered", "--skip-empty"], cwd=root)
    layers = [name for name in COVERAGE_GATES if name != "rest"]
    rows, failed = [], []
    for name, gate in COVERAGE_GATES.items():
        if name == "rest":
            selection = ["--omit", ",".join(f"{layer}/*" for layer in layers)]
        else:
            selection = ["--include", f"{name}/*"]
        total = subprocess.run(
            [python, "-m", "coverage", "report", "--format=total", *selection],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        below = gate is not None and float(total) < gate
        if below:
            failed.append(name)
        shown = "-" if gate is None else f"{gate}%"
        rows.append(f"  {name:<16} {total:>6}%  {shown:>5}{'  BELOW THE GATE' if below else ''}")
    print("branch coverage of the pure-Python run, per layer (measured, gate):")
    print("\n".join(rows), flush=True)
    if failed and gated:
        sys.exit(f"coverage below the gate (COVERAGE_GATES in scripts/dev.py): {', '.join(failed)}")
    if not gated:
        print("(not gated: extra pytest arguments select part of the suite)")


def installed_build(venv: Path) -> str:
    """ "compiled" or "pure": what the install in ``venv`` turned out to be."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import wherry; print(wherry.COMPILED)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return "compiled" if done.stdout.strip() == "True" else "pure"


def test(args: argparse.Namespace) -> None:
    ensure_system_tools()
    ensure_autobahn()
    versions = [v for v in SUPPORTED if args.python in (None, v)]
    tested = []
    pure_python = None
    for version in versions:
        python = find_python(version)
        if python is None:
            print(f"note: Python {version} not found; skipped")
            continue
        venv = venv_for(python, version, "test")
        bin_dir = venv / "bin"
        if not tested:  # the static gates once, on the first interpreter
            linted = ["wherry", "tests", "examples", "scripts", "setup.py"]
            run([str(bin_dir / "ruff"), "check", *linted, "bench"])
            run([str(bin_dir / "ruff"), "format", "--check", *linted])
            run([str(bin_dir / "mypy")])
            pure_python = (python, version)
        build = installed_build(venv)
        if build != "compiled":
            # Only a machine without a C compiler or the Python headers gets here (setup.py falls
            # back to the pure build then); a compile error fails the install instead.
            print(f"NOTE: Python {version}: the compiled build could not be made here (see the warning")
            print("      of the install above): the suite runs on the pure-Python build instead.")
        pytest(venv, ROOT, build, args.pytest_args)
        tested.append(f"{version} ({build})")
    if pure_python is None:
        sys.exit("no supported Python (3.11+) found")
    if not args.no_pure:
        # The same suite on the pure-Python build, once: in a copy of the tree, since the compiled
        # modules built in place here would shadow their sources.
        python, version = pure_python
        copy_tree(PURE_TREE)
        venv = venv_for(python, version, "test", root=PURE_TREE, pure=True)
        pytest(venv, PURE_TREE, "pure", args.pytest_args, coverage=True)
        coverage_layers(venv, PURE_TREE, gated=not args.pytest_args)
        tested.append(f"{version} (pure Python)")
    print(f"tested on Python {', '.join(tested)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="serve examples/demo.py on http://127.0.0.1:8000")
    p_demo.add_argument("--host", default="127.0.0.1")
    p_demo.add_argument("--port", type=int, default=8000)
    p_demo.add_argument("--metrics-port", type=int, default=9100)
    p_demo.add_argument("--tls-port", type=int, default=8443)
    p_test = sub.add_parser("test", help="lint, type-check and run the test suite on every Python found")
    p_test.add_argument("--python", choices=SUPPORTED, help="only this Python version")
    p_test.add_argument("--no-pure", action="store_true", help="skip the run on the pure-Python build")
    p_test.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    {"demo": demo, "test": test}[args.command](args)


if __name__ == "__main__":
    main()
