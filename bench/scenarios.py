"""The benchmark's scenarios; each runs on a fresh stack and returns its figures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import naive, routing
from bench import quality as bench_quality
from bench.harness import MachineBusy, Running, cpu_between, cpu_seconds, memory_mb, stack
from bench.ideal import best_possible
from bench.routing import RoutingScale
from bench.scale import million_jobs

Figures = dict[str, Any]


@dataclass(frozen=True)
class Scale:
    """How big each scenario runs: the issue's sizes, or a quick smoke run."""

    latency_jobs: int = 1000
    latency_seconds: float = 3.0
    latency_jitter: float = 0.5
    capacity: int = 100
    naive_jobs: int = 40
    overhead_jobs: int = 2000
    #: Jobs of each quality-gate run: megapixel outputs take the emulator far longer to make.
    gate_jobs: int = 500
    ingest_rows: int = 100_000
    memory_jobs: int = 5000
    #: Finished jobs bulk-loaded for ``million_jobs``, against an empty database.
    history_jobs: int = 1_000_000
    routing: RoutingScale = field(default_factory=RoutingScale)

    @classmethod
    def quick(cls) -> Scale:
        """Small enough to check the benchmark itself in a minute or two."""
        return cls(
            latency_jobs=100,
            latency_seconds=1.0,
            latency_jitter=0.2,
            capacity=20,
            naive_jobs=6,
            overhead_jobs=200,
            gate_jobs=40,
            ingest_rows=5000,
            memory_jobs=300,
            history_jobs=20_000,
            routing=RoutingScale.quick(),
        )


def _span(running: Running, batch_id: str) -> float:
    """Seconds from the batch's first job created to its last job completed."""
    [(first, last)] = running.sql(
        "SELECT min(created_at), max(completed_at) FROM jobs WHERE batch_id = :b", b=batch_id
    )
    return float((last - first).total_seconds())


def latency_bound(home: Path, scale: Scale) -> Figures:
    """A catalog whose speed is set by provider latency and capacity: makespan vs ideal."""
    settings = {"EDITQ_FAL_MAX_IN_FLIGHT": str(scale.capacity)}
    with stack(home, settings) as running:
        running.configure_emulator(
            latency=scale.latency_seconds,
            jitter=scale.latency_jitter,
            concurrency=scale.capacity * 2,
        )
        source = running.source_url()
        busy = MachineBusy()
        batch_id, _ = running.submit_batch(scale.latency_jobs, source)
        batch = running.wait_batch(batch_id, timeout=scale.latency_jobs * 10)
        cpu_busy = busy.share()
        makespan = _span(running, batch_id)
        stages = _stages(running, batch_id)
    ideal = scale.latency_jobs / scale.capacity * scale.latency_seconds
    best = best_possible(
        scale.latency_jobs, scale.capacity, scale.latency_seconds, scale.latency_jitter
    )
    return {
        "jobs": scale.latency_jobs,
        "succeeded": batch["done"],
        "capacity": scale.capacity,
        "latency_seconds": scale.latency_seconds,
        "makespan_seconds": round(makespan, 2),
        "ideal_seconds": round(ideal, 2),
        "makespan_over_ideal": round(makespan / ideal, 3),
        "best_possible_seconds": round(best, 2),
        "best_possible_over_ideal": round(best / ideal, 3),
        "jobs_per_second": round(scale.latency_jobs / makespan, 2),
        "stage_seconds_p50_p90": stages,
        "machine_cpu_busy": round(cpu_busy, 3),
    }


#: A job's way through the pipeline, as the transitions its events record.
_STAGES = {
    "claimed": ("create", "claim"),
    "submitting": ("claim", "mark_running"),
    "at_provider": ("mark_running", "begin_finalize"),
    "finalizing": ("begin_finalize", "succeed"),
}


def _stages(running: Running, batch_id: str) -> dict[str, list[float]]:
    """Median and 90th percentile of the time jobs spent in each stage."""
    figures = {}
    for stage, (start, end) in _STAGES.items():
        [(p50, p90)] = running.sql(
            """
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY d)
            FROM (
                SELECT extract(epoch FROM max(e.at) FILTER (WHERE e.transition = :end)
                                        - max(e.at) FILTER (WHERE e.transition = :start)) AS d
                FROM job_events e JOIN jobs j ON j.id = e.job_id
                WHERE j.batch_id = :b GROUP BY e.job_id
            ) AS per_job
            """,
            b=batch_id,
            start=start,
            end=end,
        )
        figures[stage] = [round(float(p50), 3), round(float(p90), 3)]
    return figures


def naive_design(home: Path, scale: Scale) -> Figures:
    """The design a user writes first: a task per job that submits and polls, on prefork."""
    with stack(home, {}, processes=()) as running:
        running.configure_emulator(
            latency=scale.latency_seconds, jitter=scale.latency_jitter, concurrency=1000
        )
        source = running.source_url()
        makespan = naive.run(running, scale.naive_jobs, source)
    return {
        "jobs": scale.naive_jobs,
        "concurrency": naive.CONCURRENCY,
        "makespan_seconds": round(makespan, 2),
        "jobs_per_second": round(scale.naive_jobs / makespan, 3),
    }


def overhead(home: Path, scale: Scale) -> Figures:
    """No provider latency, small outputs: what editq itself costs, per job and per process."""
    return _overhead(home, scale.overhead_jobs, {}, (32, 32))


def quality_gate(home: Path, scale: Scale) -> Figures:
    """What the quality gate costs: the overhead run with it and without it, side by side.

    The outputs here are a megapixel (the size Kontext returns), so the checks' real cost
    shows; the false-positive measurement and the CPU per 1024x1024 output come with it.
    """
    size = (1024, 1024)
    runs = {
        "with_gate": _overhead(home / "on", scale.gate_jobs, {"EDITQ_QUALITY_GATE": "1"}, size),
        "without_gate": _overhead(home / "off", scale.gate_jobs, {"EDITQ_QUALITY_GATE": "0"}, size),
    }
    on, off = runs["with_gate"], runs["without_gate"]
    return {
        **runs,
        "throughput_with_over_without": round(on["jobs_per_second"] / off["jobs_per_second"], 3),
        "worker_cpu_ms_per_job_added": round(
            on["cpu_ms_per_job"]["worker"] - off["cpu_ms_per_job"]["worker"], 2
        ),
        "cpu_ms_per_1024px_output": round(bench_quality.cpu_ms_per_output(), 1),
        "false_positives": bench_quality.measure().as_json(),
    }


def _overhead(
    home: Path, jobs: int, extra: dict[str, str], source_size: tuple[int, int]
) -> Figures:
    settings = {"EDITQ_FAL_MAX_IN_FLIGHT": "1000", **extra}
    with stack(home, settings) as running:
        running.configure_emulator(latency=0.0, jitter=0.0, concurrency=1000)
        source = running.source_url(source_size)
        before = cpu_seconds(running.trees())
        batch_id, _ = running.submit_batch(jobs, source)
        batch = running.wait_batch(batch_id, timeout=1800)
        used = cpu_between(before, cpu_seconds(running.trees()))
        span = _span(running, batch_id)
    per_job = {name: seconds / jobs * 1000 for name, seconds in used.items()}
    # Everything but the emulator: what running editq costs, were the provider elsewhere.
    ours = sum(ms for name, ms in per_job.items() if name != "emulator")
    cores = os.cpu_count() or 1
    return {
        "jobs": jobs,
        "succeeded": batch["done"],
        "seconds": round(span, 2),
        "jobs_per_second": round(jobs / span, 1),
        "cpu_ms_per_job": {name: round(ms, 2) for name, ms in per_job.items()},
        "editq_cpu_ms_per_job": round(ours, 2),
        "cpu_bound_jobs_per_second_without_emulator": round(cores * 1000 / ours, 1),
    }


def ingest(home: Path, scale: Scale) -> Figures:
    """A 100,000-row JSONL batch accepted and queued (the POST, no dispatch running)."""
    with stack(home, {}, processes=()) as running:
        source = running.source_url()
        batch_id, took = running.submit_batch(scale.ingest_rows, source)
        [(queued,)] = running.sql(
            "SELECT count(*) FROM jobs WHERE batch_id = :b AND state = 'queued'", b=batch_id
        )
    return {
        "rows": scale.ingest_rows,
        "queued": int(queued),
        "seconds": round(took, 2),
        "rows_per_second": round(scale.ingest_rows / took),
    }


def memory(home: Path, scale: Scale) -> Figures:
    """Worker memory while thousands of jobs are in flight at a slow provider."""
    settings = {"EDITQ_FAL_MAX_IN_FLIGHT": str(scale.memory_jobs)}
    with stack(home, settings) as running:
        running.configure_emulator(latency=600.0, jitter=0.0, concurrency=scale.memory_jobs)
        source = running.source_url()
        batch_id, _ = running.submit_batch(scale.memory_jobs, source)
        in_flight = _wait_in_flight(running, batch_id, scale.memory_jobs, timeout=600)
        worker = running.trees()["worker"]
        rss, pss = memory_mb(worker)
    return {
        "jobs_in_flight": in_flight,
        "worker_processes": len(worker),
        "worker_rss_mb": round(rss, 1),
        "worker_pss_mb": round(pss, 1),
    }


def _wait_in_flight(running: Running, batch_id: str, jobs: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        [(count,)] = running.sql(
            "SELECT count(*) FROM jobs WHERE batch_id = :b AND state = 'running'", b=batch_id
        )
        if count >= jobs:
            return int(count)
        time.sleep(0.5)
    raise TimeoutError(f"only {count} of {jobs} jobs in flight after {timeout:.0f} s")


SCENARIOS: dict[str, Callable[[Path, Scale], Figures]] = {
    "latency_bound": latency_bound,
    "naive_design": naive_design,
    "overhead": overhead,
    "quality_gate": quality_gate,
    "ingest": ingest,
    "memory": memory,
    "fill_providers": lambda home, scale: routing.fill_providers(home, scale.routing),
    "learn_limit": lambda home, scale: routing.learn_limit(home, scale.routing),
    "prefer_faster": lambda home, scale: routing.prefer_faster(home, scale.routing),
    "million_jobs": lambda home, scale: million_jobs(home, scale.history_jobs),
}
