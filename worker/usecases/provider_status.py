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
    #: The configured in-flight limit (``EDITQ_<PROVIDER>_MAX_IN_FLIGHT``): the ceiling.
    capacity: int
    submit_rate: float | None
    #: How many it may have in flight now: learned from its answers, within ``capacity``.
    limit: int
    #: Whether the limit is still growing fast (no rate limit heard yet).
    slow_start: bool
    #: Median seconds a job spent from submit to stored, lately (None: none finished).
    latency_seconds: float | None


#: The window the latency figures are taken over.
LATENCY_WINDOW_SECONDS = 300.0


def provider_status(db: Database, limits: Limits) -> list[ProviderStatus]:
    """Every provider, in dispatch order."""
    with db.transaction() as repo:
        health = repo.all_health()
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
                capacity=limits.capacity.get(name, 0),
                submit_rate=limits.rates.get(name),
                limit=limits.limit(name, h),
                slow_start=h.limit_cut_at is None,
                latency_seconds=None if name not in latency else round(latency[name], 3),
            )
        )
    return statuses
