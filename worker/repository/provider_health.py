"""Provider health rows: the circuit breakers, submit-rate buckets and learned limits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from models.tables import Attempt, ProviderHealth
from worker.repository.base import SessionBound, seconds_from_now
from worker.repository.sql import NOW
from worker.values.breaker import BreakerState, Health
from worker.values.routing import CapacityPolicy, grown


class HealthRows(SessionBound):
    """Read, lock and save one row a provider."""

    def all_health(self) -> dict[str, Health]:
        """Every provider's health (a provider never recorded is healthy)."""
        return {row.provider: _health(row) for row in self.s.scalars(select(ProviderHealth))}

    def pauses(self) -> dict[str, tuple[str | None, str | None]]:
        """Who paused each paused provider, and why."""
        query = select(
            ProviderHealth.provider, ProviderHealth.paused_by, ProviderHealth.paused_reason
        ).where(ProviderHealth.paused_at.is_not(None))
        return {name: (by, reason) for name, by, reason in self.run(query)}

    def set_paused(self, provider: str, by: str | None, reason: str | None) -> bool:
        """Pause ``provider`` (``by`` an operator) or, with ``by`` None, resume it; whether
        that changed anything."""
        self.lock_health(provider)  # its row exists from here on
        paused = ProviderHealth.paused_at.is_not(None)
        changed = self.run(
            update(ProviderHealth)
            .where(ProviderHealth.provider == provider, ~paused if by else paused)
            .values(
                paused_at=NOW if by else None,
                paused_by=by,
                paused_reason=reason if by else None,
                updated_at=NOW,
            )
            .returning(ProviderHealth.provider)
        ).first()
        return changed is not None

    def set_capacity(self, provider: str, capacity: int | None) -> None:
        """Set ``provider``'s in-flight ceiling at runtime (None: back to the configured)."""
        self.lock_health(provider)
        self.run(
            update(ProviderHealth)
            .where(ProviderHealth.provider == provider)
            .values(capacity_override=capacity, updated_at=NOW)
        )

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

    def grow_limit(self, provider: str, ceiling: int, policy: CapacityPolicy) -> None:
        """``provider`` accepted a submission: its learned limit grows toward ``ceiling``.

        A provider at its ceiling (the common case) costs one read and no write.
        """
        if not policy.learning:
            return
        row = self.run(_BELOW_CEILING, {"g_provider": provider, "g_ceiling": ceiling}).first()
        if row is None:
            return
        value = grown(row.learned_limit, row.limit_cut_at, ceiling, policy)
        self.run(
            update(ProviderHealth)
            .where(ProviderHealth.provider == provider)
            .values(learned_limit=value, updated_at=NOW)
        )

    def latencies(self, window_seconds: float) -> dict[str, float]:
        """Each provider's median seconds from submit to stored, over recent successes."""
        took = func.extract("epoch", Attempt.finished_at - Attempt.submitted_at)
        rows = self.run(
            select(Attempt.provider, func.percentile_cont(0.5).within_group(took))
            .where(
                Attempt.outcome == "succeeded",
                Attempt.finished_at > seconds_from_now(-window_seconds),
                Attempt.submitted_at.is_not(None),
            )
            .group_by(Attempt.provider)
        )
        return {provider: float(median) for provider, median in rows if median is not None}

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
        learned_limit=row.learned_limit,
        limit_cut_at=row.limit_cut_at,
        paused_at=row.paused_at,
        capacity_override=row.capacity_override,
    )


def _values(health: Health) -> dict[str, object]:
    return {
        "state": health.state.value,
        "consecutive_failures": health.consecutive_failures,
        "opened_at": health.opened_at,
        "tokens": health.tokens,
        "tokens_at": health.tokens_at,
        "learned_limit": health.learned_limit,
        "limit_cut_at": health.limit_cut_at,
        "updated_at": NOW,
    }


#: Providers' health rows by name, locked in name order; built once.
_LOCK = (
    select(ProviderHealth.__table__)
    .where(ProviderHealth.provider.in_(bindparam("names", expanding=True)))
    .order_by(ProviderHealth.provider)
    .with_for_update()
)

#: A provider's learned limit, locked, if it is below the ceiling; built once.
_BELOW_CEILING = (
    select(ProviderHealth.learned_limit, ProviderHealth.limit_cut_at)
    .where(
        ProviderHealth.provider == bindparam("g_provider"),
        or_(
            ProviderHealth.learned_limit.is_(None),
            ProviderHealth.learned_limit < bindparam("g_ceiling"),
        ),
    )
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
