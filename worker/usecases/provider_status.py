"""How each provider is doing: its breaker, what it has in flight, its limits (ops views)."""

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
    capacity: int
    submit_rate: float | None


def provider_status(db: Database, limits: Limits) -> list[ProviderStatus]:
    """Every provider, in dispatch order."""
    with db.transaction() as repo:
        health = repo.all_health()
        in_flight = repo.in_flight()
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
            )
        )
    return statuses
