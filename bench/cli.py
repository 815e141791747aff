"""The benchmark run: bootstrap, start servers, drive them, write results and the report.

For each scenario every selected server that can serve its app is started (one worker, pinned
to the server CPU, a fresh port each), warmed up, and then measured ``repeats`` times with
the servers taking turns (the order rotates every repeat), so that slow drift of the machine
spreads over all of them. Medians over the repeats are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import bootstrap
from bench.loadgen import TOOLS, LoadError
from bench.postgres import DATABASE_ENV, Postgres, PostgresError
from bench.procs import (
    CpuWatch,
    Sampler,
    ServerFailed,
    ServerProcess,
    free_port,
    in_sessions,
    not_harness,
    wait_idle,
    wait_ready,
)
from bench.scenarios import (
    QUICK_DURATION,
    QUICK_SCENARIOS,
    QUICK_WARMUP,
    SCENARIOS,
    SCENARIOS_BY_NAME,
    Scenario,
)
from bench.servers import ALL_NAMES, CEILING_APP, DEFAULT_NAMES, SERVERS_BY_NAME, Launch, Server

RESULTS_VERSION = 1
HOST = "127.0.0.1"
FIRST_PORT = 20_000
NOFILE_WANTED = 65_536
READY_TIMEOUT = 30.0
IDLE_TIMEOUT = 10.0
QUIET_BUDGET = 45.0
"""Seconds a run may spend in all waiting for other processes on the machine to go quiet."""
DISTURBED = 0.05
"""Other processes above this share of a CPU during a run make it a disturbed run."""
DEFAULT_REPEATS = 3
DEFAULT_WARMUP = 2
CEILING_APP_SECONDS = 2.0
BOOTSTRAPPED_ENV = "WHERRY_BENCH_BOOTSTRAPPED"

RESULTS_DIR = bootstrap.BENCH_DIR / "results"
DOCS_DIR = bootstrap.REPO_ROOT / "docs" / "benchmarks"
PARTIAL_DOCS_DIR = RESULTS_DIR / "tmp-report"


_T0 = time.monotonic()


def log(message: str) -> None:
    bootstrap.log(f"{time.monotonic() - _T0:6.1f}s {message}")


def _names(value: str, known: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})"
        )
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 bench/run.py",
        description="Benchmark Wherry side by side with uvicorn, granian, hypercorn and daphne.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"one short point per server: {', '.join(QUICK_SCENARIOS)}, "
        f"{QUICK_DURATION} s, 1 repeat (a smoke test of the harness; numbers are noisy)",
    )
    parser.add_argument(
        "--servers",
        type=lambda value: _names(value, ALL_NAMES, "server"),
        help=f"comma-separated, from {','.join(ALL_NAMES)}; default {','.join(DEFAULT_NAMES)}",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda value: _names(value, list(SCENARIOS_BY_NAME), "scenario"),
        help=f"comma-separated, default all: {','.join(SCENARIOS_BY_NAME)}",
    )
    parser.add_argument("--repeats", type=int, help=f"runs per point (default {DEFAULT_REPEATS})")
    parser.add_argument(
        "--duration", type=int, help="seconds per run for every scenario (default: per scenario)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help=f"warm-up seconds, all servers of a scenario at once (default {DEFAULT_WARMUP})",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    parser.add_argument(
        "--docs-dir",
        type=Path,
        help=f"where results.md and the charts go (default: {DOCS_DIR} for a full default "
        f"run, {PARTIAL_DOCS_DIR} otherwise)",
    )
    parser.add_argument("--venv", type=Path, default=bootstrap.DEFAULT_VENV)
    parser.add_argument(
        "--upgrade", action="store_true", help="reinstall the peers at their current releases"
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    parser.add_argument("--list", action="store_true", help="list servers and scenarios")
    return parser.parse_args(argv)


# --- the run's plan ----------------------------------------------------------------------------


@dataclass
class Plan:
    scenarios: list[Scenario]
    servers: list[Server]
    ceiling_app: bool
    repeats: int
    warmup: int
    duration: int | None
    quick: bool
    full_default: bool

    def seconds(self, scenario: Scenario) -> int:
        return self.duration if self.duration is not None else scenario.duration

    def servers_for(self, scenario: Scenario) -> list[Server]:
        return [server for server in self.servers if server.supports(scenario)]

    def estimate(self) -> float:
        total = 0.0
        for scenario in self.scenarios:
            count = len(self.servers_for(scenario))
            total += 5 + self.warmup if count else 0
            total += count * self.repeats * (self.seconds(scenario) + 0.4)
        if self.ceiling_app:
            total += self.repeats * (CEILING_APP_SECONDS + 0.3)
        return total


def make_plan(args: argparse.Namespace) -> Plan:
    names: list[str] = args.servers or list(DEFAULT_NAMES)
    if args.scenarios:
        scenarios = [SCENARIOS_BY_NAME[name] for name in args.scenarios]
    elif args.quick:
        scenarios = [SCENARIOS_BY_NAME[name] for name in QUICK_SCENARIOS]
    else:
        scenarios = list(SCENARIOS)
    full_default = not (args.quick or args.servers or args.scenarios or args.repeats or args.duration) and (
        args.warmup is None
    )
    return Plan(
        scenarios=scenarios,
        servers=[SERVERS_BY_NAME[name] for name in names if name != CEILING_APP],
        ceiling_app=CEILING_APP in names,
        repeats=args.repeats or (1 if args.quick else DEFAULT_REPEATS),
        warmup=args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP),
        duration=args.duration or (QUICK_DURATION if args.quick else None),
        quick=args.quick,
        full_default=full_default,
    )


# --- machine set-up ----------------------------------------------------------------------------


def raise_nofile(wanted: int = NOFILE_WANTED) -> int:
    """Raise RLIMIT_NOFILE for this process and everything it starts; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def machine_info(nofile: int) -> dict[str, Any]:
    cpu_model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "os": _read("/etc/debian_version") and f"Debian {_read('/etc/debian_version')}",
        "python": platform.python_version(),
        "somaxconn": _read("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": _read("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "rlimit_nofile": nofile,
        "memory_kb": next(
            (ln.split()[1] for ln in _read("/proc/meminfo").splitlines() if ln.startswith("MemTotal")),
            "",
        ),
    }


def package_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in bootstrap.REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def server_env(venv: Path) -> dict[str, str]:
    env = dict(os.environ)
    root = str(bootstrap.REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(venv / "bin"), env.get("PATH", "")))
    env.pop(BOOTSTRAPPED_ENV, None)
    return env


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Point:
    """One (scenario, server) pair: its runs and how it ended."""

    scenario: Scenario
    server: Server
    status: str = "ok"
    error: str = ""
    log_tail: str = ""
    command: list[str] = field(default_factory=list)
    ready_after_s: float | None = None
    rss_idle_bytes: int = 0
    runs: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, failure: ServerFailed | LoadError | str, tail: str = "") -> None:
        self.status = "failed"
        self.error = str(failure)
        self.log_tail = failure.log_tail if isinstance(failure, ServerFailed) else tail

    def summary(self) -> dict[str, Any]:
        if not self.runs:
            return {}

        def median(key: str) -> float:
            return float(statistics.median(run[key] for run in self.runs))

        worst = max(self.runs, key=lambda run: run["errors"])
        rates = [run["rps"] for run in self.runs]
        summary: dict[str, Any] = {
            "rps": median("rps"),
            "rps_min": min(rates),
            "rps_max": max(rates),
            "p50_ms": median("p50_ms"),
            "p90_ms": median("p90_ms"),
            "p99_ms": median("p99_ms"),
            "p999_ms": median("p999_ms"),
            "latency_max_ms": max(run["latency_max_ms"] for run in self.runs),
            "latencies_recorded_min": min(run.get("latencies_recorded", -1) for run in self.runs),
            "errors": worst["errors"],
            "errors_detail": {
                key: worst[key]
                for key in (
                    "errors_connect",
                    "errors_read",
                    "errors_write",
                    "errors_timeout",
                    "non_2xx",
                )
            },
            "rss_peak_bytes": max(run["rss_peak_bytes"] for run in self.runs),
            "rss_peak_process_bytes": max(run["rss_peak_process_bytes"] for run in self.runs),
            "cpu_utilisation": median("cpu_utilisation"),
            "other_cpu_max": max(run["other_cpu_utilisation"] for run in self.runs),
        }
        if self.scenario.payload:
            summary["mbps"] = summary["rps"] * self.scenario.payload / 1e6
        return summary

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "server": self.server.name,
            "kind": self.server.kind,
            "status": self.status,
            "error": self.error,
            "log_tail": self.log_tail,
            "command": self.command,
            "ready_after_s": self.ready_after_s,
            "rss_idle_bytes": self.rss_idle_bytes,
            "runs": self.runs,
            "summary": self.summary(),
        }


def _format_run(result: dict[str, Any]) -> str:
    text = f"{result['rps']:>10,.0f} req/s  p50 {result['p50_ms']:.3f} ms"
    text += f"  p99 {result['p99_ms']:.2f} ms  errors {result['errors']}"
    return text + f"  rss {result['rss_peak_bytes'] / 2**20:.0f} MiB"


class Runner:
    def __init__(
        self, plan: Plan, venv: Path, workdir: Path, server_cpu: int | None, client_cpu: int | None
    ) -> None:
        self.plan = plan
        self.python = bootstrap.venv_python(venv)
        self.env = server_env(venv)
        self.workdir = workdir
        self.server_cpu = server_cpu
        self.client_cpu = client_cpu
        self.next_port = FIRST_PORT
        self.points: list[Point] = []
        self.ceiling_app_runs: list[float] = []
        self.quiet_budget = QUIET_BUDGET
        self.ceiling_app_error = ""
        self.database: Postgres | None = None
        self.database_version = ""
        self.skipped: dict[str, str] = {}
        """Scenarios left out of the run, and why."""

    def skip(self, scenarios: list[Scenario], reason: str) -> None:
        for scenario in scenarios:
            self.skipped[scenario.name] = reason
        log(f"skipping {', '.join(s.name for s in scenarios)}: {reason}")

    def start_database(self) -> None:
        """Start the PostgreSQL of the database scenarios (skipping them if it cannot start);
        every server started after this finds it through ``DATABASE_ENV``."""
        wanted = [s for s in self.plan.scenarios if s.database and s.name not in self.skipped]
        if not wanted or not self.plan.servers_for(wanted[0]):
            return
        try:
            database = Postgres(self.workdir, self.client_cpu)
            self.database_version = database.version()
            log(f"starting {self.database_version} for {', '.join(s.name for s in wanted)}")
            database.start()
        except PostgresError as exc:
            self.skip(wanted, str(exc))
            return
        self.database = database
        self.env[DATABASE_ENV] = database.url
        log(f"database ready at {database.url} (log: {database.log_path})")

    def stop_database(self) -> None:
        if self.database is not None:
            self.database.stop()
            self.database = None

    def _port(self) -> int:
        port = free_port(self.next_port)
        self.next_port = port + 1
        return port

    def start(self, scenario: Scenario, server: Server, point: Point) -> ServerProcess | None:
        port = self._port()
        certfile, keyfile = self.certificate() if scenario.protocol == "https" else ("", "")
        launch = Launch(
            python=self.python,
            app=scenario.app_spec,
            host=HOST,
            port=port,
            websocket=scenario.tool == "wsload",
            protocol=scenario.protocol,
            certfile=certfile,
            keyfile=keyfile,
        )
        point.command = server.command(launch)
        try:
            return ServerProcess(
                server.name,
                point.command,
                host=HOST,
                port=port,
                cwd=bootstrap.REPO_ROOT,
                env=self.env,
                log_path=self.workdir / f"{scenario.name}-{server.name}.log",
                cpu=self.server_cpu,
                tls=scenario.protocol == "https",
            )
        except OSError as exc:
            point.fail(f"failed to start: {exc}")
            return None

    def run_scenario(self, scenario: Scenario) -> None:
        servers = self.plan.servers_for(scenario)
        if not servers or scenario.name in self.skipped:
            return
        log(f"== {scenario.name}: {scenario.description}")
        points = {server.name: Point(scenario, server) for server in servers}
        self.points.extend(points.values())
        procs: dict[str, ServerProcess] = {}
        try:
            for server in servers:
                proc = self.start(scenario, server, points[server.name])
                if proc is not None:
                    procs[server.name] = proc
            for name, failure in wait_ready(procs.values(), READY_TIMEOUT).items():
                if failure is not None:
                    points[name].fail(failure)
                    log(f"{name}: {failure}\n{failure.log_tail}")
                    procs.pop(name).stop()
                else:
                    points[name].ready_after_s = procs[name].ready_after
            self.warm_up(scenario, points, procs)
            order = list(procs)
            for repeat in range(self.plan.repeats):
                shift = repeat % len(order) if order else 0
                for name in order[shift:] + order[:shift]:
                    if points[name].status == "ok":
                        self.measure(scenario, points[name], procs[name], list(procs.values()), repeat)
        finally:
            for proc in procs.values():
                proc.stop()

    def warm_up(self, scenario: Scenario, points: dict[str, Point], procs: dict[str, ServerProcess]) -> None:
        """Load every server at once for the warm-up time; drop the ones that fail."""
        self.settle(list(procs.values()))
        for name, proc in procs.items():
            points[name].rss_idle_bytes = proc.rss()[0]
        if self.plan.warmup <= 0 or not procs:
            return
        tool = TOOLS[scenario.tool]
        load = replace(scenario, connections=min(scenario.connections, scenario.warmup_connections))
        # Sharing the CPU, each server still answers thousands of requests.
        seconds = self.plan.warmup
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            futures = {
                name: pool.submit(tool.run, load, self.url(proc), seconds, self.client_cpu, self.workdir)
                for name, proc in procs.items()
            }
        for name, future in futures.items():
            point, proc = points[name], procs[name]
            try:
                future.result()
            except LoadError as exc:
                point.fail(f"warm-up failed: {exc}", proc.log_tail())
            if point.status == "ok" and not proc.alive():
                point.fail(proc.failure("exited during warm-up"))
            if point.status != "ok":
                log(f"{name}: {point.error}")
                procs.pop(name).stop()

    def settle(self, servers: list[ServerProcess]) -> float:
        """Wait for the servers to go idle, then (while the budget lasts) for the machine."""
        waited = wait_idle(CpuWatch(in_sessions(s.pid for s in servers)), timeout=IDLE_TIMEOUT)
        if waited >= IDLE_TIMEOUT:
            log(f"servers still busy after {IDLE_TIMEOUT:.0f} s; measuring anyway")
        if self.quiet_budget > 0:
            extra = wait_idle(CpuWatch(not_harness()), timeout=min(IDLE_TIMEOUT, self.quiet_budget))
            if extra > 1.0:
                log(f"waited {extra:.1f} s for other processes on the machine to go quiet")
            self.quiet_budget -= max(0.0, extra - 0.2)
            if self.quiet_budget <= 0:
                log("stopped waiting for other processes; disturbed runs are marked")
            waited += extra
        return waited

    def url(self, proc: ServerProcess) -> str:
        return f"{'https' if proc.tls else 'http'}://{proc.host}:{proc.port}/"

    def certificate(self) -> tuple[str, str]:
        """A self-signed ECDSA P-256 certificate for the TLS scenarios (made once per run)."""
        cert, key = self.workdir / "cert.pem", self.workdir / "key.pem"
        if not cert.exists():
            argv = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
            subprocess.run(
                [*argv.split(), "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"],
                check=True,
                capture_output=True,
            )
        return str(cert), str(key)

    def measure(
        self,
        scenario: Scenario,
        point: Point,
        proc: ServerProcess,
        others: list[ServerProcess],
        repeat: int,
    ) -> None:
        idle_wait = self.settle(others)
        seconds = self.plan.seconds(scenario)
        try:
            with Sampler(proc) as sampler:
                result = TOOLS[scenario.tool].run(
                    scenario, self.url(proc), seconds, self.client_cpu, self.workdir
                )
        except LoadError as exc:
            point.fail(str(exc), proc.log_tail())
            log(f"{point.server.name}: {exc}")
            return
        if not proc.alive():
            point.fail(proc.failure("exited during the run"))
            log(f"{point.server.name}: {point.error}")
            return
        run = result.to_json()
        run.update(
            repeat=repeat,
            idle_wait_s=round(idle_wait, 3),
            rss_peak_bytes=sampler.peak_rss,
            rss_peak_process_bytes=sampler.peak_process_rss,
            rss_samples=sampler.samples,
            cpu_utilisation=sampler.cpu_utilisation,
            other_cpu_utilisation=sampler.other_utilisation,
        )
        point.runs.append(run)
        log(f"{scenario.name:<10} {point.server.name:<13} #{repeat + 1} {_format_run(run)}")
        if sampler.other_utilisation > DISTURBED:
            log(f"other processes used {sampler.other_utilisation:.0%} of a CPU during this run")

    def run_ceiling_app(self) -> None:
        seconds = min(CEILING_APP_SECONDS, float(self.plan.duration or CEILING_APP_SECONDS))
        argv = [str(self.python), "-m", "bench.ceiling", "app", "--seconds", str(seconds)]
        if self.server_cpu is not None:
            argv = ["taskset", "-c", str(self.server_cpu), *argv]
        for repeat in range(self.plan.repeats):
            self.settle([])
            done = subprocess.run(
                argv,
                cwd=bootstrap.REPO_ROOT,
                env=self.env,
                check=False,
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
            try:
                rate = float(json.loads(done.stdout.strip().splitlines()[-1])["calls_per_s"])
            except (ValueError, KeyError, IndexError):
                self.ceiling_app_error = (done.stdout + done.stderr).strip()[-2000:]
                log(f"ceiling_app failed:\n{self.ceiling_app_error}")
                return
            self.ceiling_app_runs.append(rate)
            log(f"ceiling_app #{repeat + 1} {rate:>12,.0f} app calls/s")


# --- entry point ----------------------------------------------------------------------------


def list_all() -> None:
    print("servers:")
    for server in SERVERS_BY_NAME.values():
        print(f"  {server.name:<16} {server.kind:<8} {server.notes}")
    print(f"  {CEILING_APP:<16} {'ceiling':<8} in-process: app calls per second, no network")
    print("scenarios:")
    for scenario in SCENARIOS:
        print(f"  {scenario.name:<16} {scenario.description}")


def choose_cpus(server_cpu: int, client_cpu: int) -> tuple[int | None, int | None]:
    available = sorted(os.sched_getaffinity(0))
    if server_cpu in available and client_cpu in available and server_cpu != client_cpu:
        return server_cpu, client_cpu
    log(f"CPUs {server_cpu}/{client_cpu} not both available (have {available}); not pinning")
    return None, None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        list_all()
        return 0
    plan = make_plan(args)
    venv: Path = args.venv.resolve()

    if os.environ.get(BOOTSTRAPPED_ENV) != "1":
        if any(scenario.database for scenario in plan.scenarios):
            missing = bootstrap.ensure_postgres()
            if missing:
                log(f"{missing}; the database scenarios will be skipped")
        try:
            bootstrap.ensure_tools({scenario.tool for scenario in plan.scenarios})
            bootstrap.ensure_venv(venv, upgrade=args.upgrade)
        except bootstrap.BootstrapError as exc:
            log(f"error: {exc}")
            return 2
        os.environ[BOOTSTRAPPED_ENV] = "1"
        if not bootstrap.running_in(venv):
            run_py = str(bootstrap.BENCH_DIR / "run.py")
            bootstrap.reexec_in(venv, [run_py, *(sys.argv[1:] if argv is None else argv)])

    started = time.monotonic()
    needs_database = any(scenario.database for scenario in plan.scenarios)
    postgres_missing = (
        bootstrap.POSTGRES_MISSING if needs_database and not bootstrap.postgres_bin_dir() else ""
    )
    stamp = json.loads((venv / bootstrap.STAMP_NAME).read_text())
    nofile = raise_nofile()
    most = max((scenario.connections for scenario in plan.scenarios), default=0)
    if nofile < most + 1024:
        log(f"RLIMIT_NOFILE is {nofile}: {most:,} connections will meet socket errors")
    somaxconn = _read("/proc/sys/net/core/somaxconn")
    if somaxconn.isdigit() and int(somaxconn) < most:
        log(
            f"net.core.somaxconn {somaxconn} caps the listen backlog; with {most:,} "
            "connections some wait for SYN retries (left as is, recorded in the results)"
        )
    server_cpu, client_cpu = choose_cpus(args.server_cpu, args.client_cpu)
    if client_cpu is not None:
        # The harness (and its sampling thread) stays off the server's CPU.
        os.sched_setaffinity(0, {client_cpu})
    log(
        f"plan: {len(plan.scenarios)} scenario(s), {len(plan.servers)} server(s), "
        f"{plan.repeats} repeat(s); about {plan.estimate() / 60:.1f} min"
    )

    results_dir: Path = args.results_dir.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tmp", dir=results_dir))
    runner = Runner(plan, venv, workdir, server_cpu, client_cpu)
    if postgres_missing:
        runner.skip([s for s in plan.scenarios if s.database], postgres_missing)
    # A SIGTERM unwinds like Ctrl-C does, so that the database is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        runner.start_database()
        if plan.ceiling_app:
            runner.run_ceiling_app()
        for scenario in plan.scenarios:
            runner.run_scenario(scenario)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        runner.stop_database()
    plan.scenarios = [scenario for scenario in plan.scenarios if scenario.name not in runner.skipped]

    now = datetime.now(UTC)
    results: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "timestamp": now.isoformat(timespec="seconds"),
        "command": "python3 bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": plan.quick,
        "full_default": plan.full_default,
        "config": {
            "repeats": plan.repeats,
            "warmup_s": plan.warmup,
            "durations_s": {s.name: plan.seconds(s) for s in plan.scenarios},
            "server_cpu": server_cpu,
            "client_cpu": client_cpu,
            "disturbed_threshold": DISTURBED,
        },
        "machine": machine_info(nofile),
        "tools": {name: TOOLS[name].version() for name in {s.tool for s in plan.scenarios}}
        | ({"postgres": runner.database_version} if runner.database_version else {}),
        "skipped": runner.skipped,
        "packages": package_versions(),
        "wherry_install": stamp.get("wherry", {}),
        "scenarios": [
            {
                "name": s.name,
                "description": s.description,
                "setup": s.setup,
                "app": s.app_spec,
                "tool": s.tool,
                "connections": s.connections,
                "metric": s.metric,
                "payload": s.payload,
                "pipeline": s.pipeline,
                "max_latency_target_ms": s.max_latency_target_ms,
            }
            for s in plan.scenarios
        ],
        "servers": [{"name": s.name, "kind": s.kind, "notes": s.notes} for s in plan.servers],
        "ceiling_app": {
            "selected": plan.ceiling_app,
            "calls_per_s": runner.ceiling_app_runs,
            "median": statistics.median(runner.ceiling_app_runs) if runner.ceiling_app_runs else None,
            "error": runner.ceiling_app_error,
        },
        "points": [point.to_json() for point in runner.points],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    stamp_name = now.strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{stamp_name}.json"
    text = json.dumps(results, indent=1) + "\n"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    log(f"results: {path}")

    docs_dir: Path = args.docs_dir or (DOCS_DIR if plan.full_default else PARTIAL_DOCS_DIR)
    from bench import report

    written = report.write_report(results, docs_dir.resolve(), charts=not args.no_charts)
    for item in written:
        log(f"report: {item}")
    print(report.terminal_table(results))
    shutil.rmtree(workdir, ignore_errors=True)
    log(f"done in {results['elapsed_s'] / 60:.1f} min")
    return 0
