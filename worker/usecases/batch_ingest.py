"""Reading a batch file into jobs: each good row a queued job, each bad one a reject.

A batch file is read once, as a stream, and its good rows are inserted in chunks of
:data:`CHUNK` in one transaction: either every good row becomes a queued job, or (a strict
file with a bad row, too many rows, a file that cannot be read) nothing is written at all.
A row may be a chain (``steps`` in JSONL, ``prompt_2``, ``prompt_3``... in CSV): its later
steps are routed like the job API's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import IO, Any
from urllib.parse import urlsplit

from worker.database import Database
from worker.errors import (
    BatchEmpty,
    BatchRowsInvalid,
    BatchTooLarge,
    ChainInvalid,
    EditqError,
    NoProviderCanRun,
)
from worker.usecases.jobs import Jobs
from worker.values.batch_file import BatchFormat, Reject, Row, read_rows
from worker.values.canonical import ModelName
from worker.values.ids import new_id
from worker.values.quality_policy import DEFAULT_MAX_RETRIES, QualityPolicy
from worker.values.records import NewBatch, NewJob
from worker.values.routing import Routing

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
    #: How the rows' providers share them (None: the settings' default).
    routing: Routing | None = None
    #: Refuse the whole file if any row is bad.
    strict: bool = False


class BatchIngest:
    """Reads a batch file and inserts its rows, all or nothing."""

    def __init__(self, db: Database, jobs: Jobs, *, max_rows: int, max_attempts: int) -> None:
        self._db = db
        self._jobs = jobs
        self._max_rows = max_rows
        self._max_attempts = max_attempts

    def ingest(
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
        refused = self._refused(url, url, self._jobs.intake.check_callback_url, refusals)
        if refused is not None:
            return Reject(
                row.line, row.options.external_id, "callback_url", refused.code, refused.message
            )
        source = row.input.image_url
        # Addresses are a matter of the host: each host of the file is looked up once.
        host = urlsplit(source).netloc if not source.startswith("data:") else None
        refused = self._refused(host, source, self._jobs.intake.check_source, refusals)
        if refused is not None:
            return Reject(
                row.line, row.options.external_id, "image_url", refused.code, refused.message
            )
        try:
            providers = row.options.providers or options.providers
            routing = row.options.routing or options.routing or self._jobs.default_routing
            eligible, excluded = self._jobs.intake.route(model, row.input, providers, routing)
            steps = self._jobs.intake.plan_steps(model, row.input, providers, row.steps, routing)
        except (NoProviderCanRun, ChainInvalid) as exc:
            first = exc.details["fields"][0]
            return Reject(
                row.line, row.options.external_id, first["field"], first["rule"], exc.message
            )
        return NewJob(
            id=new_id(),
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
            steps=tuple(steps),
            routing=routing,
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


def _listed(rejects: Sequence[Reject]) -> dict[str, Any]:
    """An error's details for bad rows: each as a field error, and as the row it was."""
    shown = rejects[:REJECTS_SHOWN]
    fields = [
        {"field": r.field, "rule": r.rule, "message": f"line {r.line}: {r.message}"} for r in shown
    ] or [{"field": "body", "rule": "no_rows", "message": "the file has no row"}]
    return {"fields": fields, "rejected": len(rejects), "rows": [asdict(r) for r in shown]}


def _row_quality(row: Row, options: BatchOptions) -> dict[str, Any] | None:
    """A row's quality policy: its own ``quality_on_failure``, else the batch's."""
    chosen = row.options.quality_on_failure
    if chosen is None:
        return None if options.quality is None else options.quality.to_json()
    retries = options.quality.max_retries if options.quality else DEFAULT_MAX_RETRIES
    return QualityPolicy(chosen, retries).to_json()
