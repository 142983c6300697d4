"""What each observation counts, and the gauges read from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from models.state import JobState
from worker import metrics
from worker.usecases.provider_status import ProviderStatus
from worker.values.observations import (
    AttemptEnded,
    BudgetStopped,
    JobFinished,
    Spent,
    Wait,
    Waited,
)
from worker.values.records import QueueFigures
from worker.values.schedulers import Schedulers, SchedulerSeen


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_success_counts_the_job_and_its_time_from_created() -> None:
    labels = {"provider": "unit-fal", "state": "succeeded", "error_code": ""}
    before = value("editq_jobs_finished_total", **labels)
    seconds = value("editq_job_seconds_sum", provider="unit-fal")

    metrics.count([JobFinished("unit-fal", "succeeded", None, 12.5)])

    assert value("editq_jobs_finished_total", **labels) == before + 1
    assert value("editq_job_seconds_sum", provider="unit-fal") == seconds + 12.5


def test_a_failure_counts_its_error_code_and_no_success_time() -> None:
    labels = {"provider": "unit-runware", "state": "failed", "error_code": "moderated"}
    before = value("editq_jobs_finished_total", **labels)

    metrics.count([JobFinished("unit-runware", "failed", "moderated", 3.0)])

    assert value("editq_jobs_finished_total", **labels) == before + 1
    assert value("editq_job_seconds_count", provider="unit-runware") == 0


def test_attempts_spend_and_budget_stops_are_counted() -> None:
    attempts = value("editq_attempts_total", provider="unit-fal", outcome="rate_limited")
    spend = value("editq_spend_usd_total", provider="unit-fal", model="flux-kontext-pro")
    stops = value("editq_budget_stops_total")

    metrics.count(
        [
            AttemptEnded("unit-fal", "rate_limited"),
            Spent("unit-fal", "flux-kontext-pro", Decimal("0.04")),
            Spent("unit-fal", "flux-kontext-pro", Decimal("0.08")),
            BudgetStopped(),
        ]
    )

    assert value("editq_attempts_total", provider="unit-fal", outcome="rate_limited") == (
        attempts + 1
    )
    assert value(
        "editq_spend_usd_total", provider="unit-fal", model="flux-kontext-pro"
    ) == pytest.approx(spend + 0.12)
    assert value("editq_budget_stops_total") == stops + 1


@pytest.mark.parametrize(
    ("wait", "histogram"),
    [
        (Wait.QUEUE, "editq_queue_wait_seconds"),
        (Wait.PROVIDER, "editq_provider_seconds"),
        (Wait.FINALIZE, "editq_finalize_seconds"),
    ],
)
def test_each_stretch_of_a_job_has_its_histogram(wait: Wait, histogram: str) -> None:
    provider = f"unit-{wait.value}"
    metrics.count([Waited(wait, provider, 0.3), Waited(wait, provider, 7.0)])

    assert value(f"{histogram}_count", provider=provider) == 2
    assert value(f"{histogram}_bucket", provider=provider, le="0.5") == 1
    assert value(f"{histogram}_bucket", provider=provider, le="10.0") == 2


def status(name: str, breaker: str) -> ProviderStatus:
    return ProviderStatus(
        name=name,
        breaker=breaker,
        consecutive_failures=3,
        opened_at=None,
        in_flight=7,
        capacity=40,
        submit_rate=None,
        limit=20,
        slow_start=True,
        latency_seconds=None,
    )


def test_the_database_gauges_show_the_breaker_the_queue_and_open_work() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    queue = QueueFigures(
        queued={"unit-a": 12}, oldest_due=now - timedelta(minutes=5), batches_running=2,
        callbacks_pending=9,
    )  # fmt: skip

    metrics.observe_database(
        {JobState.QUEUED: 12}, [status("unit-a", "open"), status("unit-b", "closed")], queue, now
    )

    assert value("editq_provider_breaker", provider="unit-a", state="open") == 1
    assert value("editq_provider_breaker", provider="unit-a", state="closed") == 0
    assert value("editq_provider_breaker", provider="unit-b", state="closed") == 1
    assert value("editq_provider_limit", provider="unit-a") == 20
    assert value("editq_queued_jobs", provider="unit-a") == 12
    assert value("editq_queued_jobs", provider="unit-b") == 0
    assert value("editq_oldest_queued_seconds") == 300
    assert value("editq_batches_running") == 2 and value("editq_callbacks_pending") == 9
    assert value("editq_jobs", state="queued") == 12

    empty = QueueFigures(queued={}, oldest_due=None, batches_running=0, callbacks_pending=0)
    metrics.observe_database({}, [], empty, now)
    assert value("editq_oldest_queued_seconds") == 0


def test_the_schedulers_gauge_counts_the_leader_and_the_standbys() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    empty = QueueFigures(queued={}, oldest_due=None, batches_running=0, callbacks_pending=0)

    def seen(id_: str, leads: bool) -> SchedulerSeen:
        return SchedulerSeen(id_, "host", 1, "listen", now, 0.5, leads)

    running = (seen("a", True), seen("b", False), seen("c", False))
    metrics.observe_database({}, [], empty, now, Schedulers("a", now, 4.0, running))
    assert value("editq_schedulers", role="leader") == 1
    assert value("editq_schedulers", role="standby") == 2

    metrics.observe_database({}, [], empty, now, Schedulers(None, None, None, running[1:]))
    assert value("editq_schedulers", role="leader") == 0
