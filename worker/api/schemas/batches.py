"""Response bodies of ``/v1/batches`` (the request body is the file itself)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from models.state import JobState
from worker.values.batch_file import Reject
from worker.values.batch_status import BatchStatus, ResultFiles


class RowsOut(BaseModel):
    """The file's rows: read, accepted as jobs, and rejected."""

    total: int
    accepted: int
    rejected: int


class BudgetOut(BaseModel):
    """A batch's budget, and whether dispatch stopped for it."""

    usd: float
    exhausted: bool
    exhausted_at: datetime | None


class StepsOut(BaseModel):
    """A batch's progress counted in steps: each row is a chain of one or more."""

    total: int
    done: int


class BatchOut(BaseModel):
    """A batch and where its jobs are."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    state: str
    model: str
    providers: list[str]
    priority: int
    callback_url: str | None
    rows: RowsOut
    #: Jobs by state (every state, zeros included).
    counts: dict[str, int]
    done: int
    failed: int
    #: Jobs canceled: by ops, by a cancel of the batch, or at its budget (not counted as failed).
    canceled: int
    in_flight: int
    #: Steps of the batch's chains (a one-step job counts one) and how many are done.
    steps: StepsOut
    cost_usd: float
    #: Jobs finished per second over the last minute.
    rate_per_second: float
    #: Seconds until every job is finished at that rate; null until one has finished.
    eta_seconds: float | None
    budget: BudgetOut | None
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class RejectOut(BaseModel):
    """A bad row of the file: its line, the field and the rule it broke."""

    line: int
    external_id: str | None
    field: str
    rule: str
    message: str


class BatchSubmittedOut(BatchOut):
    """A batch just submitted, with its first bad rows (all are in ``errors.jsonl``)."""

    rejected_rows: list[RejectOut]


class FileOut(BaseModel):
    """One result file in the bucket, with a presigned GET URL."""

    key: str
    url: str


class ResultFilesOut(BaseModel):
    """A finished batch's ``results.jsonl`` and ``errors.jsonl``."""

    results: FileOut
    errors: FileOut
    expires_in_seconds: int


class BatchPage(BaseModel):
    """The newest batches."""

    batches: list[BatchOut]


def batch_out(status: BatchStatus) -> BatchOut:
    """A batch's status as the API shows it."""
    batch, progress = status.batch, status.progress
    budget = None
    if batch.budget_usd is not None:
        budget = BudgetOut(
            usd=float(batch.budget_usd),
            exhausted=batch.budget_exhausted_at is not None,
            exhausted_at=batch.budget_exhausted_at,
        )
    return BatchOut(
        id=str(batch.id),
        state=batch.state.value,
        model=batch.model,
        providers=list(batch.providers),
        priority=batch.priority,
        callback_url=batch.callback_url,
        rows=RowsOut(
            total=batch.rows_total, accepted=batch.rows_accepted, rejected=batch.rows_rejected
        ),
        counts={s.value: progress.counts.get(s, 0) for s in JobState},
        done=status.done,
        failed=status.failed,
        canceled=status.canceled,
        in_flight=status.in_flight,
        steps=StepsOut(total=progress.steps_total, done=progress.steps_done),
        cost_usd=float(progress.cost_usd),
        rate_per_second=round(status.rate, 3),
        eta_seconds=None if status.eta_seconds is None else round(status.eta_seconds, 1),
        budget=budget,
        cancel_requested_at=batch.cancel_requested_at,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        completed_at=batch.completed_at,
    )


def reject_out(reject: Reject) -> RejectOut:
    """A bad row as the API shows it."""
    return RejectOut(
        line=reject.line,
        external_id=reject.external_id,
        field=reject.field,
        rule=reject.rule,
        message=reject.message,
    )


def files_out(files: ResultFiles) -> ResultFilesOut:
    """Where a finished batch's result files are."""
    return ResultFilesOut(
        results=FileOut(key=files.results_key, url=files.results_url),
        errors=FileOut(key=files.errors_key, url=files.errors_url),
        expires_in_seconds=files.expires_in_seconds,
    )
