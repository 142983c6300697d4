"""Prometheus metrics of the API process: jobs, webhooks, and each provider's limits."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge

from models.state import JobState
from worker.usecases.provider_status import ProviderStatus

WEBHOOKS = Counter(
    "editq_webhooks_total",
    "Provider webhooks received, by provider and result",
    ["provider", "result"],
)
JOBS = Gauge("editq_jobs", "Jobs by state", ["state"])
IN_FLIGHT = Gauge("editq_provider_in_flight", "Jobs a provider is working on", ["provider"])
LIMIT = Gauge(
    "editq_provider_limit",
    "A provider's learned in-flight limit, within its capacity",
    ["provider"],
)
CAPACITY = Gauge("editq_provider_capacity", "A provider's configured in-flight limit", ["provider"])


def observe_jobs(counts: dict[JobState, int]) -> None:
    """Set the jobs-by-state gauge from a fresh count."""
    for state in JobState:
        JOBS.labels(state.value).set(counts.get(state, 0))


def observe_providers(statuses: Sequence[ProviderStatus]) -> None:
    """Set each provider's in-flight, limit and capacity gauges."""
    for status in statuses:
        IN_FLIGHT.labels(status.name).set(status.in_flight)
        LIMIT.labels(status.name).set(status.limit)
        CAPACITY.labels(status.name).set(status.capacity)
