"""Prometheus metrics of the API process."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from models.state import JobState

WEBHOOKS = Counter(
    "editq_webhooks_total",
    "Provider webhooks received, by provider and result",
    ["provider", "result"],
)
JOBS = Gauge("editq_jobs", "Jobs by state", ["state"])


def observe_jobs(counts: dict[JobState, int]) -> None:
    """Set the jobs-by-state gauge from a fresh count."""
    for state in JobState:
        JOBS.labels(state.value).set(counts.get(state, 0))
