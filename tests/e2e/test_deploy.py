"""docs/deploy.md's systemd units and Kubernetes manifest, run as written (addresses, ports, the
program path and the app changed): socket activation serves and reloads, and the probes and the
SIGTERM drain behave as the manifest expects."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy_docs import config_block
from tests.procs import ROOT, children, free_port, wait_until


def unit_value(unit: str, key: str) -> str:
    match = re.search(rf"^{key}=(.*)$", unit, re.MULTILINE)
    assert match, f"{key}= missing from the unit"
    return match[1].strip()


def documented_command(app: str) -> list[str]:
    """ExecStart of the service unit, with this interpreter and a test app."""
    words = shlex.split(unit_value(config_block("systemd-service"), "ExecStart"))
    assert words[0].endswith("/wherry") and words[1] == "myapp:app"
    return [sys.executable, "-m", "wherry", app, *words[2:]]


# Put the socket at descriptor 3, name this process in LISTEN_PID, then become the service.
AS_SYSTEMD_DOES = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.parametrize("launcher", ["systemd-socket-activate", "as-systemd-does"])
def test_systemd_socket_activation(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path, launcher: str
) -> None:
    """The socket unit's ListenStream is bound by the launcher and passed as fd 3 with
    LISTEN_FDS=1 and LISTEN_PID (sd_listen_fds(3)); Wherry and its workers serve it, ExecReload
    (SIGHUP) replaces the workers, and SIGTERM stops cleanly (KillMode=mixed signals the
    supervisor only)."""
    listen = unit_value(config_block("systemd-socket"), "ListenStream")
    assert listen == "127.0.0.1:8000"
    port = free_port()
    address = f"127.0.0.1:{port}"
    command = [*documented_command("tests.apps:ops"), "--workers", "2"]  # fewer, for a 2-core CI
    log = open(tmp_path / "wherry.log", "wb")  # noqa: SIM115 - closed below
    if launcher == "systemd-socket-activate":
        tool = shutil.which("systemd-socket-activate")
        if tool is None:
            pytest.skip("systemd-socket-activate is not installed")
        proc = subprocess.Popen(
            [tool, "-l", address, *command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    else:
        # What systemd does: the socket is bound and listening before the service starts, it is
        # descriptor 3 of the service, and LISTEN_PID names the service's own pid.
        listener = socket.create_server(("127.0.0.1", port), backlog=128)
        fd = listener.fileno()
        proc = subprocess.Popen(
            [sys.executable, "-c", AS_SYSTEMD_DOES, str(fd), *command],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(fd,),
        )
        listener.close()  # the service holds it now, as systemd would
    processes.append(proc)
    url = f"http://{address}/"
    deadline = time.monotonic() + 20
    while True:
        try:
            first = httpx.get(url, timeout=5).text
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "wherry.log").read_text()
            time.sleep(0.05)
    wait_until(lambda: len(children(proc.pid)) == 2, what="the workers")
    before = children(proc.pid)
    assert int(first) in before
    if launcher == "as-systemd-does":  # ExecReload, once: the new workers get the inherited socket
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: len(children(proc.pid)) == 2 and not children(proc.pid) & before, 30, "new workers"
        )
        assert httpx.get(url).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log.close()
    text = (tmp_path / "wherry.log").read_text()
    assert f"Wherry running on http://{address}" in text
    assert "LISTEN_FDS" not in text


def test_kubernetes_probes_and_sigterm_drain(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The manifest's args, liveness and readiness probes: both probes answer 200 while serving;
    on SIGTERM readiness turns 503 at once, the request in flight completes, and the process
    exits 0 well within terminationGracePeriodSeconds."""
    manifest = config_block("kubernetes")
    args = json.loads(re.search(r"^\s*args: (\[.*\])$", manifest, re.MULTILINE)[1])  # type: ignore[index]
    grace = int(re.search(r"terminationGracePeriodSeconds: (\d+)", manifest)[1])  # type: ignore[index]
    probes = dict(
        re.findall(r"(readinessProbe|livenessProbe):\s*\n\s*httpGet: \{path: (\S+), port: 9100\}", manifest)
    )
    assert set(probes) == {"readinessProbe", "livenessProbe"}
    port, metrics = free_port(), free_port()
    replaced = {
        "myapp:app": "tests.apps:ops",
        "0.0.0.0": "127.0.0.1",
        "8000": str(port),
        "0.0.0.0:9100": f"127.0.0.1:{metrics}",
    }
    args = [replaced.get(arg, arg) for arg in args]
    assert f"127.0.0.1:{metrics}" in args
    log = open(tmp_path / "wherry.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "wherry", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    processes.append(proc)
    base = f"http://127.0.0.1:{metrics}"

    def probe(name: str) -> int:
        try:
            return httpx.get(base + probes[name], timeout=2).status_code
        except httpx.TransportError:
            return 0

    wait_until(lambda: probe("readinessProbe") == 200, 20, "readiness")
    assert probe("livenessProbe") == 200
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET /slow?delay=1&mark={tmp_path}/in HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until((tmp_path / "in").exists, what="the request in flight")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: probe("readinessProbe") == 503, 5, "readiness to turn 503")
        assert probe("livenessProbe") == 200  # alive while draining: not restarted by the kubelet
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"HTTP/1.1 200 OK")
    assert proc.wait(grace) == 0
    assert time.monotonic() - started < grace
    log.close()
