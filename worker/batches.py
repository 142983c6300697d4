"""Batch use cases: submit a catalog file, follow it, cancel it, finish it, read its results.

A batch file is read once, as a stream, and its good rows are inserted in chunks of
:data:`CHUNK` in one transaction: either every good row becomes a queued job, or (a strict
file with a bad row, too many rows, a file that cannot be read) nothing is written at all.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import PurePath
from typing import IO, Any

from models.state import ACTIVE_STATES, IN_FLIGHT_STATES, TERMINAL_STATES, BatchState, JobState
from worker.batch_file import BatchFormat, Reject, Row, read_rows
from worker.callback_events import BATCH_COMPLETED
from worker.canonical import ModelName
from worker.errors import EditqError, IdempotencyConflict, InvalidTransition, NoProviderCanRun
from worker.jobs import Jobs
from worker.records import BatchProgress, BatchRecord, JobRecord, NewBatch, NewJob, OutputRecord
from worker.storage.base import Storage
from worker.usecase import Database, TaskQueue, publish

#: Rows inserted per statement.
CHUNK = 2000
#: Bad rows listed in an answer; every one is in ``errors.jsonl``.
REJECTS_SHOWN = 100
#: The throughput window behind a batch's rate and ETA.
RATE_WINDOW_SECONDS = 60.0


class BatchNotFound(EditqError):
    """No batch has that id."""

    code = "batch_not_found"
    status = 404
    exit_code = 3


class BatchRowsInvalid(EditqError):
    """Rows of the file break rules (strict mode refuses the whole file); see ``rows``."""

    code = "batch_rows_invalid"
    status = 422
    exit_code = 2


class BatchEmpty(EditqError):
    """The file has no row that could be accepted."""

    code = "batch_empty"
    status = 422
    exit_code = 2


class BatchTooLarge(EditqError):
    """The file has more rows, or bytes, than one batch may hold; split it."""

    code = "batch_too_large"
    status = 413
    exit_code = 2


class BatchFormatUnknown(EditqError):
    """Send the file as text/csv or application/x-ndjson (JSONL); name it .csv or .jsonl."""

    code = "batch_format_unknown"
    status = 415
    exit_code = 2


#: What a batch file may be sent or named as, and how it is then read.
MEDIA_TYPES: dict[str, BatchFormat] = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/jsonlines": "jsonl",
    "application/x-jsonlines": "jsonl",
}
SUFFIXES: dict[str, BatchFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_of(media_type: str | None = None, filename: str | None = None) -> BatchFormat:
    """The format of a batch file, from its media type or else its name."""
    if media_type:
        found = MEDIA_TYPES.get(media_type.split(";")[0].strip().lower())
    else:
        found = SUFFIXES.get(PurePath(filename or "").suffix.lower())
    if found is None:
        raise BatchFormatUnknown(
            f"cannot read {media_type or filename!r} as a batch file: send it as text/csv or "
            "application/x-ndjson (JSONL), or name it .csv or .jsonl"
        )
    return found


class BatchNotFinished(EditqError):
    """The batch's result files are written when every job has finished; wait, or cancel it."""

    code = "batch_not_finished"
    status = 409
    exit_code = 5


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """What applies to every row of a batch (a row's own ``model``/``priority`` win)."""

    model: ModelName = "flux-kontext-pro"
    providers: tuple[str, ...] = ()
    priority: int = 0
    callback_url: str | None = None
    budget_usd: Decimal | None = None
    #: Refuse the whole file if any row is bad.
    strict: bool = False


@dataclass(frozen=True, slots=True)
class Submitted:
    """A batch as submitted: whether it was created now, and the first bad rows."""

    batch: BatchRecord
    created: bool
    rejects: tuple[Reject, ...]


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch and where its jobs are, with throughput over the last minute and an ETA."""

    batch: BatchRecord
    progress: BatchProgress
    #: Jobs finished per second over the rate window.
    rate: float
    #: Seconds until every job is finished at that rate; None while nothing has finished.
    eta_seconds: float | None

    @property
    def done(self) -> int:
        """Jobs that succeeded."""
        return self.progress.counts.get(JobState.SUCCEEDED, 0)

    @property
    def failed(self) -> int:
        """Jobs that failed or were canceled."""
        counts = self.progress.counts
        return counts.get(JobState.FAILED, 0) + counts.get(JobState.CANCELED, 0)

    @property
    def in_flight(self) -> int:
        """Jobs a provider is working on."""
        return sum(self.progress.counts.get(s, 0) for s in (*IN_FLIGHT_STATES, JobState.FINALIZING))

    @property
    def finished(self) -> bool:
        """Whether the batch is completed or canceled."""
        return self.batch.state in {BatchState.COMPLETED, BatchState.CANCELED}


@dataclass(frozen=True, slots=True)
class ResultFiles:
    """Where a finished batch's result files are, with presigned GET URLs."""

    results_key: str
    errors_key: str
    results_url: str
    errors_url: str
    expires_in_seconds: int


class Batches:
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
        # Each distinct callback URL of the file is checked once.
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
        refused = self._callback_refused(row.options.callback_url, refusals)
        if refused is not None:
            return Reject(
                row.line, row.options.external_id, "callback_url", refused.code, refused.message
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
        )

    def _callback_refused(
        self, url: str | None, refusals: dict[str, EditqError | None]
    ) -> EditqError | None:
        """Why a row's ``callback_url`` cannot be used (None: it can), cached in ``refusals``."""
        if url is None:
            return None
        if url not in refusals:
            try:
                self._jobs.check_callback_url(url)
                refusals[url] = None
            except EditqError as exc:
                refusals[url] = exc
        return refusals[url]

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

    def finish(self, batch_id: uuid.UUID) -> str:
        """Write ``results.jsonl`` and ``errors.jsonl`` to storage and end the batch."""
        with self._db.transaction() as repo:
            batch = repo.batch(batch_id)
        if batch is None or batch.state is not BatchState.FINALIZING:
            return "stale"
        results_key, errors_key = result_keys(batch_id)
        with (
            tempfile.SpooledTemporaryFile(8 << 20) as results,
            tempfile.SpooledTemporaryFile(8 << 20) as errors,
        ):
            with self._db.transaction() as repo:
                _write_lines(errors, (reject_line(r) for r in repo.rejects(batch_id)))
                for job, outputs in repo.batch_jobs(batch_id):
                    _write_lines(results, [self._result_line(job, outputs)])
                    if job.state is not JobState.SUCCEEDED:
                        _write_lines(errors, [failure_line(job)])
            self._upload(results_key, results)
            self._upload(errors_key, errors)
        with self._db.transaction() as repo:
            final = repo.complete_batch(batch_id, results_key, errors_key)
            if final is not None and batch.callback_url:
                done = repo.batch(batch_id)
                progress = repo.progress(batch_id, RATE_WINDOW_SECONDS)
                if done is not None:
                    repo.notify_batch(batch_id, batch.callback_url, batch_event(done, progress))
        return final.value if final else "reopened"

    def _upload(self, key: str, spool: IO[bytes]) -> None:
        spool.seek(0)
        self._storage.put(key, spool.read(), "application/x-ndjson")

    def _result_line(self, job: JobRecord, outputs: Sequence[OutputRecord]) -> dict[str, Any]:
        line: dict[str, Any] = {
            "external_id": job.external_id,
            "job_id": str(job.id),
            "state": job.state.value,
            "outputs": [
                asdict(o) | {"url": self._storage.presign_get(o.key, self._url_seconds)}
                for o in outputs
            ],
            "cost_usd": str(job.cost_usd),
        }
        if job.error_code and job.state is not JobState.SUCCEEDED:
            line["error"] = {"code": job.error_code, "message": job.error_message}
        return line

    def results(self, batch_id: uuid.UUID) -> ResultFiles:
        """Presigned URLs of a finished batch's ``results.jsonl`` and ``errors.jsonl``."""
        batch = self.get(batch_id)
        if not batch.results_key or not batch.errors_key or batch.state not in _FINISHED:
            raise BatchNotFinished(
                f"batch {batch_id} is {batch.state}; its result files are written when every "
                "job has finished",
                state=batch.state.value,
            )
        return ResultFiles(
            results_key=batch.results_key,
            errors_key=batch.errors_key,
            results_url=self._storage.presign_get(batch.results_key, self._url_seconds),
            errors_url=self._storage.presign_get(batch.errors_key, self._url_seconds),
            expires_in_seconds=self._url_seconds,
        )


_FINISHED = frozenset({BatchState.COMPLETED, BatchState.CANCELED})


def status_of(batch: BatchRecord, progress: BatchProgress) -> BatchStatus:
    """Rate over the window (or the batch's age, when younger) and the ETA it gives."""
    age = max((datetime.now(UTC) - batch.created_at).total_seconds(), 1.0)
    rate = progress.recent / min(progress.window_seconds, age)
    active = sum(progress.counts.get(s, 0) for s in ACTIVE_STATES)
    eta = active / rate if rate > 0 else (0.0 if active == 0 else None)
    return BatchStatus(batch, progress, rate, eta)


def result_keys(batch_id: uuid.UUID) -> tuple[str, str]:
    """Where a batch's ``results.jsonl`` and ``errors.jsonl`` are stored."""
    return f"batches/{batch_id}/results.jsonl", f"batches/{batch_id}/errors.jsonl"


def reject_line(reject: Reject) -> dict[str, Any]:
    """An ``errors.jsonl`` line for a bad row of the file."""
    return {
        "external_id": reject.external_id,
        "line": reject.line,
        "code": "invalid_row",
        "field": reject.field,
        "rule": reject.rule,
        "message": reject.message,
    }


def failure_line(job: JobRecord) -> dict[str, Any]:
    """An ``errors.jsonl`` line for a job that did not succeed."""
    return {
        "external_id": job.external_id,
        "job_id": str(job.id),
        "state": job.state.value,
        "code": job.error_code or job.state.value,
        "message": job.error_message or f"the job was {job.state.value}",
    }


def batch_event(batch: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    """The body of a finished batch's ``batch.completed`` callback."""
    at = batch.completed_at or batch.updated_at
    return {
        "type": BATCH_COMPLETED,
        "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": _batch_data(batch, progress),
    }


def _batch_data(batch: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    return {
        "id": str(batch.id),
        "state": batch.state.value,
        "rows": {
            "total": batch.rows_total,
            "accepted": batch.rows_accepted,
            "rejected": batch.rows_rejected,
        },
        "counts": {s.value: progress.counts.get(s, 0) for s in TERMINAL_STATES},
        "cost_usd": str(progress.cost_usd),
        "results_key": batch.results_key,
        "errors_key": batch.errors_key,
        "budget_exhausted": batch.budget_exhausted_at is not None,
        "created_at": batch.created_at.isoformat(),
        "completed_at": batch.completed_at.isoformat() if batch.completed_at else None,
    }


def _listed(rejects: Sequence[Reject]) -> dict[str, Any]:
    """An error's details for bad rows: each as a field error, and as the row it was."""
    shown = rejects[:REJECTS_SHOWN]
    fields = [
        {"field": r.field, "rule": r.rule, "message": f"line {r.line}: {r.message}"} for r in shown
    ] or [{"field": "body", "rule": "no_rows", "message": "the file has no row"}]
    return {"fields": fields, "rejected": len(rejects), "rows": [asdict(r) for r in shown]}


def _write_lines(spool: IO[bytes], lines: Iterable[dict[str, Any]]) -> None:
    for line in lines:
        spool.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")


def _fingerprint(source: IO[bytes], fmt: BatchFormat, options: BatchOptions) -> str:
    """sha256 of the file and the options; the file is read once and rewound."""
    digest = hashlib.sha256()
    settings = asdict(options) | {"format": fmt, "budget_usd": str(options.budget_usd)}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode() + b"\n")
    while block := source.read(1 << 20):
        digest.update(block)
    source.seek(0)
    return digest.hexdigest()
