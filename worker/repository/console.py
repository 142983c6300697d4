"""The reads behind the ops console's overview: each provider's recent record and trend."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from models.tables import Attempt
from worker.repository.base import SessionBound, seconds_from_now
from worker.values.records import HourFigures, ProviderRecord

_TOOK = func.extract("epoch", Attempt.finished_at - Attempt.submitted_at)


class ConsoleRows(SessionBound):
    """What the overview shows of the last minutes and hours."""

    def provider_records(self, window_seconds: float) -> dict[str, ProviderRecord]:
        """Each provider's attempts that ended in the window: how many succeeded and
        failed, and the p50 and p90 of the successes' time at the provider."""
        succeeded = Attempt.outcome == "succeeded"
        query = (
            select(
                Attempt.provider,
                func.count().filter(succeeded),
                func.count().filter(Attempt.outcome == "failed"),
                func.percentile_cont(0.5).within_group(_TOOK).filter(succeeded),
                func.percentile_cont(0.9).within_group(_TOOK).filter(succeeded),
            )
            .where(Attempt.finished_at > seconds_from_now(-window_seconds))
            .group_by(Attempt.provider)
        )
        return {
            provider: ProviderRecord(int(ok), int(failed), _round(p50), _round(p90))
            for provider, ok, failed, p50, p90 in self.run(query)
        }

    def hours(self, hours: int) -> list[HourFigures]:
        """Succeeded attempts and their cost in each of the last ``hours`` hours (from the
        partial index of successes), oldest first; an hour with none is left out."""
        hour = func.date_trunc("hour", Attempt.finished_at)
        query = (
            select(hour, func.count(), func.coalesce(func.sum(Attempt.cost_usd), 0))
            .where(
                Attempt.outcome == "succeeded",
                Attempt.finished_at > seconds_from_now(-3600 * hours),
            )
            .group_by(hour)
            .order_by(hour)
        )
        return [HourFigures(at, int(n), Decimal(cost)) for at, n, cost in self.run(query)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)
