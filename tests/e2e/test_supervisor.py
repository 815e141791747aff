"""The supervisor (docs/discussion/processes.md): rolling restarts and recycling without a failed
request under load, pool resizing, health checks, giving up on workers that cannot start, the pid
file, Unix socket permissions and running as another user."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.load import Load
from tests.procs import ROOT, Wherry, unix_accepts, wait_until

VERSIONED_APP = """
import os

VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "lifespan.") + ".complete"
            await send({{"type": kind}})
            if message["type"] == "lifespan.shutdown":
                return
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_app(directory: Path, version: str) -> None:
    (directory / "versioned.py").write_text(VERSIONED_APP.format(version=version))


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Wherry]]:
    started: list[Wherry] = []
    yield started
    for server in started:
        server.close()


def start(servers: list[Wherry], tmp_path: Path, *args: str, **kwargs: object) -> Wherry:
    server = Wherry(["--no-access-log", *args], tmp_path, **kwargs)  # type: ignore[arg-type]
    servers.append(server)
    return server


def versions(load: Load) -> set[str]:
    return {body.split()[0].decode() for body in load.bodies}


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_hup_restarts_workers_one_by_one_with_new_code_and_no_failed_request(
    servers: list[Wherry], tmp_path: Path, loop: str
) -> None:
    """SIGHUP replaces every worker by one that imported the code afresh; requests running
    through the restart all succeed (each old worker drains only once its replacement is ready),
    on either event loop (the control channel and the drain are the same code on both)."""
    write_app(tmp_path, "v1")
    server = start(
        servers, tmp_path, "versioned:app", "--app-dir", str(tmp_path), "--workers", "2", "--loop", loop
    )
    server.wait_serving()
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    before = server.workers()
    with Load("127.0.0.1", server.port, concurrency=8) as load:
        load.wait_for(300)
        write_app(tmp_path, "v2")
        server.signal(signal.SIGHUP)
        wait_until(lambda: not (server.workers() & before) and len(server.workers()) == 2, what="new workers")
        server.wait_log("replaces worker", timeout=5)
        wait_until(lambda: "v2" in versions(load), what="the new code answering")
        load.wait_for(300)
    assert load.failures == []
    assert versions(load) == {"v1", "v2"}
    assert server.stop() == 0


def test_worker_dying_during_a_handover(servers: list[Wherry], tmp_path: Path) -> None:
    """An old worker killed while its replacement starts: the replacement takes its place, the
    restart goes on, and the pool ends at its size."""
    server = start(servers, tmp_path, "tests.apps:ops", "--workers", "2")
    server.wait_serving()
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    before = server.workers()
    server.signal(signal.SIGHUP)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(server.workers()) == 2 and not server.workers() & before, what="a new pool")
    assert httpx.get(server.url).status_code == 200
    assert "Traceback" not in server.log()
    assert server.stop() == 0


def test_ttin_adds_a_worker_and_ttou_removes_one(servers: list[Wherry], tmp_path: Path) -> None:
    """SIGTTIN starts one more worker; SIGTTOU drains one (never below one)."""
    server = start(servers, tmp_path, "tests.apps:ops", "--workers", "2")
    server.wait_serving()
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    server.signal(signal.SIGTTIN)
    wait_until(lambda: len(server.workers()) == 3, what="three workers")
    server.signal(signal.SIGTTOU)  # one at a time: the kernel merges a signal already pending
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    server.signal(signal.SIGTTOU)
    wait_until(lambda: len(server.workers()) == 1, what="one worker")
    server.signal(signal.SIGTTOU)
    server.wait_log("already at one worker")
    assert len(server.workers()) == 1
    assert httpx.get(server.url).status_code == 200
    assert server.stop() == 0


def test_worker_whose_loop_is_stuck_is_killed_and_replaced(servers: list[Wherry], tmp_path: Path) -> None:
    """A worker that does not answer the ping within --timeout-worker-healthcheck is killed and a
    new one started."""
    server = start(
        servers, tmp_path, "tests.apps:ops", "--workers", "2", "--timeout-worker-healthcheck", "0.5"
    )
    server.wait_serving()
    wait_until(lambda: len(server.workers()) == 2, what="two workers")
    before = server.workers()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_log("did not answer its health check within 0.5s")
        wait_until(lambda: len(server.workers()) == 2 and server.workers() != before, what="a replacement")
        sock.settimeout(5)
        assert sock.recv(100) == b""  # the stuck worker's connection died with it
    assert httpx.get(server.url).status_code == 200
    assert server.stop() == 0


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_limit_max_requests_recycles_workers_without_a_failed_request(
    servers: list[Wherry], tmp_path: Path, loop: str
) -> None:
    """--max-requests (with jitter) replaces a worker once it has served that many requests,
    through the same handover as SIGHUP: no request fails."""
    server = start(
        servers,
        tmp_path,
        "tests.apps:ops",
        "--workers",
        "2",
        "--max-requests",
        "200",
        "--max-requests-jitter",
        "20",
        "--loop",
        loop,
    )
    server.wait_serving()
    with Load("127.0.0.1", server.port, concurrency=6) as load:
        wait_until(lambda: len(load.bodies) >= 3, timeout=30, what="a worker replaced")
    assert load.failures == []
    assert "--limit-max-requests" in server.log()
    assert server.stop() == 0


def test_limit_worker_rss_recycles_a_worker_that_grows(servers: list[Wherry], tmp_path: Path) -> None:
    """--limit-worker-rss replaces a worker whose resident memory passes the limit, without a
    failed request."""
    server = start(servers, tmp_path, "tests.apps:ops", "--workers", "1", "--limit-worker-rss", "80")
    server.wait_serving()
    [first] = server.workers()
    with Load("127.0.0.1", server.port, concurrency=4) as load:
        load.wait_for(100)
        assert httpx.get(server.url + "/grow").text == str(first)
        server.wait_log(f"Worker [{first}] uses")
        wait_until(lambda: server.workers() and first not in server.workers(), what="the replacement")
        load.wait_for(100)
    assert load.failures == []
    assert server.stop() == 0


def test_workers_that_keep_failing_to_start_stop_the_server(servers: list[Wherry], tmp_path: Path) -> None:
    """Workers that exit before they are ready are retried with a growing delay; after five in a
    row the supervisor exits non-zero and says why."""
    server = start(servers, tmp_path, "tests.no_such_module:app", "--workers", "2")
    code = server.proc.wait(30)
    assert code == 1
    log = server.log()
    assert "could not import module 'tests.no_such_module'" in log
    assert "retrying in 0.1s" in log
    assert "Workers failed to start 5 times in a row (last: exit status 1); stopping" in log


def test_sigterm_drains_workers_then_kills_after_the_grace_period(
    servers: list[Wherry], tmp_path: Path
) -> None:
    """SIGTERM lets a request in flight finish; one that outlasts --timeout-graceful-shutdown is
    cut and the server still exits 0."""
    server = start(servers, tmp_path, "tests.apps:ops", "--workers", "2", "--timeout-graceful-shutdown", "1")
    server.wait_serving()
    with (
        socket.create_connection(("127.0.0.1", server.port)) as quick,
        socket.create_connection(("127.0.0.1", server.port)) as slow,
    ):
        quick.sendall(f"GET /slow?delay=0.5&mark={tmp_path}/q HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        slow.sendall(f"GET /slow?delay=30&mark={tmp_path}/s HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until(lambda: (tmp_path / "q").exists() and (tmp_path / "s").exists(), what="requests in flight")
        server.signal(signal.SIGTERM)
        quick.settimeout(5)
        assert quick.recv(1000).startswith(b"HTTP/1.1 200 OK")
        assert server.proc.wait(10) == 0
        slow.settimeout(5)
        assert slow.recv(1000) == b""


def test_pid_file_of_the_supervisor(servers: list[Wherry], tmp_path: Path) -> None:
    """--pid-file names the supervisor (the process to signal) while it runs, and is removed when
    it stops."""
    pid_file = tmp_path / "wherry.pid"
    server = start(servers, tmp_path, "tests.apps:ops", "--workers", "2", "--pid-file", str(pid_file))
    server.wait_serving()
    assert int(pid_file.read_text()) == server.pid
    assert server.stop() == 0
    assert not pid_file.exists()


def test_uds_permissions(servers: list[Wherry], tmp_path: Path) -> None:
    """--uds-permissions sets the file mode of the Unix socket."""
    path = tmp_path / "w.sock"
    server = start(servers, tmp_path, "tests.apps:ops", "--uds", str(path), "--uds-permissions", "660")
    wait_until(lambda: unix_accepts(str(path)), what="the server on its socket")
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        assert client.get("http://localhost/").status_code == 200
    assert server.stop() == 0


def _usable_by_others(path: str) -> bool:
    """Every directory down to ``path`` can be entered by other users (a worker started as
    another user must be able to run the interpreter and import the code)."""
    current = Path(path).resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [current, *current.parents])


IDS_APP = """
import os


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": f"{os.getuid()} {os.getgid()}"})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    body = f"{os.getuid()} {os.getgid()} {scope['http_version']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.fixture
def readable_app_dir() -> Iterator[Path]:
    """A directory every user can read, holding ``ids_app`` (standard library only): the app is
    imported after privileges are dropped, and the checkout itself may be readable by root only."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="wherry-ids-"))
    try:
        path.chmod(0o755)
        (path / "ids_app.py").write_text(IDS_APP)
        (path / "ids_app.py").chmod(0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
@pytest.mark.parametrize("workers", ["1", "2"])
def test_user_and_group_when_started_as_root(
    servers: list[Wherry], tmp_path: Path, readable_app_dir: Path, workers: str
) -> None:
    """--user/--group: the sockets are bound as root, the app runs as the user and group given,
    and what the server loads on first need (HTTP/2, WebSocket) still works once it runs as them."""
    import grp
    import pwd

    from websockets.sync.client import connect

    if workers != "1" and not (_usable_by_others(sys.executable) and _usable_by_others(str(ROOT))):
        pytest.skip("the interpreter or the checkout is not reachable by other users here")
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    server = start(
        servers,
        tmp_path,
        "ids_app:app",
        "--app-dir",
        str(readable_app_dir),
        "--workers",
        workers,
        "--user",
        "nobody",
        "--group",
        group,
    )
    server.wait_serving()
    ids = f"{nobody.pw_uid} {nobody.pw_gid}"
    assert httpx.get(server.url + "/ids").text == f"{ids} 1.1"
    h2 = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", server.url + "/ids"], capture_output=True, timeout=30
    )
    assert h2.stdout.decode() == f"{ids} 2"
    with connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.recv(timeout=10) == ids
    assert server.stop() == 0


def test_unknown_user_is_a_clear_error(tmp_path: Path) -> None:
    """--user naming nobody on the system stops the server before it binds anything."""
    result = subprocess.run(
        [sys.executable, "-m", "wherry", "tests.apps:ops", "--user", "no-such-user-here", "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert b"--user: no such user 'no-such-user-here'" in result.stderr
