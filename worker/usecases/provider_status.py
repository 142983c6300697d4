"""How each provider is doing: its breaker, what it has in flight, its learned limit and how
long its jobs take (ops views)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.database import Database
from worker.values.breaker import Health, Limits


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """One provider as ``GET /v1/providers`` and ``editq providers`` show it."""

    name: str
    breaker: str
    consecutive_failures: int
    opened_at: datetime | None
    in_flight: int
    #: The in-flight ceiling: ``EDITQ_<PROVIDER>_MAX_IN_FLIGHT``, or an operator's override.
    capacity: int
    submit_rate: float | None
    #: How many it may have in flight now: learned from its answers, within ``capacity``.
    limit: int
    #: Whether the limit is still growing fast (no rate limit heard yet).
    slow_start: bool
    #: Median seconds a job spent from submit to stored, lately (None: none finished).
    latency_seconds: float | None
    #: Whether ``capacity`` is an operator's, set at runtime, rather than the configured one.
    capacity_overridden: bool = False
    #: When an operator paused it, who and why (None: not paused).
    paused_at: datetime | None = None
    paused_by: str | None = None
    paused_reason: str | None = None


#: The window the latency figures are taken over.
LATENCY_WINDOW_SECONDS = 300.0


def provider_status(db: Database, limits: Limits) -> list[ProviderStatus]:
    """Every provider, in dispatch order."""
    with db.transaction() as repo:
        health = repo.all_health()
        pauses = repo.pauses()
        in_flight = repo.in_flight()
        latency = repo.latencies(LATENCY_WINDOW_SECONDS)
    statuses = []
    for name in limits.order:
        h = health.get(name, Health())
        statuses.append(
            ProviderStatus(
                name=name,
                breaker=h.state.value,
                consecutive_failures=h.consecutive_failures,
                opened_at=h.opened_at,
                in_flight=in_flight.get(name, 0),
                capacity=limits.ceiling(name, h),
                submit_rate=limits.rates.get(name),
                limit=limits.limit(name, h),
                slow_start=h.limit_cut_at is None,
                latency_seconds=None if name not in latency else round(latency[name], 3),
                capacity_overridden=h.capacity_override is not None,
                paused_at=h.paused_at,
                paused_by=pauses.get(name, (None, None))[0],
                paused_reason=pauses.get(name, (None, None))[1],
            )
        )
    return statuses
