"""The in-process probes of bench/ run, and find every answer they expect: each checks the count of
responses (or echoed messages) its fake transports were given and exits non-zero when one is
missing. Run on a small count, on both loops; no timing is judged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        ["bench.probe", "--requests", "640"],
        ["bench.probe", "--requests", "640", "--post"],
        ["bench.probe", "--requests", "640", "--asyncio"],
        ["bench.probe_ws", "--messages", "640"],
        ["bench.probe_ws", "--messages", "640", "--asyncio"],
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[3:]) or argv[0],
)
def test_probe_runs(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "us/request" in done.stdout or "us/message" in done.stdout
