"""Smoke test of the benchmark harness: does ``bench/run.py`` still work end to end?

Runs ``bench/run.py --quick --servers wherry,uvicorn`` into a temporary directory and checks
what it wrote. It fails only when the harness is broken: the run exits non-zero, the result
file is missing or malformed, the report or charts are missing, or the reference server
(uvicorn) could not be measured at all. A server that fails to start is a reported row, not a
harness failure; timings are never checked.

Then it runs wrk for one second with the Lua script of ``pipeline16`` (on 4 connections) against
a few lines of socket server in this process, which answers every request it reads: the script
must send its requests pipelined, and its ``done()`` hook must report answers and whole batches.
No database is needed.

    python3 bench/smoke.py            # exit status 0 when the harness works
    python3 -m bench.smoke --keep     # keep the temporary directory to look at

From a test: ``assert not bench.smoke.run_smoke()`` (the list of problems found).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RUN_PY = BENCH_DIR / "run.py"
REFERENCE = "uvicorn"
CHARTS = ("throughput.png", "latency.png", "memory.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_results(results_dir: Path, docs_dir: Path, servers: Sequence[str]) -> list[str]:
    """Problems with what a quick run wrote (empty when all is well)."""
    problems: list[str] = []
    latest = results_dir / "latest.json"
    stamped = [path for path in results_dir.glob("*.json") if path.name != "latest.json"]
    if not latest.is_file():
        return [f"{latest} was not written"]
    if len(stamped) != 1:
        problems.append(f"expected one timestamped result file, found {len(stamped)}")
    try:
        results = json.loads(latest.read_text())
    except ValueError as exc:
        return [f"{latest} is not JSON: {exc}"]
    for key in ("version", "timestamp", "config", "machine", "packages", "points"):
        if key not in results:
            problems.append(f"results lack {key!r}")
    points = {point.get("server"): point for point in results.get("points", [])}
    for server in servers:
        point = points.get(server)
        if point is None:
            problems.append(f"no result row for {server}")
            continue
        if point.get("status") not in ("ok", "failed"):
            problems.append(f"{server}: unknown status {point.get('status')!r}")
        if point.get("status") == "failed" and not point.get("error"):
            problems.append(f"{server}: failed without saying why")
        if point.get("status") == "ok" and not point.get("runs"):
            problems.append(f"{server}: ok but no runs recorded")
    reference = points.get(REFERENCE)
    if REFERENCE in servers and reference is not None:
        if reference.get("status") != "ok":
            problems.append(f"{REFERENCE} was not measured: {reference.get('error')}")
        elif not any(run.get("requests", 0) > 0 for run in reference.get("runs", [])):
            problems.append(f"{REFERENCE}: the load tool completed no request")
    report = docs_dir / "results.md"
    if not report.is_file():
        problems.append(f"{report} was not written")
    else:
        text = report.read_text()
        problems += [f"results.md does not mention {name}" for name in servers if name not in text]
    for chart in CHARTS:
        path = docs_dir / chart
        if not path.is_file() or not path.read_bytes().startswith(PNG_MAGIC):
            problems.append(f"chart {path} missing or not a PNG")
    return problems


PIPELINED = "pipeline16"
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _answer_all(listener: socket.socket, most: list[int]) -> None:
    """Answer every GET read on every connection; ``most[0]``: most requests in one read."""

    def serve(conn: socket.socket) -> None:
        # wrk resets its connections when it stops.
        with conn, contextlib.suppress(OSError):
            pending = b""
            while chunk := conn.recv(65536):
                pending += chunk
                count = pending.count(b"\r\n\r\n")
                pending = pending[pending.rfind(b"\r\n\r\n") + 4 :] if count else pending
                most[0] = max(most[0], count)
                if count:
                    conn.sendall(ANSWER * count)

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def check_pipeline_script() -> list[str]:
    """Problems with the pipelined scenario's wrk script (empty when all is well)."""
    sys.path.insert(0, str(BENCH_DIR.parent))
    from bench.loadgen import LoadError, Wrk
    from bench.scenarios import SCENARIOS_BY_NAME

    scenario = replace(SCENARIOS_BY_NAME[PIPELINED], connections=4)
    most = [0]
    with socket.create_server(("127.0.0.1", 0)) as listener, tempfile.TemporaryDirectory() as workdir:
        threading.Thread(target=_answer_all, args=(listener, most), daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        try:
            result = Wrk().run(scenario, url, 1, None, Path(workdir))
        except LoadError as exc:
            return [f"{PIPELINED}: {exc}"]
    problems = []
    if result.requests == 0 or result.latencies_recorded <= 0:
        problems.append(
            f"{PIPELINED}: wrk reported {result.requests} answers, {result.latencies_recorded} batches"
        )
    if most[0] < 2:
        problems.append(f"{PIPELINED}: requests were not pipelined (at most {most[0]} in one read)")
    return problems


def run_smoke(
    servers: Sequence[str] = ("wherry", REFERENCE),
    *,
    python: str = sys.executable,
    venv: Path | None = None,
    keep: Path | None = None,
    timeout: float = 900.0,
) -> list[str]:
    """Run the quick benchmark into a temporary directory; return the problems found.

    ``timeout`` covers creating ``bench/.venv`` on a first run.
    """
    workdir = Path(tempfile.mkdtemp(prefix="wherry-bench-smoke-"))
    results_dir, docs_dir = workdir / "results", workdir / "docs"
    argv = [
        python, str(RUN_PY), "--quick", "--servers", ",".join(servers),
        "--results-dir", str(results_dir), "--docs-dir", str(docs_dir),
    ]  # fmt: skip
    if venv is not None:
        argv += ["--venv", str(venv)]
    try:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return [f"bench/run.py did not finish in {timeout:.0f} s"]
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            return [f"bench/run.py exited {done.returncode}:\n{tail}"]
        return check_results(results_dir, docs_dir, servers) + check_pipeline_script()
    finally:
        if keep is not None:
            shutil.copytree(workdir, keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 bench/smoke.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--servers", default=f"wherry,{REFERENCE}")
    parser.add_argument("--venv", type=Path)
    parser.add_argument("--keep", type=Path, help="copy the run's files to this directory")
    args = parser.parse_args(argv)
    servers = [name for name in args.servers.split(",") if name]
    problems = run_smoke(servers, venv=args.venv, keep=args.keep)
    for problem in problems:
        print(f"bench smoke: {problem}", file=sys.stderr)
    if not problems:
        print("bench smoke: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
