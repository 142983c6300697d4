"""Reading jobs, attempts, outputs and events."""

from __future__ import annotations

import uuid
from dataclasses import fields
from typing import Any

from sqlalchemy import Row, Select, and_, bindparam, func, select, tuple_

from models.state import IN_FLIGHT_STATES, BatchState, JobState
from models.tables import Attempt, Batch, Callback, Job, JobEvent, JobOutput
from worker.repository.base import SessionBound
from worker.values import chain
from worker.values.records import (
    AttemptRecord,
    Cursor,
    EventRecord,
    JobDetail,
    JobFilter,
    JobRecord,
    OutputRecord,
    QueueFigures,
)


class Reads(SessionBound):
    """Queries that change nothing."""

    def job(self, job_id: uuid.UUID) -> JobRecord | None:
        """One job, or None."""
        row = self.run(_JOB, {"job_id": job_id}).first()
        return None if row is None else job_from_row(row)

    def job_by_idempotency_key(self, key: str) -> JobRecord | None:
        """The job created with this Idempotency-Key, or None."""
        row = self.run(job_query(Job.idempotency_key == key)).first()
        return None if row is None else job_from_row(row)

    def detail(self, job_id: uuid.UUID) -> JobDetail | None:
        """A job with its attempts, outputs and events."""
        job = self.job(job_id)
        if job is None:
            return None
        attempts = self.run(
            select(*ATTEMPT_COLUMNS).where(Attempt.job_id == job_id).order_by(Attempt.number)
        )
        outputs = self.s.scalars(
            select(JobOutput)
            .where(JobOutput.job_id == job_id)
            .order_by(JobOutput.step, JobOutput.index)
        )
        events = self.s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        return JobDetail(
            job,
            tuple(attempt_from_row(a) for a in attempts),
            tuple(output_record(o) for o in outputs),
            tuple(event_record(e) for e in events),
        )

    def attempt_with_job(self, attempt_id: uuid.UUID) -> tuple[JobRecord, AttemptRecord] | None:
        """An attempt by our attempt id, with its job."""
        row = self.run(_ATTEMPT_WITH_JOB, {"attempt_id": attempt_id}).first()
        return None if row is None else (job_from_row(row), attempt_from_row(row))

    def job_at(
        self, job_id: uuid.UUID, number: int, state: JobState
    ) -> tuple[JobRecord, AttemptRecord] | None:
        """The job and its attempt ``number``, if the job is in ``state`` on that attempt.

        None means the message asking for this step is stale: the job moved on.
        """
        row = self.run(_JOB_AT, {"job_id": job_id, "state": state, "number": number}).first()
        return None if row is None else (job_from_row(row), attempt_from_row(row))

    def step_source(self, job: JobRecord) -> OutputRecord | None:
        """The stored output of the step before that the step ``job`` is on edits."""
        row = self.s.scalars(
            select(JobOutput).where(
                JobOutput.job_id == job.id,
                JobOutput.step == job.step - 1,
                JobOutput.index == chain.source_output(job.steps, job.step),
            )
        ).first()
        return None if row is None else output_record(row)

    def current_attempt(self, job_id: uuid.UUID, number: int) -> AttemptRecord | None:
        """Attempt ``number`` of a job."""
        row = self.run(
            select(*ATTEMPT_COLUMNS).where(Attempt.job_id == job_id, Attempt.number == number)
        ).first()
        return None if row is None else attempt_from_row(row)

    def count_matching(self, where: JobFilter) -> int:
        """How many jobs match ``where``."""
        return int(self.s.scalar(select(func.count()).where(*filter_clauses(where))) or 0)

    def list_jobs(self, where: JobFilter, limit: int, after: Cursor | None) -> list[JobRecord]:
        """Jobs matching ``where``, newest first, after ``after``."""
        query = job_query(*filter_clauses(where))
        if after is not None:
            # A row comparison, which PostgreSQL takes as where to start in the index: the
            # same test as "older, or as old with a lower id", which it can only apply to
            # each row it reads, so page n of a batch (whose rows share their creation
            # time) read all n - 1 pages before it again.
            query = query.where(tuple_(Job.created_at, Job.id) < (after.created_at, after.id))
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return [job_from_row(row) for row in self.run(query)]

    def count_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        rows = self.s.execute(select(Job.state, func.count()).group_by(Job.state))
        return dict(rows.all())

    def running_at(self, provider: str) -> int:
        """Jobs ``provider`` has accepted and not yet finished (its own view of in flight)."""
        query = select(func.count()).where(Job.state == JobState.RUNNING, Job.provider == provider)
        return int(self.s.scalar(query) or 0)

    def in_flight(self) -> dict[str, int]:
        """Jobs each provider is working on (submitting or running), by provider."""
        return {provider: count for provider, count in self.run(_IN_FLIGHT) if provider}

    def queue_figures(self) -> QueueFigures:
        """Queued jobs by provider, the oldest due one, running batches, pending callbacks."""
        queued = {provider: count for provider, count in self.run(_QUEUED) if provider}
        oldest, batches, callbacks = self.run(_WAITING_WORK).one()
        return QueueFigures(queued, oldest, int(batches), int(callbacks))


def filter_clauses(where: JobFilter) -> list[Any]:
    """The WHERE clauses of a job filter."""
    clauses: list[Any] = []
    if where.states:
        clauses.append(Job.state.in_(where.states))
    if where.batch_id:
        clauses.append(Job.batch_id == where.batch_id)
    if where.provider:
        clauses.append(Job.provider == where.provider)
    if where.error_code:
        clauses.append(Job.error_code == where.error_code)
    if where.since:
        clauses.append(Job.created_at >= where.since)
    if where.external_id:
        clauses.append(Job.external_id == where.external_id)
    if where.metadata:
        clauses.append(Job.metadata_.contains(where.metadata))
    if where.until:
        clauses.append(Job.created_at < where.until)
    return clauses


#: A job's columns, each labelled with its :class:`JobRecord` field name.
JOB_COLUMNS = tuple(
    getattr(Job, "metadata_" if f.name == "metadata" else f.name).label(f.name)
    for f in fields(JobRecord)
)

#: An attempt's columns, labelled ``attempt_<field>`` so they can sit beside a job's.
ATTEMPT_COLUMNS = tuple(
    getattr(Attempt, f.name).label(f"attempt_{f.name}") for f in fields(AttemptRecord)
)


def job_query(*where: Any) -> Select[Any]:
    """``SELECT`` a job's columns ``WHERE`` all of ``where``."""
    return select(*JOB_COLUMNS).where(*where)


def job_from_row(row: Row[Any]) -> JobRecord:
    """A row holding :data:`JOB_COLUMNS` as a frozen record."""
    values = {f.name: getattr(row, f.name) for f in fields(JobRecord)}
    values["providers"] = tuple(values["providers"])
    values["steps"] = tuple(values["steps"])
    values["callback_events"] = tuple(values["callback_events"])
    return JobRecord(**values)


def attempt_from_row(row: Row[Any]) -> AttemptRecord:
    """A row holding :data:`ATTEMPT_COLUMNS` as a frozen record."""
    return AttemptRecord(
        **{f.name: getattr(row, f"attempt_{f.name}") for f in fields(AttemptRecord)}
    )


def output_record(row: JobOutput) -> OutputRecord:
    """An output row as a frozen record."""
    return OutputRecord(
        row.index,
        row.key,
        row.content_type,
        row.width,
        row.height,
        row.bytes,
        row.sha256,
        row.quality,
        row.step,
    )


def event_record(row: JobEvent) -> EventRecord:
    """An event row as a frozen record."""
    return EventRecord(
        row.at, row.transition, row.state, row.attempt, row.actor, row.reason, row.data
    )


# The hot reads, built once. Building a statement of forty labelled columns costs more CPU
# than running it, and a statement reused finds its compiled form in the cache at once.
_JOB = job_query(Job.id == bindparam("job_id"))
_JOB_AT = (
    job_query(
        Job.id == bindparam("job_id"),
        Job.state == bindparam("state"),
        Job.attempt == bindparam("number"),
    )
    .add_columns(*ATTEMPT_COLUMNS)
    .join(Attempt, and_(Attempt.job_id == Job.id, Attempt.number == bindparam("number")))
)
_IN_FLIGHT = (
    select(Job.provider, func.count()).where(Job.state.in_(IN_FLIGHT_STATES)).group_by(Job.provider)
)
#: A batch that has not finished: being read, running, or writing its result files.
_OPEN_BATCHES = (BatchState.VALIDATING, BatchState.RUNNING, BatchState.FINALIZING)
_QUEUED = (
    select(Job.provider, func.count()).where(Job.state == JobState.QUEUED).group_by(Job.provider)
)
_WAITING_WORK = select(
    select(func.min(Job.run_after))
    .where(Job.state == JobState.QUEUED, Job.run_after <= func.now())
    .scalar_subquery(),
    select(func.count()).select_from(Batch).where(Batch.state.in_(_OPEN_BATCHES)).scalar_subquery(),
    select(func.count()).select_from(Callback).where(Callback.state == "pending").scalar_subquery(),
)
_ATTEMPT_WITH_JOB = (
    job_query(Attempt.id == bindparam("attempt_id"))
    .add_columns(*ATTEMPT_COLUMNS)
    .join(Attempt, Attempt.job_id == Job.id)
)
