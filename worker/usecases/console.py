"""What the ops console's overview shows: every provider, the queue, the last hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from worker.database import Database
from worker.usecases.provider_status import ProviderStatus, provider_status
from worker.values.breaker import Limits
from worker.values.records import HourFigures, ProviderRecord, QueueFigures

#: The overview's two windows of each provider's record, in seconds.
SHORT, LONG = 300.0, 3600.0
#: How many hours of throughput and spend the overview draws.
HOURS = 12


@dataclass(frozen=True, slots=True)
class ProviderRow:
    """One provider on the overview."""

    status: ProviderStatus
    queued: int
    short: ProviderRecord
    long: ProviderRecord


@dataclass(frozen=True, slots=True)
class Overview:
    """Everything the overview page shows, read at one moment."""

    at: datetime
    providers: list[ProviderRow]
    queue: QueueFigures
    hours: list[HourFigures]

    @property
    def oldest_due_seconds(self) -> float | None:
        due = self.queue.oldest_due
        return None if due is None else max((self.at - due).total_seconds(), 0.0)


_NONE = ProviderRecord(0, 0, None, None)


def overview(db: Database, limits: Limits) -> Overview:
    """The overview as it is now."""
    statuses = provider_status(db, limits)
    with db.transaction() as repo:
        queue = repo.queue_figures()
        short = repo.provider_records(SHORT)
        long = repo.provider_records(LONG)
        hours = repo.hours(HOURS)
    rows = [
        ProviderRow(
            s, queue.queued.get(s.name, 0), short.get(s.name, _NONE), long.get(s.name, _NONE)
        )
        for s in statuses
    ]
    return Overview(datetime.now(UTC), rows, queue, hours)
