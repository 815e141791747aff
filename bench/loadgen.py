"""Load tools. Each turns (scenario, URL, duration) into a ``LoadResult``.

``wrk`` is driven with a generated Lua script: the scenario's method and body, and a
``done()`` hook that prints the summary, the error counters and the latency percentiles
(p50, p90, p99, p99.9) as one JSON line, so nothing is scraped from wrk's human output
except as a fallback for the error lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from bench.scenarios import Scenario

RESULT_MARK = "WRK_RESULT "

DONE_HOOK = r"""
latencies = latencies or function(summary, latency)
  return latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)
end
done = function(summary, latency, requests)
  local e = summary.errors
  local mean, max, p50, p90, p99, p999, recorded = latencies(summary, latency)
  io.write(string.format(
    'WRK_RESULT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, ' ..
    '"mean_us": %.3f, "max_us": %.3f, "p50_us": %.3f, "p90_us": %.3f, ' ..
    '"p99_us": %.3f, "p999_us": %.3f, "recorded": %.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    mean, max, p50, p90, p99, p999, recorded or -1))
end
"""

# HTTP/1.1 pipelining. wrk counts the requests in what request() returns, records one latency
# when the last of them is answered (the batch's time), and sends the next batch.
#
# Before done(), wrk adds samples to its latency histogram for coordinated omission: below every
# recorded latency n, one at each n - k * interval, with interval = run time / (responses per
# connection). Pipelined, a connection's responses come DEPTH to a batch, so that interval is a
# DEPTH-th of a batch's time and most of the added samples land below the histogram's minimum,
# where percentile() never looks: its percentiles come out 0 or far too low. latencies() reads the
# histogram itself (the wrk_stats layout of wrk 4.x, through LuaJIT's FFI), takes those samples
# back out and adds them again at the interval of a batch, so that the percentiles mean what they
# mean in the scenarios that do not pipeline. The max is wrk's own: the slowest batch recorded.
PIPELINE = r"""
local depth, connections = DEPTH, CONNECTIONS
local batch
init = function(args)
  local parts = {}
  for i = 1, depth do parts[i] = wrk.format() end
  batch = table.concat(parts)
end
request = function()
  return batch
end

local ffi = require("ffi")
ffi.cdef("typedef struct { uint64_t count, limit, min, max; uint64_t data[]; } wrk_stats;")

-- wrk's own correction: for each recorded latency n >= 2 * interval, its count again at every
-- n - k * interval above interval (sign 1), or taken back out (sign -1: only where counts were
-- read, from low up). Upwards it reads counts not yet changed, downwards counts already
-- restored: either way the counts of the recorded latencies.
local function correct(counts, low, high, interval, sign)
  if interval < 1 then return end
  local first, last, step, floor = math.max(low, 2 * interval), high, 1, 0
  if sign < 0 then first, last, step, floor = high, math.max(low, 2 * interval), -1, low end
  for n = first, last, step do
    local count = counts[n]
    if count then
      local m = n - interval
      while m > interval and m >= floor do
        local value = (counts[m] or 0) + sign * count
        counts[m] = value ~= 0 and value or nil
        m = m - interval
      end
    end
  end
end

latencies = function(summary, latency)
  local stats = ffi.cast("wrk_stats **", latency)[0]
  local low, high = tonumber(stats.min), tonumber(stats.max)
  local responses = math.floor(summary.requests / connections)
  if high < low or responses < 1 then
    return latency.mean, latency.max, 0, 0, 0, 0, 0
  end
  local counts = {}
  for n = low, high do
    local count = tonumber(stats.data[n])
    if count > 0 then counts[n] = count end
  end
  correct(counts, low, high, math.floor(summary.duration / responses), -1)
  local recorded = 0
  for _, count in pairs(counts) do recorded = recorded + count end
  local batches = math.floor(responses / depth)
  if batches >= 1 then
    correct(counts, low, high, math.floor(summary.duration / batches), 1)
  end
  local bottom, total, sum = high, 0, 0
  for n, count in pairs(counts) do
    bottom, total, sum = math.min(bottom, n), total + count, sum + n * count
  end
  local wanted, found, seen, i = {50, 90, 99, 99.9}, {}, 0, 1
  for n = bottom, high do
    seen = seen + (counts[n] or 0)
    while i <= #wanted and seen >= math.floor(wanted[i] / 100 * total + 1) do
      found[i], i = n, i + 1
    end
  end
  return sum / total, high, found[1] or high, found[2] or high, found[3] or high, found[4] or high,
    recorded
end
"""


class LoadError(RuntimeError):
    """The load tool failed to run or to report."""


@dataclass
class LoadResult:
    requests: int
    duration_s: float
    bytes_read: int
    errors_connect: int
    errors_read: int
    errors_write: int
    errors_timeout: int
    non_2xx: int
    """Responses with status >= 400 (wrk's "Non-2xx or 3xx responses")."""
    latency_mean_ms: float
    latency_max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    latencies_recorded: int = -1
    """How many latencies the percentiles come from (batches when pipelining); -1: not counted.
    0 with requests answered: no batch was answered whole in the run."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        return self.errors_connect + self.errors_read + self.errors_write + self.errors_timeout

    @property
    def errors(self) -> int:
        return self.socket_errors + self.non_2xx

    def to_json(self) -> dict[str, float | int]:
        data: dict[str, float | int] = asdict(self)
        data["rps"] = self.rps
        data["errors"] = self.errors
        return data


class LoadTool(Protocol):
    name: str

    def run(
        self, scenario: Scenario, url: str, duration: int, cpu: int | None, workdir: Path
    ) -> LoadResult: ...

    def version(self) -> str: ...


def _pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


class Wrk:
    name = "wrk"

    def script(self, scenario: Scenario) -> str:
        lines = [f'wrk.method = "{scenario.method}"']
        if scenario.close:
            lines.append('wrk.headers["Connection"] = "close"')
        if scenario.body_size:
            lines.append(f'wrk.body = string.rep("x", {scenario.body_size})')
            lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
        if scenario.pipeline > 1:
            script = PIPELINE.replace("DEPTH", str(scenario.pipeline))
            lines.append(script.replace("CONNECTIONS", str(scenario.connections)))
        return "\n".join(lines) + "\n" + DONE_HOOK

    def command(self, scenario: Scenario, url: str, duration: int, script: Path) -> list[str]:
        return [
            "wrk",
            "-t", str(scenario.threads),
            "-c", str(scenario.connections),
            "-d", f"{duration}s",
            "--timeout", f"{scenario.timeout}s",
            "--latency",
            "-s", str(script),
            *scenario.extra,
            url.rstrip("/") + scenario.path,
        ]  # fmt: skip

    def run(self, scenario: Scenario, url: str, duration: int, cpu: int | None, workdir: Path) -> LoadResult:
        text = self.script(scenario)
        script = workdir / f"wrk-{scenario.name}-{zlib.crc32(text.encode()):08x}.lua"
        if not script.exists():
            # Warm-ups run several wrk at once: write under a private name, then rename.
            partial = script.with_suffix(f".{threading.get_ident()}.tmp")
            partial.write_text(text)
            os.replace(partial, script)
        argv = _pinned(cpu, self.command(scenario, url, duration, script))
        try:
            done = subprocess.run(
                argv,
                check=False,
                capture_output=True,
                text=True,
                timeout=duration + scenario.timeout + 60,
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wrk did not finish: {' '.join(argv)}") from exc
        return parse_wrk(done.stdout, done.stderr, done.returncode)

    def version(self) -> str:
        done = subprocess.run(["wrk", "-v"], check=False, capture_output=True, text=True)
        lines = (done.stdout + done.stderr).strip().splitlines()
        # "wrk 4.1.0 [epoll] Copyright (C) 2012 Will Glozer"
        return lines[0].split(" Copyright")[0] if lines else "wrk (unknown version)"


_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(stdout: str, stderr: str, returncode: int) -> LoadResult:
    """Read the done() hook's JSON line; cross-check the error lines of the text output."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARK)), None)
    if line is None:
        tail = "\n".join((stdout + stderr).strip().splitlines()[-15:])
        raise LoadError(f"wrk exited {returncode} without a result:\n{tail}")
    raw = json.loads(line[len(RESULT_MARK) :])
    result = LoadResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        bytes_read=int(raw["bytes"]),
        errors_connect=int(raw["connect"]),
        errors_read=int(raw["read"]),
        errors_write=int(raw["write"]),
        errors_timeout=int(raw["timeout"]),
        non_2xx=int(raw["status"]),
        latency_mean_ms=raw["mean_us"] / 1e3,
        latency_max_ms=raw["max_us"] / 1e3,
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        p999_ms=raw["p999_us"] / 1e3,
        latencies_recorded=int(raw.get("recorded", -1)),
    )
    # The text lines carry the same counters; if they disagree, trust the larger.
    match = _SOCKET_ERRORS.search(stdout)
    if match:
        connect, read, write, timeout = (int(group) for group in match.groups())
        result.errors_connect = max(result.errors_connect, connect)
        result.errors_read = max(result.errors_read, read)
        result.errors_write = max(result.errors_write, write)
        result.errors_timeout = max(result.errors_timeout, timeout)
    match = _NON_2XX.search(stdout)
    if match:
        result.non_2xx = max(result.non_2xx, int(match.group(1)))
    return result


class WsLoad:
    """``bench/wsload.py``, a closed-loop WebSocket echo client on one core (see its docstring).
    ``Scenario.extra`` carries its ``--size``."""

    name = "wsload"

    def run(self, scenario: Scenario, url: str, duration: int, cpu: int | None, workdir: Path) -> LoadResult:
        ws_url = "ws" + url.rstrip("/")[len("http") :] + scenario.path
        argv = _pinned(
            cpu,
            [
                sys.executable, "-m", "bench.wsload",
                "--url", ws_url,
                "--connections", str(scenario.connections),
                "--duration", str(duration),
                *scenario.extra,
            ],
        )  # fmt: skip
        try:
            done = subprocess.run(
                argv,
                check=False,
                capture_output=True,
                text=True,
                timeout=duration + 60,
                cwd=Path(__file__).resolve().parent.parent,
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"wsload did not finish: {' '.join(argv)}") from exc
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(WSLOAD_MARK)), None)
        if line is None:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise LoadError(f"wsload exited {done.returncode} without a result:\n{tail}")
        raw = json.loads(line[len(WSLOAD_MARK) :])
        return LoadResult(
            requests=int(raw["messages"]),
            duration_s=float(raw["duration_s"]),
            bytes_read=int(raw["bytes"]),
            errors_connect=0,
            errors_read=int(raw["errors"]),
            errors_write=0,
            errors_timeout=0,
            non_2xx=0,
            latency_mean_ms=raw["mean_ms"],
            latency_max_ms=raw["max_ms"],
            p50_ms=raw["p50_ms"],
            p90_ms=raw["p90_ms"],
            p99_ms=raw["p99_ms"],
            p999_ms=raw["p999_ms"],
        )

    def version(self) -> str:
        return "bench/wsload.py (asyncio Protocol, uvloop when installed)"


WSLOAD_MARK = "WSLOAD_RESULT "

_H2_FINISHED = re.compile(r"finished in ([\d.]+)s, ([\d.]+) req/s, ([\d.]+)([KMG]?B)/s")
_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2_TRAFFIC = re.compile(r"traffic: .*?\((\d+)\) total")
_H2_TIME = re.compile(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class H2Load:
    """h2load (nghttp2) for HTTP/2: ``-c`` connections with ``-m`` streams in flight each, h2c by
    prior knowledge on an http:// URL. h2load reports min/max/mean request times, not
    percentiles: the mean stands in the p50 column and the max in p99 and p99.9."""

    name = "h2load"

    def command(self, scenario: Scenario, url: str, duration: int) -> list[str]:
        return [
            "h2load",
            "-c", str(scenario.connections),
            "-m", str(scenario.streams),
            "-t", str(scenario.threads),
            "-D", str(duration),
            *scenario.extra,
            url.rstrip("/") + scenario.path,
        ]  # fmt: skip

    def run(self, scenario: Scenario, url: str, duration: int, cpu: int | None, workdir: Path) -> LoadResult:
        argv = _pinned(cpu, self.command(scenario, url, duration))
        try:
            done = subprocess.run(
                argv, check=False, capture_output=True, text=True, timeout=duration + scenario.timeout + 60
            )
        except subprocess.TimeoutExpired as exc:
            raise LoadError(f"h2load did not finish: {' '.join(argv)}") from exc
        return parse_h2load(done.stdout, done.stderr, done.returncode)

    def version(self) -> str:
        done = subprocess.run(["h2load", "--version"], check=False, capture_output=True, text=True)
        return (done.stdout + done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else "h2load"


def parse_h2load(stdout: str, stderr: str, returncode: int) -> LoadResult:
    finished = _H2_FINISHED.search(stdout)
    requests = _H2_REQUESTS.search(stdout)
    if finished is None or requests is None:
        tail = "\n".join((stdout + stderr).strip().splitlines()[-15:])
        raise LoadError(f"h2load exited {returncode} without a result:\n{tail}")
    status = _H2_STATUS.search(stdout)
    traffic = _H2_TRAFFIC.search(stdout)
    timing = _H2_TIME.search(stdout)
    succeeded = int(requests.group(4))
    non_2xx = sum(int(g) for g in status.groups()[2:]) if status else 0
    low = mean = high = 0.0
    if timing:
        values = timing.groups()
        low = float(values[0]) * _UNIT_MS[values[1]]
        high = float(values[2]) * _UNIT_MS[values[3]]
        mean = float(values[4]) * _UNIT_MS[values[5]]
    del low
    return LoadResult(
        requests=succeeded,
        duration_s=float(finished.group(1)),
        bytes_read=int(traffic.group(1)) if traffic else 0,
        errors_connect=0,
        errors_read=int(requests.group(6)),
        errors_write=int(requests.group(5)),
        errors_timeout=int(requests.group(7)),
        non_2xx=non_2xx,
        latency_mean_ms=mean,
        latency_max_ms=high,
        p50_ms=mean,
        p90_ms=high,
        p99_ms=high,
        p999_ms=high,
    )


TOOLS: dict[str, LoadTool] = {"wrk": Wrk(), "h2load": H2Load(), "wsload": WsLoad()}
