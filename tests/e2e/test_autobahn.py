"""WebSocket conformance: the Autobahn|Testsuite fuzzing client against an echo app.

Cases 1-7 (framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing) and 10 (limits)
run whole; 12 and 13 (permessage-deflate, RFC 7692) run at message sizes up to 4 KiB and with
256-byte fragments of 8 KiB messages. With ``WHERRY_AUTOBAHN_FULL=1`` every size of 12 and 13
and case 9 (messages up to 16 MiB, sent whole and in pieces) run too: about 8 minutes per event loop
on two cores. Each group is a test of its own, so pytest-xdist runs them side by side.
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
@pytest.mark.parametrize("group", sorted(GROUPS))
@pytest.mark.parametrize("loop", LOOPS)
def test_autobahn_cases_pass(wstest: Path, tmp_path: Path, loop: str, group: str) -> None:
    """RFC 6455 and RFC 7692 as the Autobahn|Testsuite fuzzing client checks them: no case FAILED
    (NON-STRICT and INFORMATIONAL are passes in its own grading)."""
    with run_server(ws_echo_exact, loop, ws_ping_interval=0) as server:
        spec = {
            "outdir": str(tmp_path / "report"),
            "servers": [{"agent": "wherry", "url": f"ws://127.0.0.1:{server.port}"}],
            "cases": GROUPS[group],
            "exclude-cases": [],
            "exclude-agent-cases": {},
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        with open(tmp_path / "wstest.log", "wb") as out:
            done = subprocess.run(
                [str(wstest), "-m", "fuzzingclient", "-s", "spec.json"],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=1700 if FULL else 500,
            )
    assert done.returncode == 0, (tmp_path / "wstest.log").read_text()[-3000:]
    results = json.loads((tmp_path / "report" / "index.json").read_text())["wherry"]
    assert results, "no case ran"
    failed = {
        case: (r["behavior"], r["behaviorClose"])
        for case, r in results.items()
        if r["behavior"] not in PASSING or r["behaviorClose"] not in PASSING
    }
    assert not failed, failed
