"""Routing scenarios: filling every provider, learning a hidden limit, preferring the faster.

Each runs editq twice on fresh stacks, side by side in one run: the routing being measured
and the one it improves on (today's ``failover`` routing, a fixed limit, plain spreading),
each against the ideal a perfect dispatcher would reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import MachineBusy, Running, cpu_between, cpu_seconds, stack
from bench.ideal import best_possible

Figures = dict[str, Any]
PROVIDERS = ("fal", "runware", "runflow")


@dataclass(frozen=True)
class RoutingScale:
    """How big each routing scenario runs."""

    #: Three providers of ``fill_capacity`` slots, ``fill_latency`` seconds a job.
    fill_jobs: int = 3000
    fill_capacity: int = 40
    fill_latency: float = 3.0
    #: One provider that takes ``hidden_limit`` at once while editq is set for ``ceiling``.
    learn_jobs: int = 3000
    hidden_limit: int = 50
    ceiling: int = 200
    learn_latency: float = 3.0
    #: Two providers of ``pair_capacity`` slots, one fast, one slow.
    pair_jobs: int = 1000
    pair_capacity: int = 40
    pair_latency: tuple[float, float] = (2.0, 6.0)

    @classmethod
    def quick(cls) -> RoutingScale:
        """Small enough to check the scenarios in a minute or two."""
        return cls(
            fill_jobs=90,
            fill_capacity=5,
            fill_latency=1.0,
            learn_jobs=120,
            hidden_limit=8,
            ceiling=40,
            learn_latency=0.5,
            pair_jobs=60,
            pair_capacity=5,
            pair_latency=(0.5, 1.5),
        )


def _span(running: Running, batch_id: str) -> float:
    [(first, last)] = running.sql(
        "SELECT min(created_at), max(completed_at) FROM jobs WHERE batch_id = :b", b=batch_id
    )
    return float((last - first).total_seconds())


def _by_provider(running: Running, batch_id: str) -> dict[str, int]:
    """Succeeded attempts of the batch by provider: where its jobs ran."""
    rows = running.sql(
        "SELECT a.provider, count(*) FROM attempts a JOIN jobs j ON j.id = a.job_id "
        "WHERE j.batch_id = :b AND a.outcome = 'succeeded' GROUP BY a.provider",
        b=batch_id,
    )
    return {provider: int(count) for provider, count in rows}


def _rate_limited(running: Running, batch_id: str) -> int:
    """How many submissions of the batch the provider answered 429."""
    [(count,)] = running.sql(
        "SELECT count(*) FROM job_events e JOIN jobs j ON j.id = e.job_id "
        "WHERE j.batch_id = :b AND e.transition = 'requeue' AND e.reason = 'rate_limited'",
        b=batch_id,
    )
    return int(count)


def _run(
    home: Path,
    settings: Mapping[str, str],
    emulators: Mapping[str, Mapping[str, Any]],
    jobs: int,
    timeout: float,
    **options: Any,
) -> Figures:
    """One batch of ``jobs`` on a fresh stack; its makespan and where its jobs went."""
    with stack(home, settings, emulators=tuple(emulators)) as running:
        for name, config in emulators.items():
            running.configure_emulator(name, **config)
        source = running.source_url()
        busy = MachineBusy()
        before = cpu_seconds(running.trees())
        batch_id, _ = running.submit_batch(jobs, source, **options)
        batch = running.wait_batch(batch_id, timeout=timeout)
        used = cpu_between(before, cpu_seconds(running.trees()))
        return {
            "succeeded": batch["done"],
            "makespan_seconds": round(_span(running, batch_id), 2),
            "by_provider": _by_provider(running, batch_id),
            "rate_limited": _rate_limited(running, batch_id),
            "machine_cpu_busy": round(busy.share(), 3),
            "cpu_ms_per_job": {name: round(sec / jobs * 1000, 2) for name, sec in used.items()},
        }


def _capacities(names: tuple[str, ...], capacity: int) -> dict[str, str]:
    return {f"EDITQ_{name.upper()}_MAX_IN_FLIGHT": str(capacity) for name in names}


def fill_providers(home: Path, scale: RoutingScale) -> Figures:
    """Three providers listed by every job: spread fills all three, failover only the first."""
    config = {
        "latency": scale.fill_latency,
        "jitter": scale.fill_latency / 6,
        "concurrency": scale.fill_capacity * 2,
    }
    settings = {
        "EDITQ_PROVIDERS": ",".join(PROVIDERS),
        **_capacities(PROVIDERS, scale.fill_capacity),
    }
    ideal = scale.fill_jobs / (3 * scale.fill_capacity) * scale.fill_latency
    runs = {}
    for routing in ("spread", "failover"):
        run = _run(
            home / routing,
            settings,
            dict.fromkeys(PROVIDERS, config),
            scale.fill_jobs,
            timeout=scale.fill_jobs * scale.fill_latency,
            providers=list(PROVIDERS),
            routing=routing,
        )
        run["over_ideal"] = round(run["makespan_seconds"] / ideal, 3)
        runs[routing] = run
    best = best_possible(
        scale.fill_jobs, 3 * scale.fill_capacity, scale.fill_latency, scale.fill_latency / 6
    )
    return {
        "jobs": scale.fill_jobs,
        "providers": len(PROVIDERS),
        "capacity_each": scale.fill_capacity,
        "latency_seconds": scale.fill_latency,
        "ideal_seconds": round(ideal, 2),
        "best_possible_over_ideal": round(best / ideal, 3),
        **runs,
        "failover_over_spread": round(
            runs["failover"]["makespan_seconds"] / runs["spread"]["makespan_seconds"], 2
        ),
    }


def learn_limit(home: Path, scale: RoutingScale) -> Figures:
    """A provider that takes fewer than editq is set for: learned limit against a fixed one."""
    config = {
        "latency": scale.learn_latency,
        "jitter": scale.learn_latency / 6,
        "concurrency": None,
        "account_limit": scale.hidden_limit,
        "retry_after": 1,
    }
    ideal = scale.learn_jobs / scale.hidden_limit * scale.learn_latency
    runs = {}
    for learning in (True, False):
        settings = {
            "EDITQ_FAL_MAX_IN_FLIGHT": str(scale.ceiling),
            "EDITQ_CAPACITY_LEARNING": "true" if learning else "false",
        }
        name = "learned" if learning else "fixed"
        run = _run(
            home / name,
            settings,
            {"fal": config},
            scale.learn_jobs,
            timeout=scale.learn_jobs * scale.learn_latency,
        )
        run["over_ideal"] = round(run["makespan_seconds"] / ideal, 3)
        run["rate_limited_share"] = round(run["rate_limited"] / scale.learn_jobs, 4)
        runs[name] = run
    return {
        "jobs": scale.learn_jobs,
        "hidden_limit": scale.hidden_limit,
        "configured_limit": scale.ceiling,
        "latency_seconds": scale.learn_latency,
        "ideal_seconds": round(ideal, 2),
        **runs,
    }


def prefer_faster(home: Path, scale: RoutingScale) -> Figures:
    """A fast and a slow provider: the latency-aware choice against plain spreading."""
    fast, slow = scale.pair_latency
    pair = ("fal", "runware")
    emulators = {
        "fal": {"latency": fast, "jitter": fast / 6, "concurrency": scale.pair_capacity * 2},
        "runware": {"latency": slow, "jitter": slow / 6, "concurrency": scale.pair_capacity * 2},
    }
    throughput = scale.pair_capacity / fast + scale.pair_capacity / slow
    ideal = scale.pair_jobs / throughput
    runs = {}
    for aware in (True, False):
        settings = {
            "EDITQ_PROVIDERS": ",".join(pair),
            "EDITQ_ROUTING_LATENCY_AWARE": "true" if aware else "false",
            **_capacities(pair, scale.pair_capacity),
        }
        name = "latency_aware" if aware else "plain_spread"
        run = _run(
            home / name,
            settings,
            emulators,
            scale.pair_jobs,
            timeout=scale.pair_jobs * slow,
            providers=list(pair),
            routing="spread",
        )
        run["over_ideal"] = round(run["makespan_seconds"] / ideal, 3)
        runs[name] = run
    return {
        "jobs": scale.pair_jobs,
        "capacity_each": scale.pair_capacity,
        "latency_seconds": {"fal": fast, "runware": slow},
        "ideal_seconds": round(ideal, 2),
        **runs,
        "aware_over_plain": round(
            runs["latency_aware"]["makespan_seconds"] / runs["plain_spread"]["makespan_seconds"],
            3,
        ),
    }
