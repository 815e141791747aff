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

from bench.servers import REFERENCE

Results = dict[str, Any]
PointData = dict[str, Any]

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
    return "—" if value is None else f"{value:.2f}×"


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


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
        f"{ERROR_LABELS[key]} {value:,}"
        for key, value in summary.get("errors_detail", {}).items()
        if value
    ]
    return f"{total:,} ({', '.join(parts)})"


# --- reading results ---------------------------------------------------------------------------


def points_of(results: Results, scenario: str) -> list[PointData]:
    order = [server["name"] for server in results["servers"]]
    found = [point for point in results["points"] if point["scenario"] == scenario]
    return sorted(found, key=lambda point: order.index(point["server"]))


def find(results: Results, scenario: str, server: str) -> PointData | None:
    for point in results["points"]:
        if point["scenario"] == scenario and point["server"] == server:
            return point
    return None


def ok(point: PointData | None) -> bool:
    return point is not None and point["status"] == "ok" and bool(point["summary"])


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


def short_error(point: PointData) -> str:
    return str(point["error"]).splitlines()[0] if point["error"] else "failed"


# --- markdown --------------------------------------------------------------------------------


def scenario_table(results: Results, scenario: dict[str, Any]) -> list[str]:
    name, metric = scenario["name"], scenario["metric"]
    transfer = metric != "rps"
    head = ["Server", *(["MB/s"] if transfer else []), "req/s", f"× {REFERENCE}", "p50", "p99",
            "p99.9", "errors", "peak RSS", "CPU"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for point in points_of(results, name):
        label = point["server"]
        label = f"**{label}**" if point["kind"] == "subject" else label
        label = f"*{label}*" if point["kind"] == "ceiling" else label
        if not ok(point):
            cells = [label, f"**{short_error(point)}**"] + [""] * (len(head) - 2)
        else:
            summary = point["summary"]
            cells = [
                label,
                *([f"{summary['mbps']:,.0f}"] if transfer else []),
                fmt_int(summary["rps"]),
                fmt_ratio(ratio(results, name, point["server"], REFERENCE)),
                fmt_ms(summary["p50_ms"]),
                fmt_ms(summary["p99_ms"]),
                fmt_ms(summary["p999_ms"]),
                fmt_errors(summary),
                fmt_mib(summary["rss_peak_bytes"]),
                f"{summary['cpu_utilisation'] * 100:.0f}%",
            ]
        lines.append("| " + " | ".join(cells) + " |")
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
                cells.append(f"{fmt_int(point['summary']['rps'])} req/s"
                             if point is not None and ok(point) else "—")
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
                "A server's get64 req/s as a share of it (the rest of each request's time is "
                "the server's own): " + ", ".join(shares) + "."
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


def environment_section(results: Results) -> list[str]:
    machine, config = results["machine"], results["config"]
    packages = ", ".join(f"{name} {version}" for name, version in results["packages"].items()
                         if version != "not installed")
    tools = ", ".join(results["tools"].values())
    durations = ", ".join(f"{name} {sec} s" for name, sec in config["durations_s"].items())
    return [
        "## Setup",
        "",
        f"- Command: `{results['command'].strip()}`; finished in "
        f"{results['elapsed_s'] / 60:.1f} min.",
        f"- Machine: {machine['cpu_model']}, {machine['cpus']} CPUs, Linux {machine['kernel']}, "
        f"{machine['os'] or 'unknown OS'}, Python {machine['python']}; "
        f"`net.core.somaxconn` {machine['somaxconn']}, RLIMIT_NOFILE {machine['rlimit_nofile']}.",
        f"- Servers pinned to CPU {config['server_cpu']}, {tools} pinned to CPU "
        f"{config['client_cpu']}; one worker each; {config['repeats']} repeat(s) per point "
        f"(servers take turns), {config['warmup_s']} s warm-up; run length: {durations}.",
        f"- Versions: {packages}.",
        "",
    ]


def markdown(results: Results, charts: Iterable[str] = ()) -> str:
    lines = ["# Benchmark results", ""]
    if results.get("quick"):
        lines += ["> A `--quick` run: one short repeat per server. The numbers are noisy.", ""]
    lines += [
        f"Measured {results['timestamp']} with `bench/run.py`; how the numbers are made is in "
        "[methodology.md](methodology.md). req/s and latencies are medians over the repeats; "
        "errors and peak RSS are the worst repeat. `× uvicorn` is req/s over uvicorn's. "
        "RSS is summed over the server's processes; CPU is server CPU time over wall time "
        "(100% = one core).",
        "",
    ]
    for scenario in results["scenarios"]:
        if not points_of(results, scenario["name"]):
            continue
        lines.append(f"## {scenario['name']}")
        lines.append("")
        lines.append(f"{scenario['description']} `{scenario['app']}`, {scenario['setup']}.")
        lines.append("")
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
    rows = [("scenario", "server", "req/s", "MB/s", f"x{REFERENCE}", "p50 ms", "p99 ms",
             "p99.9 ms", "errors", "RSS MiB")]
    for scenario in results["scenarios"]:
        for point in points_of(results, scenario["name"]):
            if not ok(point):
                rows.append((scenario["name"], point["server"], short_error(point)[:60], "", "",
                             "", "", "", "", ""))
                continue
            s = point["summary"]
            r = ratio(results, scenario["name"], point["server"], REFERENCE)
            rows.append((
                scenario["name"], point["server"], fmt_int(s["rps"]),
                f"{s['mbps']:,.0f}" if "mbps" in s else "",
                "" if r is None else f"{r:.2f}",
                f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.2f}", f"{s['p999_ms']:.2f}",
                f"{s['errors']:,}", f"{s['rss_peak_bytes'] / 2**20:.1f}",
            ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                 enumerate(zip(row, widths, strict=True))]
        if index and row[2] and not row[3] and not row[4] and not row[5]:
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]
        out.append("  ".join(cells).rstrip())
    median = results.get("ceiling_app", {}).get("median")
    if median:
        out.append(f"ceiling_app: {median:,.0f} app calls/s (in-process)")
    return "\n".join(out)


# --- charts ----------------------------------------------------------------------------------

COLOURS = {"subject": "#d9480f", "peer": "#4c6ef5", "ceiling": "#adb5bd"}


def _panels(count: int) -> tuple[int, int]:
    cols = 2 if count > 1 else 1
    return (count + cols - 1) // cols, cols


def write_charts(results: Results, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [s for s in results["scenarios"] if points_of(results, s["name"])]
    if not scenarios:
        return []
    written: list[Path] = []
    stamp = f"{results['timestamp']} · bench/run.py{' --quick' if results.get('quick') else ''}"

    def figure(title: str, per_panel_rows: int) -> tuple[Any, list[Any]]:
        rows, cols = _panels(len(scenarios))
        height = max(2.2, 0.38 * per_panel_rows + 1.2)
        fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, height * rows), squeeze=False)
        flat = [ax for row in axes for ax in row]
        for ax in flat[len(scenarios):]:
            ax.set_visible(False)
        fig.suptitle(title, fontsize=13, fontweight="bold")
        fig.text(0.99, 0.005, stamp, ha="right", va="bottom", fontsize=7, color="#868e96")
        return fig, flat[: len(scenarios)]

    def finish(fig: Any, name: str) -> None:
        fig.tight_layout(rect=(0, 0.02, 1, 0.97))
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    max_servers = max(len(points_of(results, s["name"])) for s in scenarios)

    # Throughput: req/s (or MB/s), one panel per scenario.
    fig, axes = figure("Throughput (higher is better)", max_servers)
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        labels = [p["server"] for p in points]
        values = [main_value(p, scenario["metric"]) if ok(p) else 0.0 for p in points]
        colours = [COLOURS[p["kind"]] for p in points]
        y = list(range(len(points)))
        ax.barh(y, values, color=colours)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        unit = "MB/s" if scenario["metric"] != "rps" else "req/s"
        ax.set_title(f"{scenario['name']}: {scenario['setup']}", fontsize=9, loc="left")
        ax.set_xlabel(unit, fontsize=8)
        top = max(values, default=0.0) or 1.0
        ax.set_xlim(0, top * 1.3)
        for yi, point, value in zip(y, points, values, strict=True):
            if not ok(point):
                ax.text(top * 0.01, yi, "failed", va="center", fontsize=8, color="#c92a2a")
                continue
            r = ratio(results, scenario["name"], point["server"], REFERENCE)
            text = f"{value:,.0f}" + (f"  ({r:.2f}×)" if r is not None else "")
            ax.text(value + top * 0.01, yi, text, va="center", fontsize=7)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    finish(fig, "throughput.png")

    # Latency: p50 / p99 / p99.9, log scale.
    fig, axes = figure("Latency: p50 / p99 / p99.9 (lower is better, log scale)", max_servers * 2)
    shades = (("p50_ms", "p50", 1.0), ("p99_ms", "p99", 0.65), ("p999_ms", "p99.9", 0.35))
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        height = 0.27
        for offset, (key, label, alpha) in enumerate(shades):
            ys = [i + (offset - 1) * height for i in range(len(points))]
            values = [p["summary"][key] if ok(p) else 0.0 for p in points]
            ax.barh(ys, values, height=height, color=[COLOURS[p["kind"]] for p in points],
                    alpha=alpha, label=label)
        ax.set_yticks(range(len(points)), [p["server"] for p in points])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ms", fontsize=8)
        ax.set_title(f"{scenario['name']}: {scenario['setup']}", fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3, which="both")
        for i, point in enumerate(points):
            if ok(point):
                ax.text(point["summary"]["p999_ms"] * 1.08, i + height,
                        fmt_ms(point["summary"]["p999_ms"]), va="center", fontsize=6)
            else:
                ax.text(0.02, i, "failed", va="center", fontsize=8, color="#c92a2a",
                        transform=ax.get_yaxis_transform())
        ax.legend(fontsize=7, loc="lower right")
    finish(fig, "latency.png")

    # Memory: peak RSS of the server's processes.
    fig, axes = figure("Peak server RSS during the run (lower is better)", max_servers)
    for ax, scenario in zip(axes, scenarios, strict=True):
        points = points_of(results, scenario["name"])
        values = [p["summary"]["rss_peak_bytes"] / 2**20 if ok(p) else 0.0 for p in points]
        y = list(range(len(points)))
        ax.barh(y, values, color=[COLOURS[p["kind"]] for p in points])
        ax.set_yticks(y, [p["server"] for p in points])
        ax.invert_yaxis()
        ax.set_xlabel("MiB", fontsize=8)
        ax.set_title(f"{scenario['name']}: {scenario['setup']}", fontsize=9, loc="left")
        top = max(values, default=0.0) or 1.0
        ax.set_xlim(0, top * 1.2)
        for yi, point, value in zip(y, points, values, strict=True):
            text = f"{value:,.1f}" if ok(point) else "failed"
            ax.text(value + top * 0.01, yi, text, va="center", fontsize=7,
                    color="#000000" if ok(point) else "#c92a2a")
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
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
    parser.add_argument("results", type=Path, nargs="?",
                        default=Path(__file__).parent / "results" / "latest.json")
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
