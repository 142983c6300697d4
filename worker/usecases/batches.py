"""Batch use cases: submit a catalog file, follow it, cancel it, finish it, read its results.

Reading the file and inserting its rows is :mod:`worker.usecases.batch_ingest`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass
from typing import IO

from models.state import IN_FLIGHT_STATES
from worker.database import Database, TaskQueue, publish
from worker.errors import (
    BatchNotFound,
    IdempotencyConflict,
    InvalidTransition,
)
from worker.storage.base import Storage
from worker.usecases.batch_ingest import REJECTS_SHOWN, BatchIngest, BatchOptions
from worker.usecases.batch_results import BatchResults
from worker.usecases.jobs import Jobs
from worker.values.batch_file import BatchFormat, Reject
from worker.values.batch_status import RATE_WINDOW_SECONDS, BatchStatus, status_of
from worker.values.ids import new_id
from worker.values.records import (
    BatchRecord,
    NewBatch,
)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A batch as submitted: whether it was created now, and the first bad rows."""

    batch: BatchRecord
    created: bool
    rejects: tuple[Reject, ...]


class Batches(BatchResults):
    """The batch use cases producers, ops and the scheduler call."""

    def __init__(
        self,
        db: Database,
        queue: TaskQueue,
        storage: Storage,
        jobs: Jobs,
        *,
        max_rows: int,
        max_attempts: int,
        url_seconds: int,
        lease_seconds: float,
    ) -> None:
        self._db = db
        self._queue = queue
        self._storage = storage
        self._jobs = jobs
        self._ingest = BatchIngest(db, jobs, max_rows=max_rows, max_attempts=max_attempts)
        self._url_seconds = url_seconds
        self._lease_seconds = lease_seconds

    # -- submit ------------------------------------------------------------------------

    def submit(
        self,
        source: IO[bytes],
        fmt: BatchFormat,
        options: BatchOptions,
        idempotency_key: str | None = None,
    ) -> Submitted:
        """Read a batch file (seekable) and queue a job for each good row.

        With an ``idempotency_key`` the same key, file and options give back the first
        batch, and the same key with another file or options raises an idempotency conflict.
        """
        self._jobs.intake.check_callback_url(options.callback_url)
        fingerprint = _fingerprint(source, fmt, options)
        if idempotency_key:
            earlier = self._earlier(idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        new = NewBatch(
            id=new_id(),
            model=options.model,
            providers=options.providers,
            priority=options.priority,
            callback_url=options.callback_url,
            budget_usd=options.budget_usd,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            quality=None if options.quality is None else options.quality.to_json(),
            routing=options.routing,
        )
        with self._db.transaction() as repo:
            created = repo.insert_batch(new)
        if not created:  # another upload with the same key got there first
            earlier = self._earlier(idempotency_key or "", fingerprint)
            if earlier is None:  # pragma: no cover - the conflict guarantees a row
                raise BatchNotFound
            return earlier
        try:
            rejects = self._ingest.ingest(new, source, fmt, options)
        except BaseException:
            with self._db.transaction() as repo:
                repo.delete_batch(new.id)
            raise
        return Submitted(self.get(new.id), True, tuple(rejects[:REJECTS_SHOWN]))

    def _earlier(self, key: str, fingerprint: str) -> Submitted | None:
        with self._db.transaction() as repo:
            batch = repo.batch_by_idempotency_key(key)
            rejects = repo.rejects(batch.id)[:REJECTS_SHOWN] if batch else []
        if batch is None:
            return None
        if batch.request_hash != fingerprint:
            raise IdempotencyConflict(key=key)
        return Submitted(batch, False, tuple(rejects))

    # -- follow -----------------------------------------------------------------------

    def get(self, batch_id: uuid.UUID) -> BatchRecord:
        """One batch."""
        with self._db.transaction() as repo:
            batch = repo.batch(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id=str(batch_id))
        return batch

    def status(self, batch_id: uuid.UUID) -> BatchStatus:
        """A batch with counts by state, cost so far, rate and ETA."""
        with self._db.transaction() as repo:
            batch = repo.batch(batch_id)
            progress = repo.progress(batch_id, RATE_WINDOW_SECONDS) if batch else None
        if batch is None or progress is None:
            raise BatchNotFound(batch_id=str(batch_id))
        return status_of(batch, progress)

    def recent(self, limit: int = 20) -> list[BatchRecord]:
        """The newest batches."""
        with self._db.transaction() as repo:
            return repo.list_batches(limit)

    def rejects(self, batch_id: uuid.UUID) -> list[Reject]:
        """Every bad row of the batch's file."""
        with self._db.transaction() as repo:
            return repo.rejects(batch_id)

    # -- cancel -----------------------------------------------------------------------

    def cancel(self, batch_id: uuid.UUID, reason: str | None = None) -> BatchStatus:
        """Cancel every unfinished job of a running batch; providers are asked to stop."""
        with self._db.transaction() as repo:
            canceled = repo.cancel_batch(batch_id, reason)
            batch = repo.batch(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id=str(batch_id))
        if canceled is None:
            raise InvalidTransition(
                f"batch {batch_id} is {batch.state}; only a running batch can be canceled",
                state=batch.state.value,
            )
        for job_id, attempt, before in canceled:
            if before in IN_FLIGHT_STATES:
                publish(self._queue.cancel_at_provider, job_id, attempt)
        return self.status(batch_id)

    # -- finish -----------------------------------------------------------------------

    def tick(self) -> int:
        """Start finishing every batch whose jobs are all terminal (and stalled finishes)."""
        with self._db.transaction() as repo:
            due = repo.batches_to_finish(self._lease_seconds, limit=50)
        for batch_id in due:
            publish(self._queue.finish_batch, batch_id)
        return len(due)


def _fingerprint(source: IO[bytes], fmt: BatchFormat, options: BatchOptions) -> str:
    """sha256 of the file and the options; the file is read once and rewound."""
    digest = hashlib.sha256()
    settings = asdict(options) | {"format": fmt, "budget_usd": str(options.budget_usd)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode() + b"\n")
    while block := source.read(1 << 20):
        digest.update(block)
    source.seek(0)
    return digest.hexdigest()
