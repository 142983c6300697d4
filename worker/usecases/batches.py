"""Batch use cases: submit a catalog file, follow it, cancel it, finish it, read its results.

A batch file is read once, as a stream, and its good rows are inserted in chunks of
:data:`CHUNK` in one transaction: either every good row becomes a queued job, or (a strict
file with a bad row, too many rows, a file that cannot be read) nothing is written at all.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import IO, Any
from urllib.parse import urlsplit

from models.state import IN_FLIGHT_STATES
from worker.database import Database, TaskQueue, publish
from worker.errors import (
    BatchEmpty,
    BatchNotFound,
    BatchRowsInvalid,
    BatchTooLarge,
    EditqError,
    IdempotencyConflict,
    InvalidTransition,
    NoProviderCanRun,
)
from worker.storage.base import Storage
from worker.usecases.batch_results import BatchResults
from worker.usecases.jobs import Jobs
from worker.values.batch_file import BatchFormat, Reject, Row, read_rows
from worker.values.batch_status import RATE_WINDOW_SECONDS, BatchStatus, status_of
from worker.values.canonical import ModelName
from worker.values.quality_policy import DEFAULT_MAX_RETRIES, QualityPolicy
from worker.values.records import (
    BatchRecord,
    NewBatch,
    NewJob,
)

#: Rows inserted per statement.
CHUNK = 2000
#: Bad rows listed in an answer; every one is in ``errors.jsonl``.
REJECTS_SHOWN = 100


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What applies to every row of a batch (a row's own ``model``/``priority`` win)."""

    model: ModelName = "flux-kontext-pro"
    providers: tuple[str, ...] = ()
    priority: int = 0
    callback_url: str | None = None
    budget_usd: Decimal | None = None
    #: What a failed quality check does to the rows' jobs (None: the settings' default).
    quality: QualityPolicy | None = None
    #: Refuse the whole file if any row is bad.
    strict: bool = False


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
        self._max_rows = max_rows
        self._max_attempts = max_attempts
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
        self._jobs.check_callback_url(options.callback_url)
        fingerprint = _fingerprint(source, fmt, options)
        if idempotency_key:
            earlier = self._earlier(idempotency_key, fingerprint)
            if earlier is not None:
                return earlier
        new = NewBatch(
            id=uuid.uuid4(),
            model=options.model,
            providers=options.providers,
            priority=options.priority,
            callback_url=options.callback_url,
            budget_usd=options.budget_usd,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            quality=None if options.quality is None else options.quality.to_json(),
        )
        with self._db.transaction() as repo:
            created = repo.insert_batch(new)
        if not created:  # another upload with the same key got there first
            earlier = self._earlier(idempotency_key or "", fingerprint)
            if earlier is None:  # pragma: no cover - the conflict guarantees a row
                raise BatchNotFound
            return earlier
        try:
            rejects = self._ingest(new, source, fmt, options)
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

    def _ingest(
        self, batch: NewBatch, source: IO[bytes], fmt: BatchFormat, options: BatchOptions
    ) -> list[Reject]:
        rejects: list[Reject] = []
        accepted = 0
        # Each distinct callback URL and source host of the file is checked once.
        refusals: dict[str, EditqError | None] = {}
        with self._db.transaction() as repo:
            chunk: list[NewJob] = []
            for total, item in enumerate(read_rows(source, fmt), start=1):
                if total > self._max_rows:
                    raise BatchTooLarge(f"the file has more than {self._max_rows} rows; split it")
                job = self._job(batch, item, options, refusals) if isinstance(item, Row) else item
                if isinstance(job, Reject):
                    rejects.append(job)
                    continue
                chunk.append(job)
                if len(chunk) == CHUNK:
                    repo.insert_jobs(chunk)
                    accepted, chunk = accepted + len(chunk), []
            repo.insert_jobs(chunk)
            accepted += len(chunk)
            if rejects and options.strict:
                raise BatchRowsInvalid(
                    f"{len(rejects)} row(s) break rules; the first, on line {rejects[0].line}, "
                    f"{rejects[0].message}",
                    **_listed(rejects),
                )
            if accepted == 0:
                raise BatchEmpty(
                    "the file has no row that could be accepted"
                    + (f"; line {rejects[0].line}: {rejects[0].message}" if rejects else ""),
                    **_listed(rejects),
                )
            repo.insert_rejects(batch.id, rejects)
            repo.open_batch(batch.id, accepted + len(rejects), accepted, len(rejects))
        return rejects

    def _job(
        self,
        batch: NewBatch,
        row: Row,
        options: BatchOptions,
        refusals: dict[str, EditqError | None],
    ) -> NewJob | Reject:
        model = row.options.model or options.model
        url = row.options.callback_url
        refused = self._refused(url, url, self._jobs.check_callback_url, refusals)
        if refused is not None:
            return Reject(
                row.line, row.options.external_id, "callback_url", refused.code, refused.message
            )
        source = row.input.image_url
        # Addresses are a matter of the host: each host of the file is looked up once.
        host = urlsplit(source).netloc if not source.startswith("data:") else None
        refused = self._refused(host, source, self._jobs.check_source, refusals)
        if refused is not None:
            return Reject(
                row.line, row.options.external_id, "image_url", refused.code, refused.message
            )
        try:
            providers = row.options.providers or options.providers
            eligible, excluded = self._jobs.route(model, row.input, providers)
        except NoProviderCanRun as exc:
            first = exc.details["fields"][0]
            return Reject(
                row.line, row.options.external_id, first["field"], first["rule"], exc.message
            )
        return NewJob(
            id=uuid.uuid4(),
            model=model,
            input=row.input.model_dump(mode="json", exclude_none=True),
            providers=eligible,
            excluded_providers=excluded,
            max_attempts=self._max_attempts,
            priority=row.options.priority if row.options.priority is not None else options.priority,
            external_id=row.options.external_id,
            callback_url=row.options.callback_url,
            batch_id=batch.id,
            quality=_row_quality(row, options),
        )

    def _refused(
        self,
        key: str | None,
        url: str | None,
        check: Callable[[str], None],
        refusals: dict[str, EditqError | None],
    ) -> EditqError | None:
        """Why ``url`` cannot be used (None: it can), cached in ``refusals`` under ``key``."""
        if key is None or url is None:
            return None
        if key not in refusals:
            try:
                check(url)
                refusals[key] = None
            except EditqError as exc:
                refusals[key] = exc
        return refusals[key]

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


def _listed(rejects: Sequence[Reject]) -> dict[str, Any]:
    """An error's details for bad rows: each as a field error, and as the row it was."""
    shown = rejects[:REJECTS_SHOWN]
    fields = [
        {"field": r.field, "rule": r.rule, "message": f"line {r.line}: {r.message}"} for r in shown
    ] or [{"field": "body", "rule": "no_rows", "message": "the file has no row"}]
    return {"fields": fields, "rejected": len(rejects), "rows": [asdict(r) for r in shown]}


def _fingerprint(source: IO[bytes], fmt: BatchFormat, options: BatchOptions) -> str:
    """sha256 of the file and the options; the file is read once and rewound."""
    digest = hashlib.sha256()
    settings = asdict(options) | {"format": fmt, "budget_usd": str(options.budget_usd)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode() + b"\n")
    while block := source.read(1 << 20):
        digest.update(block)
    source.seek(0)
    return digest.hexdigest()


def _row_quality(row: Row, options: BatchOptions) -> dict[str, Any] | None:
    """A row's quality policy: its own ``quality_on_failure``, else the batch's."""
    chosen = row.options.quality_on_failure
    if chosen is None:
        return None if options.quality is None else options.quality.to_json()
    retries = options.quality.max_retries if options.quality else DEFAULT_MAX_RETRIES
    return QualityPolicy(chosen, retries).to_json()
