"""Provider health rows: the circuit breakers and submit-rate buckets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from models.tables import ProviderHealth
from worker.repository.base import NOW, SessionBound
from worker.values.breaker import BreakerState, Health


class HealthRows(SessionBound):
    """Read, lock and save one row a provider."""

    def all_health(self) -> dict[str, Health]:
        """Every provider's health (a provider never recorded is healthy)."""
        return {row.provider: _health(row) for row in self.s.scalars(select(ProviderHealth))}

    def lock_health(self, provider: str) -> Health:
        """A provider's health, locked for update until the transaction ends."""
        return self.lock_all_health([provider])[provider]

    def lock_all_health(self, providers: list[str]) -> dict[str, Health]:
        """Several providers' health, locked (in name order, so two lockers cannot deadlock).

        A provider never recorded gets its row first (once; after that one statement).
        """
        names = sorted(providers)
        rows = self.run(_LOCK, {"names": names}).all()
        if len(rows) < len(names):
            self.run(
                insert(ProviderHealth)
                .values([{"provider": name} for name in names])
                .on_conflict_do_nothing()
            )
            rows = self.run(_LOCK, {"names": names}).all()
        return {row.provider: _health(row) for row in rows}

    def record_success(self, provider: str) -> None:
        """A call to ``provider`` worked: close its breaker (zero rows when it is healthy).

        The common case writes nothing and locks nothing, so a busy healthy provider does
        not serialise every submit on its health row.
        """
        self.run(_CLOSE, {"close_provider": provider})

    def save_health(self, provider: str, health: Health) -> None:
        """Write a provider's health back."""
        self.run(
            insert(ProviderHealth)
            .values(provider=provider, **_values(health))
            .on_conflict_do_update(index_elements=["provider"], set_=_values(health))
        )


def _health(row: Any) -> Health:
    return Health(
        state=BreakerState(row.state),
        consecutive_failures=row.consecutive_failures,
        opened_at=row.opened_at,
        tokens=row.tokens,
        tokens_at=row.tokens_at,
    )


def _values(health: Health) -> dict[str, object]:
    return {
        "state": health.state.value,
        "consecutive_failures": health.consecutive_failures,
        "opened_at": health.opened_at,
        "tokens": health.tokens,
        "tokens_at": health.tokens_at,
        "updated_at": NOW,
    }


#: Providers' health rows by name, locked in name order; built once.
_LOCK = (
    select(ProviderHealth.__table__)
    .where(ProviderHealth.provider.in_(bindparam("names", expanding=True)))
    .order_by(ProviderHealth.provider)
    .with_for_update()
)

#: Built once: every submit and every result runs it.
_CLOSE = (
    update(ProviderHealth)
    .where(
        ProviderHealth.provider == bindparam("close_provider"),
        or_(
            ProviderHealth.state != BreakerState.CLOSED.value,
            ProviderHealth.consecutive_failures != 0,
        ),
    )
    .values(
        state=BreakerState.CLOSED.value,
        consecutive_failures=0,
        opened_at=None,
        updated_at=NOW,
    )
)
