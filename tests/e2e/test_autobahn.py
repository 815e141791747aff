"""WebSocket conformance: the Autobahn|Testsuite fuzzing client against an echo app.

Cases 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing) and 10 (limits)
run whole; 12 and 13 (permessage-deflate, RFC 7692) run at message sizes up to 4 KiB and with
256-byte fragments of 8 KiB messages. With ``WHERRY_AUTOBAHN_FULL=1`` every size of 12 and 13
and case 9 (messages up to 16 MiB, sent whole and in pieces) run too: about 8 minutes per event loop
on two cores. Each group is a test of its own, so pytest-xdist runs them side by side.

On trio the default run covers every group with one size of 12 and 13: 1-7 and 10 whole, and each
payload of 12 (12.1-12.5) and each offer of 13 (13.1-13.7) as 8 KiB messages in 256-byte
fragments, with two fuzzing clients at once against one server, so the compression cases run
while the suite's own timed cases wait (5.19-5.20 and 6.4.x spend about 8 s in sleeps): one test
of about 10 s instead of three of about 45 s together. The drivers above the transport are the
same code on every loop (``wherry/connection/websocket.py`` and the sans-IO session), run whole on
asyncio and uvloop; what trio adds is its transport, which every group crosses.
``WHERRY_AUTOBAHN_FULL=1`` runs trio on everything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.apps import ws_echo_exact
from tests.conftest import LOOPS, run_server

ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("WHERRY_AUTOBAHN_FULL") == "1"

SMALL_SIZES = [1, 3, 5, 11]  # 16 B, 256 B and 4 KiB whole, and 8 KiB in 256-byte fragments
GROUPS: dict[str, list[str]] = {
    "core": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"],
    "deflate-12": (["12.*"] if FULL else [f"12.{x}.{y}" for x in range(1, 6) for y in SMALL_SIZES]),
    "deflate-13": (["13.*"] if FULL else [f"13.{x}.{y}" for x in range(1, 8) for y in SMALL_SIZES]),
}
if FULL:
    GROUPS["large-9"] = ["9.*"]

PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}

# trio's default run: the core whole beside each payload of 12 and each offer of 13 as 8 KiB
# messages in 256-byte fragments (the module's docstring says why).
TRIO_SAMPLE = [GROUPS["core"], [f"12.{x}.11" for x in range(1, 6)] + [f"13.{x}.11" for x in range(1, 8)]]


def _runs() -> list[Any]:
    """(loop, name, case lists): each case list is one fuzzing client, run at once with the others
    of its test against one server."""
    runs = []
    for loop in LOOPS:
        if loop == "trio" and not FULL:
            runs.append(pytest.param(loop, TRIO_SAMPLE, id=f"{loop}-every-group"))
            continue
        for group in sorted(GROUPS):
            runs.append(pytest.param(loop, [GROUPS[group]], id=f"{loop}-{group}"))
    return runs


def _load_autobahn() -> Any:
    spec = importlib.util.spec_from_file_location("wherry_autobahn", ROOT / "scripts" / "autobahn.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def wstest() -> Path:
    try:
        return _load_autobahn().ensure_wstest(log=False)  # type: ignore[no-any-return]
    except RuntimeError as exc:
        pytest.skip(f"Autobahn|Testsuite cannot be installed here: {exc}")


@pytest.mark.timeout(1800 if FULL else 600)
@pytest.mark.parametrize(("loop", "clients"), _runs())
def test_autobahn_cases_pass(wstest: Path, tmp_path: Path, loop: str, clients: list[list[str]]) -> None:
    """RFC 6455 and RFC 7692 as the Autobahn|Testsuite fuzzing client checks them: no case FAILED
    (NON-STRICT and INFORMATIONAL are passes in its own grading)."""
    dirs = [tmp_path / f"client{i}" for i in range(len(clients))]
    with run_server(ws_echo_exact, loop, ws_ping_interval=0) as server:
        running: list[subprocess.Popen[bytes]] = []
        try:
            for cases, cwd in zip(clients, dirs, strict=True):
                cwd.mkdir()
                spec = {
                    "outdir": str(cwd / "report"),
                    "servers": [{"agent": "wherry", "url": f"ws://127.0.0.1:{server.port}"}],
                    "cases": cases,
                    "exclude-cases": [],
                    "exclude-agent-cases": {},
                }
                (cwd / "spec.json").write_text(json.dumps(spec))
                command = [str(wstest), "-m", "fuzzingclient", "-s", "spec.json"]
                with open(cwd / "wstest.log", "wb") as out:  # the client keeps its own copy
                    running.append(subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT))
            codes = [process.wait(timeout=1700 if FULL else 500) for process in running]
        finally:
            for process in running:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    results: dict[str, Any] = {}
    for code, cwd in zip(codes, dirs, strict=True):
        assert code == 0, (cwd / "wstest.log").read_text()[-3000:]
        ran = json.loads((cwd / "report" / "index.json").read_text())["wherry"]
        assert ran, "no case ran"
        results.update(ran)
    failed = {
        case: (r["behavior"], r["behaviorClose"])
        for case, r in results.items()
        if r["behavior"] not in PASSING or r["behaviorClose"] not in PASSING
    }
    assert not failed, failed
