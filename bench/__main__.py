"""``python -m bench``: every scenario on the real stack, a table, and the figures as JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from bench.scenarios import SCENARIOS, Figures, Scale

TARGETS = {
    "latency_bound": "makespan within 1.10 x ideal",
    "naive_design": "(the baseline)",
    "overhead": ">= 200 jobs/s",
    "quality_gate": "no false positives; throughput ratio reported",
    "ingest": "100,000 rows < 20 s",
    "memory": "worker RSS < 300 MB",
    "fill_providers": "spread within 1.10 x ideal; failover about 3 x",
    "learn_limit": "within 1.15 x ideal at the hidden limit; 429s < 5 % of jobs",
    "prefer_faster": "latency-aware against plain spreading, ratio reported",
    "million_jobs": "each operation within 1.5 x the empty database's median",
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def headline(name: str, figures: Figures, results: dict[str, Figures]) -> str:
    """One line per scenario for the table."""
    if name == "latency_bound":
        return (
            f"{figures['jobs']} jobs in {figures['makespan_seconds']} s; ideal "
            f"{figures['ideal_seconds']} s; {figures['makespan_over_ideal']} x ideal "
            f"(a perfect dispatcher: {figures['best_possible_over_ideal']} x)"
        )
    if name == "naive_design":
        line = f"{figures['jobs']} jobs in {figures['makespan_seconds']} s; "
        line += f"{figures['jobs_per_second']} jobs/s"
        ours = results.get("latency_bound")
        if ours:
            line += f"; editq is {speedup(ours, figures)} x faster"
        return line
    if name == "overhead":
        cpu = ", ".join(f"{k} {v}" for k, v in figures["cpu_ms_per_job"].items())
        return (
            f"{figures['jobs_per_second']} jobs/s; CPU ms/job: {cpu}; editq's own "
            f"{figures['editq_cpu_ms_per_job']} ms/job, a CPU-bound "
            f"{figures['cpu_bound_jobs_per_second_without_emulator']} jobs/s without the emulator"
        )
    if name == "quality_gate":
        fp = figures["false_positives"]
        return (
            f"{figures['cpu_ms_per_1024px_output']} CPU ms per 1024x1024 output; 1 MP outputs "
            f"{figures['with_gate']['jobs_per_second']} jobs/s with the gate, "
            f"{figures['without_gate']['jobs_per_second']} without "
            f"({figures['throughput_with_over_without']} x); false positives "
            f"{len(fp['false_positives'])} of {fp['edits']} edits"
        )
    if name == "ingest":
        return f"{figures['rows']} rows queued in {figures['seconds']} s"
    return (
        f"RSS {figures['worker_rss_mb']} MB (PSS {figures['worker_pss_mb']} MB) in "
        f"{figures['worker_processes']} worker processes, {figures['jobs_in_flight']} jobs "
        "in flight"
    )


def scale_headline(figures: Figures) -> str:
    """The million_jobs line: each operation's median loaded, and against empty."""
    loaded, ratios = figures["loaded"], figures["loaded_over_empty"]

    def median(name: str) -> float:
        figure = loaded
        for part in name.split("."):
            figure = figure[part]
        return float(figure["median_ms"])

    each = ", ".join(f"{name} {median(name)} ms ({ratio} x)" for name, ratio in ratios.items())
    prune = loaded["prune"]
    return (
        f"{figures['history_jobs']:,} finished jobs: {each}; "
        f"{loaded['size']['bytes_per_finished_job']:,} bytes a finished job; prune "
        f"{prune['rows_per_second']:,} rows/s ({prune['jobs_per_second']:,} jobs/s)"
    )


ROUTING_SCENARIOS = frozenset({"fill_providers", "learn_limit", "prefer_faster"})


def routing_headline(name: str, figures: Figures) -> str:
    """The routing scenarios' lines: each side against the ideal."""
    ideal = f"ideal {figures['ideal_seconds']} s"
    if name == "fill_providers":
        spread, failover = figures["spread"], figures["failover"]
        return (
            f"{figures['jobs']} jobs on 3 x {figures['capacity_each']}: spread "
            f"{spread['makespan_seconds']} s ({spread['over_ideal']} x {ideal}), failover "
            f"{failover['makespan_seconds']} s ({failover['over_ideal']} x)"
        )
    if name == "learn_limit":
        learned, fixed = figures["learned"], figures["fixed"]
        return (
            f"hidden limit {figures['hidden_limit']}, set to {figures['configured_limit']}: "
            f"learned {learned['makespan_seconds']} s ({learned['over_ideal']} x {ideal}, "
            f"{learned['rate_limited_share']:.1%} 429s), fixed {fixed['makespan_seconds']} s "
            f"({fixed['over_ideal']} x, {fixed['rate_limited_share']:.1%} 429s)"
        )
    aware, plain = figures["latency_aware"], figures["plain_spread"]
    return (
        f"{figures['jobs']} jobs, 2 s and 6 s: latency-aware {aware['makespan_seconds']} s, "
        f"plain {plain['makespan_seconds']} s ({figures['aware_over_plain']} x; {ideal})"
    )


def speedup(ours: Figures, naive: Figures) -> float:
    """editq's throughput on the latency-bound catalog over the naive design's."""
    return round(float(ours["jobs_per_second"]) / float(naive["jobs_per_second"]), 1)


def run_one(name: str, quick: bool) -> Figures:
    """Run one scenario in a process of its own, so none inherits another's state."""
    with tempfile.TemporaryDirectory(prefix=f"editq-bench-{name}-") as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", "bench", "--scenario", name, "--out", str(out)]
        subprocess.run([*command, *(["--quick"] if quick else [])], check=True)  # noqa: S603
        figures: Figures = json.loads(out.read_text())
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the bench")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the figures go (default: bench-results.json for a full run, "
        "bench-results-partial.json for --only or --quick)",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:  # one scenario, in this process: what run_one starts
        home = Path(tempfile.mkdtemp(prefix=f"editq-bench-{args.scenario}-"))
        try:
            scale = Scale.quick() if args.quick else Scale()
            figures = SCENARIOS[args.scenario](home, scale)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        args.out.write_text(json.dumps(figures))
        return
    # A full run's figures are compared side by side; a partial run must not replace them.
    partial = bool(args.only) or args.quick
    out = args.out or Path("bench-results-partial.json" if partial else "bench-results.json")
    console = Console()
    results: dict[str, Figures] = {}
    for name in args.only or list(SCENARIOS):
        console.print(f"[bold]{name}[/bold] ...")
        started = time.monotonic()
        results[name] = run_one(name, args.quick)
        console.print(f"  done in {time.monotonic() - started:.0f} s: {results[name]}")
    table = Table("scenario", "result", "target", title="editq benchmark")
    for name, figures in results.items():
        if name in ROUTING_SCENARIOS:
            line = routing_headline(name, figures)
        elif name == "million_jobs":
            line = scale_headline(figures)
        else:
            line = headline(name, figures, results)
        table.add_row(name, line, TARGETS[name])
    console.print(table)
    report = {"machine": machine(), "quick": args.quick, "results": results}
    if "latency_bound" in results and "naive_design" in results:
        report["speedup_over_naive"] = speedup(results["latency_bound"], results["naive_design"])
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"figures written to {out}")


if __name__ == "__main__":
    main()
