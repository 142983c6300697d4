"""Prometheus metrics: what each process counts and times, and what the database holds.

Every process counts what it does itself: the jobs it finished, the attempts that ended,
the money providers charged, webhooks, callbacks, and the time each stretch of a job took.
These come from :mod:`worker.values.observations`, handed over once their transaction has
committed (:func:`count`). The worker and the scheduler serve theirs on their own port
(:func:`serve`); the API serves its own at ``/metrics``, together with the gauges read from
the database at each scrape (:func:`observe_database`): jobs by state, each provider's
flight, limit and breaker, the queue, batches and callbacks. Every API instance reports the
same database figures, so dashboards take their ``max``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector

from models.state import JobState
from worker.usecases.provider_status import ProviderStatus
from worker.values.breaker import BreakerState
from worker.values.observations import (
    AttemptEnded,
    BudgetStopped,
    JobFinished,
    Observation,
    Spent,
    Wait,
    Waited,
)
from worker.values.records import QueueFigures
from worker.values.schedulers import Schedulers

log = logging.getLogger("editq.metrics")

#: Seconds, from a fast provider's few to a long queue's hours.
_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)

# -- counted by every process, for what it did --------------------------------------------

JOBS_FINISHED = Counter(
    "editq_jobs_finished_total",
    "Jobs that reached a terminal state, by the provider of their last attempt, the state "
    "and the error code (empty when there is none)",
    ["provider", "state", "error_code"],
)
ATTEMPTS = Counter(
    "editq_attempts_total", "Provider attempts that ended, by outcome", ["provider", "outcome"]
)
SPEND = Counter(
    "editq_spend_usd_total", "US dollars providers charged, by model", ["provider", "model"]
)
WEBHOOKS = Counter(
    "editq_webhooks_total",
    "Provider webhooks received, by provider and result (rejected: not proven to be the "
    "provider's; every other result was verified)",
    ["provider", "result"],
)
CALLBACKS = Counter(
    "editq_callbacks_total",
    "Tries to deliver a producer callback, by event and verdict (delivered, retry, failed)",
    ["event", "verdict"],
)
BUDGET_STOPS = Counter(
    "editq_budget_stops_total", "Batches stopped because they reached their budget"
)
QUEUE_WAIT = Histogram(
    "editq_queue_wait_seconds",
    "Seconds from a job being due to being claimed for a provider",
    ["provider"],
    buckets=_BUCKETS,
)
AT_PROVIDER = Histogram(
    "editq_provider_seconds",
    "Seconds from a provider accepting an attempt to its result arriving",
    ["provider"],
    buckets=_BUCKETS,
)
FINALIZE = Histogram(
    "editq_finalize_seconds",
    "Seconds a worker spent storing a finished attempt's outputs (copy, check, commit)",
    ["provider"],
    buckets=_BUCKETS,
)
END_TO_END = Histogram(
    "editq_job_seconds",
    "Seconds from a job being created to its success",
    ["provider"],
    buckets=_BUCKETS,
)

_TIMED = {Wait.QUEUE: QUEUE_WAIT, Wait.PROVIDER: AT_PROVIDER, Wait.FINALIZE: FINALIZE}

# -- read from the database at each scrape of the API -------------------------------------

JOBS = Gauge("editq_jobs", "Jobs by state", ["state"])
IN_FLIGHT = Gauge("editq_provider_in_flight", "Jobs a provider is working on", ["provider"])
LIMIT = Gauge(
    "editq_provider_limit",
    "A provider's learned in-flight limit, within its capacity",
    ["provider"],
)
CAPACITY = Gauge("editq_provider_capacity", "A provider's configured in-flight limit", ["provider"])
BREAKER = Gauge(
    "editq_provider_breaker",
    "1 for the state a provider's circuit breaker is in, 0 for the others",
    ["provider", "state"],
)
QUEUED = Gauge("editq_queued_jobs", "Queued jobs by the provider they wait for", ["provider"])
OLDEST_QUEUED = Gauge(
    "editq_oldest_queued_seconds", "Age of the oldest job that is due and not yet claimed"
)
BATCHES_RUNNING = Gauge("editq_batches_running", "Batches that have not finished")
SCHEDULERS = Gauge(
    "editq_schedulers", "Schedulers heard from lately, by role (leader, standby)", ["role"]
)
CALLBACKS_PENDING = Gauge(
    "editq_callbacks_pending", "Producer callbacks not yet delivered and not given up on"
)


def count(observations: Iterable[Observation]) -> None:
    """Count what a committed transaction did."""
    for seen in observations:
        match seen:
            case JobFinished(provider, state, error_code, seconds):
                JOBS_FINISHED.labels(provider or "", state, error_code or "").inc()
                if state == JobState.SUCCEEDED and provider:
                    END_TO_END.labels(provider).observe(seconds)
            case AttemptEnded(provider, outcome):
                ATTEMPTS.labels(provider, outcome).inc()
            case Spent(provider, model, usd):
                SPEND.labels(provider, model).inc(float(usd))
            case Waited(wait, provider, seconds):
                _TIMED[wait].labels(provider).observe(max(seconds, 0.0))
            case BudgetStopped():
                BUDGET_STOPS.inc()


def observe_database(
    counts: dict[JobState, int],
    statuses: Sequence[ProviderStatus],
    queue: QueueFigures,
    now: datetime,
    schedulers: Schedulers | None = None,
) -> None:
    """Set the gauges read from the database: jobs, providers, the queue, batches,
    callbacks, and the schedulers by role."""
    for state in JobState:
        JOBS.labels(state.value).set(counts.get(state, 0))
    for status in statuses:
        IN_FLIGHT.labels(status.name).set(status.in_flight)
        LIMIT.labels(status.name).set(status.limit)
        CAPACITY.labels(status.name).set(status.capacity)
        for breaker in BreakerState:
            BREAKER.labels(status.name, breaker.value).set(int(status.breaker == breaker.value))
        QUEUED.labels(status.name).set(queue.queued.get(status.name, 0))
    oldest = queue.oldest_due
    OLDEST_QUEUED.set(0 if oldest is None else max((now - oldest).total_seconds(), 0.0))
    BATCHES_RUNNING.set(queue.batches_running)
    CALLBACKS_PENDING.set(queue.callbacks_pending)
    if schedulers is not None:
        leading = sum(s.leads for s in schedulers.running)
        SCHEDULERS.labels("leader").set(leading)
        SCHEDULERS.labels("standby").set(len(schedulers.running) - leading)


def serve(port: int, process: str) -> None:
    """Serve this process's metrics on ``port`` (0: not at all), in a daemon thread.

    With ``PROMETHEUS_MULTIPROC_DIR`` set (a prefork worker), the figures of every process
    writing there are served together. A port already taken is logged, not fatal: a worker
    that cannot export its figures should still work its jobs.
    """
    if not port:
        return
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        if registry is None:
            start_http_server(port)
        else:
            start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning("the %s cannot serve its metrics on port %d: %s", process, port, exc)
        return
    log.info("the %s serves its metrics on port %d at /metrics", process, port)
