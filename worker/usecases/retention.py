"""Retention: deleting finished jobs past ``EDITQ_RETAIN_DAYS``, archived first if asked.

The scheduler prunes every ``EDITQ_PRUNE_INTERVAL_SECONDS`` in rounds of a few hundred
jobs, each round one short transaction, so a prune never holds many rows or blocks the
dispatch. With ``EDITQ_RETAIN_ARCHIVE`` each round first writes what it deletes to the
bucket, one gzipped JSON Lines object per day of completion
(``archive/jobs/YYYY-MM-DD/<round>.jsonl.gz``: a line per job with its attempts, outputs
and events). The rows stay locked until the object is written; if writing fails nothing is
deleted, and a commit that fails after it leaves a line that the next round writes again.
Outputs in the bucket are not touched: a lifecycle rule on the bucket expires them.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from worker.database import Database
from worker.storage.base import Storage
from worker.values.records import PruneCounts

log = logging.getLogger("editq.retention")

#: Jobs one round deletes at most: one short transaction.
ROUND = 500
#: Rounds one prune makes at most before it lets the scheduler tick again.
MAX_ROUNDS = 40


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune deleted, and the archive objects it wrote first."""

    jobs: int = 0
    batches: int = 0
    archived: tuple[str, ...] = ()

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(
            self.jobs + other.jobs, self.batches + other.batches, self.archived + other.archived
        )


class Retention:
    """Prune what is past its retention; ``days`` None keeps everything."""

    def __init__(
        self, db: Database, storage: Storage, days: float | None, *, archive: bool
    ) -> None:
        self._db = db
        self._storage = storage
        self.days = days
        self._archive = archive

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Jobs completed before this go."""
        assert self.days is not None
        return (now or datetime.now(UTC)) - timedelta(days=self.days)

    def preview(self) -> PruneCounts | None:
        """What a prune now would delete; None when retention is off."""
        if self.days is None:
            return None
        with self._db.transaction() as repo:
            return repo.prune_counts(self.cutoff())

    def prune(self, rounds: int = MAX_ROUNDS, seconds: float | None = None) -> PruneReport:
        """Prune in rounds until one deletes nothing, ``rounds`` are made, or (when given)
        ``seconds`` have passed."""
        total = PruneReport()
        if self.days is None:
            return total
        until = None if seconds is None else time.monotonic() + seconds
        for _ in range(rounds):
            done = self._round(self.cutoff())
            total += done
            if not done.jobs and not done.batches:
                break
            if until is not None and time.monotonic() >= until:
                break
        if total.jobs or total.batches:
            log.info(
                "pruned %d job(s) and %d batch(es) past %g days",
                total.jobs,
                total.batches,
                self.days,
            )
        return total

    def _round(self, cutoff: datetime) -> PruneReport:
        with self._db.transaction() as repo:
            ids = repo.prunable_jobs(cutoff, ROUND)
            keys: tuple[str, ...] = ()
            if ids and self._archive:
                keys = self._write_archive(repo.archive_rows(ids))
            jobs = repo.delete_jobs(ids)
            batches = repo.delete_empty_batches(cutoff, ROUND)
        return PruneReport(jobs, batches, keys)

    def _write_archive(self, rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
        by_day: dict[date, list[str]] = {}
        for row in rows:
            completed = row["job"].completed_at or row["job"].updated_at
            by_day.setdefault(completed.date(), []).append(json.dumps(row, default=_plain))
        keys = []
        for day, lines in sorted(by_day.items()):
            key = f"archive/jobs/{day.isoformat()}/{uuid.uuid4().hex}.jsonl.gz"
            body = gzip.compress(("\n".join(lines) + "\n").encode())
            self._storage.put(key, body, "application/gzip")
            keys.append(key)
        return tuple(keys)


def _plain(value: object) -> object:
    """What JSON has no type for, as the API shows it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not kept in the archive")
