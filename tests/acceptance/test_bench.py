"""``make bench`` itself, at its quick sizes: every scenario runs on the real stack.

Speed is not asserted here; ``make bench`` measures it. This proves the benchmark still
runs end to end and writes every figure the README quotes, so it cannot rot unseen.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import scale as million
from bench.scenarios import SCENARIOS, Scale

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_the_quick_benchmark_runs_every_scenario_and_writes_its_figures(
    tmp_path: Path,
) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "editq benchmark" in run.stdout  # the table

    report = json.loads(out.read_text())
    quick = Scale.quick()
    figures = report["results"]
    assert report["quick"] is True
    assert set(figures) == set(SCENARIOS)
    assert set(report["machine"]) >= {"cpus", "cpu_model", "python"}
    latency = figures["latency_bound"]
    assert latency["succeeded"] == latency["jobs"] == quick.latency_jobs
    assert latency["makespan_seconds"] >= latency["ideal_seconds"] > 0
    assert set(latency["stage_seconds_p50_p90"]) == {
        "claimed", "submitting", "at_provider", "finalizing"
    }  # fmt: skip
    assert figures["naive_design"]["jobs"] == quick.naive_jobs
    overhead = figures["overhead"]
    assert overhead["succeeded"] == overhead["jobs"] == quick.overhead_jobs
    assert set(overhead["cpu_ms_per_job"]) >= {"api", "worker", "scheduler", "postgres"}
    gate = figures["quality_gate"]
    for run_ in ("with_gate", "without_gate"):
        assert gate[run_]["succeeded"] == gate[run_]["jobs"] == quick.gate_jobs
    assert gate["throughput_with_over_without"] > 0 and gate["cpu_ms_per_1024px_output"] > 0
    assert gate["false_positives"]["false_positives"] == []
    assert figures["ingest"]["queued"] == figures["ingest"]["rows"] == quick.ingest_rows
    assert figures["memory"]["jobs_in_flight"] >= quick.memory_jobs
    assert figures["memory"]["worker_rss_mb"] > 0
    assert report["speedup_over_naive"] > 0
    routing = quick.routing
    fill = figures["fill_providers"]
    for run_ in ("spread", "failover"):
        assert fill[run_]["succeeded"] == fill["jobs"] == routing.fill_jobs
    # Spreading used every provider; failover kept to the first while it was healthy.
    assert set(fill["spread"]["by_provider"]) == {"fal", "runware", "runflow"}
    assert fill["ideal_seconds"] > 0 and fill["failover_over_spread"] > 0
    learn = figures["learn_limit"]
    for run_ in ("learned", "fixed"):
        assert learn[run_]["succeeded"] == learn["jobs"] == routing.learn_jobs
        assert learn[run_]["rate_limited"] > 0  # the hidden limit was met, and answered 429
    pair = figures["prefer_faster"]
    for run_ in ("latency_aware", "plain_spread"):
        assert pair[run_]["succeeded"] == pair["jobs"] == routing.pair_jobs
    assert pair["aware_over_plain"] > 0
    _check_million_jobs(figures["million_jobs"], quick.history_jobs)


def _check_million_jobs(scale: dict[str, Any], history_jobs: int) -> None:
    """The large-history scenario's figures: counts, ratios, sizes and the prune."""
    empty, loaded = scale["empty"], scale["loaded"]
    assert scale["history_jobs"] == history_jobs
    assert empty["jobs_loaded"] == million.WORKING_ROWS
    assert loaded["jobs_loaded"] == history_jobs + million.WORKING_ROWS
    assert loaded["rows_loaded"]["jobs"] == loaded["jobs_loaded"]
    assert loaded["rows_loaded"]["job_events"] > 4 * loaded["jobs_loaded"]
    for side in (empty, loaded):
        assert side["dispatch_round"]["claimed_per_round"] == million.SLOTS
        assert side["dispatch_round"]["n"] == million.ROUNDS
        assert side["create_job"]["n"] == million.CREATES
        for walk in side["list_jobs"].values():
            # Both databases answer with the same full pages.
            assert walk["rows_per_walk"] == million.PAGES * million.PAGE_SIZE
            assert walk["n"] == million.WALKS * million.PAGES
        for name in ("batch_status", "get_job"):
            assert side[name]["n"] == million.READS
            assert 0 < side[name]["median_ms"] <= side[name]["p90_ms"]
    ratios = scale["loaded_over_empty"]
    assert set(ratios) == set(million.OPERATIONS)
    assert all(ratio > 0 for ratio in ratios.values())
    assert scale["worst_ratio"] == max(ratios.values())
    size = loaded["size"]
    assert size["finished_jobs"] == loaded["jobs_loaded"]
    assert size["bytes"] == sum(t["bytes"] for t in size["tables"].values())
    assert size["bytes_per_finished_job"] > 0
    assert all(t["bytes"] == t["table_bytes"] + t["index_bytes"] for t in size["tables"].values())
    back = loaded["read_back"]
    assert back["mismatched"] == [] and back["jobs_read"] >= 6
    assert {"succeeded x1", "failed x1", "canceled x0"} <= set(back["kinds"])
    assert back["batch_counted"] == back["batch_rows"] > 0 and back["batch_state"] == "completed"
    prune = loaded["prune"]
    preview, deleted = prune["preview"], prune["deleted"]
    # It deleted what it said it would, table by table, and only the history's oldest.
    assert prune["reported_jobs"] == preview["jobs"] == deleted["jobs"] > 0
    assert prune["reported_batches"] == preview["batches"] == deleted["batches"] > 0
    assert (deleted["attempts"], deleted["job_outputs"], deleted["job_events"]) == (
        preview["attempts"],
        preview["outputs"],
        preview["events"],
    )
    assert deleted["callbacks"] >= preview["callbacks"]  # and the batches' own callbacks
    assert deleted["jobs"] < history_jobs
    assert prune["rows_deleted"] == sum(deleted.values())
    assert prune["rows_per_second"] > 0 and prune["jobs_per_second"] > 0
