"""The PostgreSQL of the database scenarios (``dbquery``, ``dbpage``), started by the harness.

It runs Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``) on a cluster made
with ``initdb`` in a directory under the run's workdir, listening on a free port of 127.0.0.1
only (no Unix socket), pinned to the load generator's CPU, with durability off (the scenarios
only read). PostgreSQL refuses to run as root: as root it runs as the ``postgres`` system user
(``runuser -u postgres --``), which then owns the directory. ``stop()`` asks the postmaster for
a fast shutdown and waits for it; the harness calls it at the end of the run, on errors and on
Ctrl-C.

The apps find the database through ``DATABASE_ENV``, which the harness sets for every server.
Module level uses the standard library only; asyncpg (the harness's virtualenv has it) fills
the tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import bootstrap
from bench.procs import LOAD_SESSIONS, free_port

DATABASE_ENV = "WHERRY_BENCH_DATABASE_URL"
DATABASE = "bench"
USER = "bench"
SYSTEM_USER = "postgres"
FIRST_PORT = 15_432
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MAX_CONNECTIONS = 200
"""Every server of a scenario opens a pool of 16 at once (they all stay up while one is measured)."""

WORLD_ROWS = 10_000
WORLD_SEED = 20_261_207
FORTUNES: tuple[str, ...] = (
    "A server that never blocks still waits for the network.",
    '<script>alert("this is text, not a script")</script>',
    'Tom & Jerry\'s "quotes" need escaping too.',
    "Backpressure is politeness with a buffer.",
    "フレームワークは変わっても、HTTPは変わらない。",
    "Keep-alive: the connection you did not have to open.",
    "A timeout without a test is a rumour.",
    "Pipelined requests are answered in order, or not at all.",
    "1 < 2 and 3 > 2, even in HTML.",
    "Ünïcödé survives the round trip.",
    "Measure twice, benchmark three times.",
    "The slowest request sets the pace.",
)

SCHEMA = (
    "CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL)",
    "CREATE TABLE fortune (id integer PRIMARY KEY, message text NOT NULL)",
)


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or could not be set up or started; the message says why."""


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class Postgres:
    def __init__(self, workdir: Path, cpu: int | None) -> None:
        bin_dir = bootstrap.postgres_bin_dir()
        if bin_dir is None:
            raise PostgresError(bootstrap.POSTGRES_MISSING)
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.dir = workdir / "postgres"
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.cpu = cpu
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user: list[str] = []
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam(SYSTEM_USER)
            except KeyError as exc:
                raise PostgresError(
                    f"running as root, and no {SYSTEM_USER!r} user to run PostgreSQL as"
                ) from exc
            self.as_user = ["runuser", "-u", SYSTEM_USER, "--"]

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def version(self) -> str:
        done = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() or f"postgres in {self.bin_dir}"

    def _prepare_dir(self) -> None:
        self.dir.mkdir()
        if self.owner is not None:
            # The postgres user must reach its directory through the run's (private) workdir.
            self.workdir.chmod(0o711)
            os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)

    def start(self) -> None:
        """initdb, start, wait until it accepts connections, create and fill the tables."""
        self._prepare_dir()
        initdb = [
            *self.as_user, str(self.bin_dir / "initdb"), "-D", str(self.data),
            "-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
        ]  # fmt: skip
        done = subprocess.run(initdb, cwd=self.dir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            reach = f" (the {SYSTEM_USER} user must be able to reach {self.dir})" if self.owner else ""
            raise PostgresError(f"initdb failed{reach}:\n{(done.stdout + done.stderr).strip()[-2000:]}")
        self.port = free_port(FIRST_PORT)
        argv = [
            *self.as_user, str(self.bin_dir / "postgres"), "-D", str(self.data),
            "-p", str(self.port), "-h", "127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", f"max_connections={MAX_CONNECTIONS}",
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu), *argv]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        LOAD_SESSIONS.add(self.proc.pid)
        try:
            asyncio.run(self._fill())
        except BaseException:
            self.stop()
            raise

    async def _connect(self, database: str) -> Any:
        import asyncpg

        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                return await asyncpg.connect(host="127.0.0.1", port=self.port, user=USER, database=database)
            except (OSError, asyncpg.PostgresError) as exc:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise PostgresError(
                        f"postgres exited with code {self.proc.returncode}:\n{_tail(self.log_path)}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"postgres not ready after {READY_TIMEOUT:.0f} s:\n{_tail(self.log_path)}"
                    ) from exc
                await asyncio.sleep(0.1)

    async def _fill(self) -> None:
        admin = await self._connect("postgres")
        try:
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await admin.close()
        conn = await self._connect(DATABASE)
        try:
            for statement in SCHEMA:
                await conn.execute(statement)
            rng = random.Random(WORLD_SEED)
            world = [(i, rng.randint(1, WORLD_ROWS)) for i in range(1, WORLD_ROWS + 1)]
            await conn.copy_records_to_table("world", records=world)
            fortunes = list(enumerate(FORTUNES, start=1))
            await conn.copy_records_to_table("fortune", records=fortunes)
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster), then whatever is left of its session."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                postmaster = int((self.data / "postmaster.pid").read_text().splitlines()[0])
                os.kill(postmaster, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
        LOAD_SESSIONS.discard(proc.pid)
