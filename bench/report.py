"""Turn a results file into ``results.md``, PNG charts and a terminal table.

Regenerate a report from any results file with
``bench/.venv/bin/python -m bench.report bench/results/latest.json --docs-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.servers import REFERENCE, REFERENCES

Results = dict[str, Any]
PointData = dict[str, Any]

TIMES = "\u00d7"  # the multiplication sign of "1.25x"
DAGGER = "\u2020"  # marks a row measured while other processes were busy
CEILING_SCENARIOS = ("get64", "post64", "get1", "c10k", "upload1m")
CHARTS = ("throughput.png", "latency.png", "memory.png")


# --- formatting ------------------------------------------------------------------------------


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    return f"{value:.3f} ms"


def fmt_mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}{TIMES}"


def fmt_share(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f}%" if value < 0.1 else f"{value * 100:.0f}%"


def fmt_spread(summary: dict[str, Any]) -> str:
    """(max - min) / median of req/s over the repeats: how much to trust a difference."""
    low, high, mid = summary.get("rps_min"), summary.get("rps_max"), summary["rps"]
    if low is None or high is None or not mid or low == high:
        return "—"
    return f"±{(high - low) / mid * 50:.0f}%"


ERROR_LABELS = {
    "errors_connect": "connect",
    "errors_read": "read",
    "errors_write": "write",
    "errors_timeout": "timeout",
    "non_2xx": "non-2xx",
}


def fmt_errors(summary: dict[str, Any]) -> str:
    total = int(summary.get("errors", 0))
    if total == 0:
        return "0"
    parts = [
        f"{ERROR_LABELS[key]} {value:,}" for key, value in summary.get("errors_detail", {}).items() if value
    ]
    return f"{total:,} ({', '.join(parts)})"


# --- reading results ---------------------------------------------------------------------------


def points_of(results: Results, scenario: str) -> list[PointData]:
    order = [server["name"] for server in results["servers"]]
    found = [point for point in results["points"] if point["scenario"] == scenario]
    return sorted(found, key=lambda point: order.index(point["server"]))


def find(results: Results, scenario: str, server: str) -> PointData | None:
    point: PointData
    for point in results["points"]:
        if point["scenario"] == scenario and point["server"] == server:
            return point
    return None


def ok(point: PointData | None) -> bool:
    return point is not None and point["status"] == "ok" and bool(point["summary"])


def threshold(results: Results) -> float:
    return float(results["config"].get("disturbed_threshold", 0.05))


def disturbed(results: Results, point: PointData) -> bool:
    """Other processes used more than the threshold of a CPU during one of its runs."""
    return ok(point) and point["summary"].get("other_cpu_max", 0.0) > threshold(results)


def disturbed_points(results: Results) -> list[PointData]:
    return [point for point in results["points"] if disturbed(results, point)]


def main_value(point: PointData, metric: str) -> float:
    """MB/s for transfer scenarios, req/s otherwise."""
    summary = point["summary"]
    return float(summary["mbps"] if metric != "rps" else summary["rps"])


def ratio(results: Results, scenario: str, server: str, to: str) -> float | None:
    point, ref = find(results, scenario, server), find(results, scenario, to)
    if not (ok(point) and ok(ref)):
        return None
    assert point is not None and ref is not None
    base = float(ref["summary"]["rps"])
    return float(point["summary"]["rps"]) / base if base else None


def reference(results: Results, scenario: str) -> str | None:
    """The fastest of uvicorn's configurations (``REFERENCES``) measured in the scenario."""
    measured = [
        point
        for name in REFERENCES
        if (point := find(results, scenario, name)) is not None and ok(point) and point["summary"]["rps"] > 0
    ]
    if not measured:
        return None
    return str(max(measured, key=lambda point: float(point["summary"]["rps"]))["server"])


def vs_reference(results: Results, scenario: str, server: str) -> float | None:
    """req/s over the faster uvicorn configuration's in the same scenario."""
    ref = reference(results, scenario)
    return None if ref is None else ratio(results, scenario, server, ref)


def fmt_max(summary: dict[str, Any], target_ms: float) -> str:
    if summary.get("latencies_recorded_min") == 0:
        # Pipelined: answers came, but in some run no batch was answered whole.
        return "longer than the run: no batch answered whole"
    text = fmt_ms(summary["latency_max_ms"])
    if target_ms and summary["latency_max_ms"] > target_ms:
        text += f" (over {target_ms / 1000:g} s)"
    return text


def short_error(point: PointData) -> str:
    return str(point["error"]).splitlines()[0] if point["error"] else "failed"


# --- markdown --------------------------------------------------------------------------------


def scenario_table(results: Results, scenario: dict[str, Any]) -> list[str]:
    name, metric = scenario["name"], scenario["metric"]
    transfer = metric != "rps"
    head = [
        "Server",
        *(["MB/s"] if transfer else []),
        "req/s",
        "spread",
        f"{TIMES} {REFERENCE}",
        "p50",
        "p99",
        "p99.9",
        "max",
        "errors",
        "peak RSS",
        "CPU",
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for point in points_of(results, name):
        label = point["server"]
        label = f"**{label}**" if point["kind"] == "subject" else label
        label = f"*{label}*" if point["kind"] == "ceiling" else label
        label += DAGGER if disturbed(results, point) else ""
        if not ok(point):
            cells = [label, f"**{short_error(point)}**"] + [""] * (len(head) - 2)
        else:
            summary = point["summary"]
            answered = summary["rps"] > 0
            timed = answered and summary.get("latencies_recorded_min") != 0
            latency = [fmt_ms(summary[key]) if timed else "—" for key in ("p50_ms", "p99_ms", "p999_ms")]
            cells = [
                label,
                *([f"{summary['mbps']:,.0f}"] if transfer else []),
                fmt_int(summary["rps"]) if answered else "**0: no response in the run**",
                fmt_spread(summary),
                fmt_ratio(vs_reference(results, name, point["server"])),
                *latency,
                fmt_max(summary, scenario.get("max_latency_target_ms", 0)) if answered else "—",
                fmt_errors(summary),
                fmt_mib(summary["rss_peak_bytes"]),
                f"{summary['cpu_utilisation'] * 100:.0f}%",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_section(results: Results) -> list[str]:
    """One line per server: its req/s over the faster uvicorn's in every scenario."""
    names = [s["name"] for s in results["scenarios"] if points_of(results, s["name"])]
    servers = [s for s in results["servers"] if s["kind"] != "ceiling"]
    if not names or not any(s["name"] in REFERENCES for s in servers) or len(servers) < 2:
        return []
    lines = [
        "## Summary",
        "",
        f"req/s (MB/s for transfers) over {REFERENCE}'s in the same scenario, in the faster of its "
        f"configurations there (named in the last row); above 1 is faster. "
        "A difference smaller than the spread in the scenario's table below is noise.",
        "",
        "| Server | " + " | ".join(names) + " |",
        "|---|" + "|".join(["---:"] * len(names)) + "|",
    ]
    for server in servers:
        cells = []
        for scenario in names:
            point = find(results, scenario, server["name"])
            if point is None:
                cells.append("")
            elif not ok(point):
                cells.append("failed")
            elif point["summary"]["rps"] <= 0:
                cells.append("no response")
            else:
                cells.append(fmt_ratio(vs_reference(results, scenario, server["name"])))
        label = server["name"]
        label = f"**{label}**" if server["kind"] == "subject" else label
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    fastest = [reference(results, scenario) or "—" for scenario in names]
    lines.append(f"| *faster {REFERENCE}* | " + " | ".join(fastest) + " |")
    lines.append("")
    return lines


def ceilings_section(results: Results) -> list[str]:
    names = [s["name"] for s in results["scenarios"] if s["name"] in CEILING_SCENARIOS]
    ceiling_app = results.get("ceiling_app", {})
    has_network = any(
        ok(find(results, scenario, ceiling))
        for scenario in names
        for ceiling in ("ceiling_bare", "ceiling_asgi")
    )
    if not has_network and not ceiling_app.get("median"):
        return []
    lines = ["## Limits", ""]
    lines.append(
        "How close each server comes to what Python on httptools + uvloop can do at most "
        "(see `methodology.md`). `ceiling_bare` answers with fixed bytes and no ASGI; "
        "`ceiling_asgi` also builds a scope and steps the app's coroutine, with one write per "
        "response. Each cell is the server's req/s as a share of `ceiling_asgi` / "
        "`ceiling_bare`."
    )
    lines.append("")
    if has_network and names:
        lines.append("| Server | " + " | ".join(names) + " |")
        lines.append("|---|" + "|".join(["---:"] * len(names)) + "|")
        for ceiling in ("ceiling_bare", "ceiling_asgi"):
            cells = []
            for scenario in names:
                point = find(results, scenario, ceiling)
                cells.append(
                    f"{fmt_int(point['summary']['rps'])} req/s" if point is not None and ok(point) else "—"
                )
            lines.append(f"| *{ceiling}* | " + " | ".join(cells) + " |")
        for server in results["servers"]:
            if server["kind"] == "ceiling":
                continue
            cells = []
            for scenario in names:
                of_asgi = ratio(results, scenario, server["name"], "ceiling_asgi")
                of_bare = ratio(results, scenario, server["name"], "ceiling_bare")
                cells.append(f"{fmt_share(of_asgi)} / {fmt_share(of_bare)}")
            label = server["name"]
            label = f"**{label}**" if server["kind"] == "subject" else label
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    median = ceiling_app.get("median")
    if median:
        runs = ", ".join(fmt_int(rate) for rate in ceiling_app["calls_per_s"])
        lines.append(
            f"`ceiling_app` (the hello app's coroutine stepped in a loop, no network): "
            f"**{fmt_int(median)} app calls/s** (runs: {runs})."
        )
        shares = []
        for server in results["servers"]:
            point = find(results, "get64", server["name"])
            if server["kind"] != "ceiling" and point is not None and ok(point):
                share = point["summary"]["rps"] / median
                shares.append(f"{server['name']} {fmt_share(share)}")
        if shares:
            lines.append(
                "In get64, the app call is this share of each request's time (req/s ÷ app "
                "calls/s; the rest is the server and the kernel): " + ", ".join(shares) + "."
            )
        lines.append("")
    elif ceiling_app.get("error"):
        lines += ["`ceiling_app` failed:", "", "```", ceiling_app["error"], "```", ""]
    return lines


def failures_section(results: Results) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for point in results["points"]:
        if point["status"] != "ok":
            key = (point["server"], point["error"] + "\n" + point["log_tail"])
            seen.setdefault(key, []).append(point["scenario"])
    if not seen:
        return []
    lines = ["## Failures", ""]
    for (server, text), scenarios in seen.items():
        error, _, tail = text.partition("\n")
        lines.append(f"**{server}** ({', '.join(scenarios)}): {error}")
        lines.append("")
        if tail.strip():
            lines += ["```", tail.strip(), "```", ""]
    return lines


def quiet_line(results: Results) -> str:
    limit = f"{threshold(results):.0%}"
    points = disturbed_points(results)
    if not points:
        return f"- The machine was quiet: no other process used over {limit} of a CPU in any run."
    worst = max(point["summary"]["other_cpu_max"] for point in points)
    names = ", ".join(f"{point['scenario']}/{point['server']}" for point in points)
    return (
        f"- {DAGGER} Other processes used over {limit} of a CPU (up to {worst:.0%}) during a "
        f"run of: {names}. Those numbers are disturbed."
    )


def environment_section(results: Results) -> list[str]:
    machine, config = results["machine"], results["config"]
    packages = ", ".join(
        f"{name} {version}" for name, version in results["packages"].items() if version != "not installed"
    )
    tools = ", ".join(results["tools"].values())
    durations = ", ".join(f"{name} {sec} s" for name, sec in config["durations_s"].items())
    return [
        "## Setup",
        "",
        f"- Command: `{results['command'].strip()}`; finished in {results['elapsed_s'] / 60:.1f} min.",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs, Linux {machine['kernel']}, "
        f"{machine['os'] or 'unknown OS'}, Python {machine['python']}; "
        f"`net.core.somaxconn` {machine['somaxconn']}, RLIMIT_NOFILE {machine['rlimit_nofile']}.",
        f"- Servers pinned to CPU {config['server_cpu']}, {tools} pinned to CPU "
        f"{config['client_cpu']}; one worker each; {config['repeats']} repeat(s) per point "
        f"(servers take turns) after a {config['warmup_s']} s warm-up of all servers at once; "
        f"run length: {durations}.",
        f"- Versions: {packages}.",
        quiet_line(results),
        *(
            f"- Skipped {name}: {reason.splitlines()[0]}"
            for name, reason in results.get("skipped", {}).items()
        ),
        "",
    ]


def markdown(results: Results, charts: Iterable[str] = ()) -> str:
    lines = ["# Benchmark results", ""]
    if results.get("quick"):
        lines += ["> A `--quick` run: one short repeat per server. The numbers are noisy.", ""]
    noisy = disturbed_points(results)
    if noisy:
        lines += [
            f"> {DAGGER} {len(noisy)} of {len(results['points'])} rows were measured while other "
            "processes were busy on the machine (see Setup); their numbers are disturbed.",
            "",
        ]
    lines += [
        f"Measured {results['timestamp']} with `bench/run.py`; how the numbers are made is in "
        "[methodology.md](methodology.md). req/s and latencies are medians over the repeats; "
        "errors and peak RSS are the worst repeat. `spread` is half the range of req/s over the "
        f"repeats, relative to the median. `{TIMES} {REFERENCE}` is req/s over {REFERENCE}'s in the "
        f"faster of its configurations in that scenario ({', '.join(f'`{name}`' for name in REFERENCES)}; "
        "named under each table). `max` is the slowest answer counted in any repeat. "
        "RSS is summed over the server's processes; CPU is server CPU time over wall time "
        "(100% = one core).",
        "",
    ]
    lines += summary_section(results)
    for scenario in results["scenarios"]:
        if not points_of(results, scenario["name"]):
            continue
        lines.append(f"## {scenario['name']}")
        lines.append("")
        seconds = results["config"]["durations_s"].get(scenario["name"])
        lines.append(
            f"{scenario['description']} App `{scenario['app']}`; load: {scenario['setup']}, "
            f"{seconds} s per run."
        )
        lines.append("")
        ref = reference(results, scenario["name"])
        if ref is not None:
            lines += [f"`{TIMES} {REFERENCE}` is to `{ref}`.", ""]
        lines += scenario_table(results, scenario)
        lines.append("")
    lines += ceilings_section(results)
    chart_list = list(charts)
    if chart_list:
        lines += ["## Charts", ""]
        lines += [f"![{Path(c).stem}]({Path(c).name})" for c in chart_list]
        lines.append("")
    lines += failures_section(results)
    lines += environment_section(results)
    return "\n".join(lines)


# --- terminal --------------------------------------------------------------------------------


def terminal_table(results: Results) -> str:
    head = (
        "scenario",
        "server",
        "req/s",
        "MB/s",
        f"x{REFERENCE}",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "RSS MiB",
    )
    rows: list[tuple[str, ...]] = []
    failures: list[tuple[str, str, str]] = []
    for scenario in results["scenarios"]:
        for point in points_of(results, scenario["name"]):
            if not ok(point):
                failures.append((scenario["name"], point["server"], short_error(point)))
                continue
            s = point["summary"]
            r = vs_reference(results, scenario["name"], point["server"])
            rows.append((
                scenario["name"], point["server"], fmt_int(s["rps"]),
                f"{s['mbps']:,.0f}" if "mbps" in s else "",
                "" if r is None else f"{r:.2f}",
                f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.2f}", f"{s['p999_ms']:.2f}",
                f"{s['latency_max_ms']:.1f}", f"{s['errors']:,}", f"{s['rss_peak_bytes'] / 2**20:.1f}",
            ))  # fmt: skip
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    out = []
    for row in (head, *rows):
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    for scenario, server, error in failures:
        out.append(f"{scenario.ljust(widths[0])}  {server.ljust(widths[1])}  {error}")
    median = results.get("ceiling_app", {}).get("median")
    if median:
        out.append(f"ceiling_app: {median:,.0f} app calls/s (in-process)")
    return "\n".join(out)


# --- charts ----------------------------------------------------------------------------------

COLOURS = {"subject": "#d9480f", "peer": "#4c6ef5", "ceiling": "#adb5bd"}
FAILED_COLOUR = "#c92a2a"


def _panels(count: int) -> tuple[int, int]:
    cols = 2 if count > 1 else 1
    return (count + cols - 1) // cols, cols


def _si(value: float, _position: object = None) -> str:
    """Axis labels: 950, 12k, 1.5M."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def write_charts(results: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    scenarios = [s for s in results["scenarios"] if points_of(results, s["name"])]
    if not scenarios:
        return []
    written: list[Path] = []
    quick = " --quick" if results.get("quick") else ""
    stamp = f"{results['timestamp']} · bench/run.py{quick} · one worker per server, pinned"
    max_servers = max(len(points_of(results, s["name"])) for s in scenarios)

    def figure(title: str) -> tuple[Any, list[Any]]:
        rows, cols = _panels(len(scenarios))
        height = max(2.2, 0.36 * max_servers + 1.1)
        fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, height * rows), squeeze=False)
        flat = [ax for row in axes for ax in row]
        for ax in flat[len(scenarios) :]:
            ax.set_visible(False)
        fig.suptitle(title, fontsize=13, fontweight="bold")
        fig.text(0.99, 0.005, stamp, ha="right", va="bottom", fontsize=7, color="#868e96")
        return fig, flat[: len(scenarios)]

    def rows(ax: Any, scenario: dict[str, Any], points: list[PointData], unit: str) -> None:
        ax.set_yticks(range(len(points)), [p["server"] for p in points])
        ax.set_ylim(len(points) - 0.5, -0.5)
        ax.set_title(f"{scenario['name']}: {scenario['setup']}", fontsize=9, loc="left")
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(labelsize=8)
        for label, point in zip(ax.get_yticklabels(), points, strict=True):
            if point["kind"] == "subject":
                label.set_fontweight("bold")
        ax.grid(axis="x", alpha=0.3, which="major")
        ax.set_axisbelow(True)

    def failed(ax: Any, row: int) -> None:
        ax.text(
            0.01,
            row,
            "failed",
            va="center",
            fontsize=8,
            color=FAILED_COLOUR,
            transform=ax.get_yaxis_transform(),
        )

    def finish(fig: Any, name: str) -> None:
        fig.tight_layout(rect=(0, 0.02, 1, 0.97))
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    # Throughput: req/s (MB/s for the transfer scenarios), with the ratio to the reference.
    fig, axes = figure(f"Throughput, higher is better ({TIMES} the faster {REFERENCE} in brackets)")
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        values = [main_value(p, scenario["metric"]) if ok(p) else 0.0 for p in points]
        ax.barh(range(len(points)), values, color=[COLOURS[p["kind"]] for p in points])
        rows(ax, scenario, points, "MB/s" if scenario["metric"] != "rps" else "req/s")
        top = max(values, default=0.0) or 1.0
        ax.set_xlim(0, top * 1.32)
        ax.xaxis.set_major_formatter(FuncFormatter(_si))
        for row, (point, value) in enumerate(zip(points, values, strict=True)):
            if not ok(point):
                failed(ax, row)
                continue
            if value <= 0:
                ax.text(
                    0.01,
                    row,
                    "no response",
                    va="center",
                    fontsize=8,
                    color=FAILED_COLOUR,
                    transform=ax.get_yaxis_transform(),
                )
                continue
            r = vs_reference(results, scenario["name"], point["server"])
            text = f"{value:,.0f}" + (f" ({r:.2f}{TIMES})" if r is not None else "")
            ax.text(value + top * 0.01, row, text, va="center", fontsize=7)
    finish(fig, "throughput.png")

    # Latency: p50, p99 and p99.9 on one line per server, log scale.
    fig, axes = figure("Latency p50 · p99 · p99.9, lower is better (log scale)")
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        rows(ax, scenario, points, "ms")
        ax.set_xscale("log")
        low, high = float("inf"), 0.0
        for row, point in enumerate(points):
            if not ok(point):
                failed(ax, row)
                continue
            summary, colour = point["summary"], COLOURS[point["kind"]]
            p50, p99, p999 = summary["p50_ms"], summary["p99_ms"], summary["p999_ms"]
            if summary["rps"] <= 0 or p50 <= 0:
                ax.text(
                    0.01,
                    row,
                    "no response",
                    va="center",
                    fontsize=8,
                    color=FAILED_COLOUR,
                    transform=ax.get_yaxis_transform(),
                )
                continue
            low, high = min(low, p50), max(high, p999)
            ax.plot([p50, p999], [row, row], color=colour, linewidth=2, alpha=0.5)
            ax.plot([p50], [row], "o", color=colour, markersize=6)
            ax.plot([p99], [row], "s", color=colour, markersize=5)
            ax.plot([p999], [row], "^", color=colour, markersize=6)
            ax.text(
                p999 * 1.15,
                row,
                f"{fmt_ms(p50)} · {fmt_ms(p99)} · {fmt_ms(p999)}",
                va="center",
                fontsize=6.5,
            )
        if high > 0:
            ax.set_xlim(low / 1.6, high * 12)
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    handles = [
        Line2D([], [], marker=m, linestyle="", color="#495057", label=label)
        for m, label in (("o", "p50"), ("s", "p99"), ("^", "p99.9"))
    ]
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 0.985), fontsize=8, ncols=3)
    finish(fig, "latency.png")

    # Memory: peak RSS summed over the server's processes; the largest process is darker.
    fig, axes = figure("Peak server RSS, lower is better (dark: largest process)")
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        totals = [p["summary"]["rss_peak_bytes"] / 2**20 if ok(p) else 0.0 for p in points]
        largest = [p["summary"]["rss_peak_process_bytes"] / 2**20 if ok(p) else 0.0 for p in points]
        colours = [COLOURS[p["kind"]] for p in points]
        ax.barh(range(len(points)), totals, color=colours, alpha=0.35)
        ax.barh(range(len(points)), largest, color=colours)
        rows(ax, scenario, points, "MiB")
        top = max(totals, default=0.0) or 1.0
        ax.set_xlim(0, top * 1.22)
        for row, (point, value) in enumerate(zip(points, totals, strict=True)):
            if ok(point):
                ax.text(value + top * 0.01, row, f"{value:,.1f}", va="center", fontsize=7)
            else:
                failed(ax, row)
    finish(fig, "memory.png")
    return written


def write_report(results: Results, out_dir: Path, *, charts: bool = True) -> list[Path]:
    """Write results.md (and the charts) into ``out_dir``; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if charts:
        try:
            written = write_charts(results, out_dir)
        except ImportError as exc:
            print(f"[bench] charts skipped: {exc}", file=sys.stderr)
    md = out_dir / "results.md"
    md.write_text(markdown(results, [path.name for path in written]))
    return [md, *written]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument(
        "results", type=Path, nargs="?", default=Path(__file__).parent / "results" / "latest.json"
    )
    parser.add_argument("--docs-dir", type=Path, required=True)
    parser.add_argument("--no-charts", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    for path in write_report(results, args.docs_dir, charts=not args.no_charts):
        print(path)
    print(terminal_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
