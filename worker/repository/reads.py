"""Reading jobs, attempts, outputs and events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, or_, select

from models.state import IN_FLIGHT_STATES, JobState
from models.tables import Attempt, Job, JobEvent, JobOutput
from worker.records import (
    AttemptRecord,
    Cursor,
    EventRecord,
    JobDetail,
    JobFilter,
    JobRecord,
    OutputRecord,
)
from worker.repository.base import SessionBound


class Reads(SessionBound):
    """Queries that change nothing."""

    def job(self, job_id: uuid.UUID) -> JobRecord | None:
        """One job, or None."""
        row = self.s.get(Job, job_id)
        return None if row is None else job_record(row)

    def job_by_idempotency_key(self, key: str) -> JobRecord | None:
        """The job created with this Idempotency-Key, or None."""
        row = self.s.scalars(select(Job).where(Job.idempotency_key == key)).first()
        return None if row is None else job_record(row)

    def detail(self, job_id: uuid.UUID) -> JobDetail | None:
        """A job with its attempts, outputs and events."""
        job = self.job(job_id)
        if job is None:
            return None
        attempts = self.s.scalars(
            select(Attempt).where(Attempt.job_id == job_id).order_by(Attempt.number)
        )
        outputs = self.s.scalars(
            select(JobOutput).where(JobOutput.job_id == job_id).order_by(JobOutput.index)
        )
        events = self.s.scalars(
            select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        )
        return JobDetail(
            job,
            tuple(attempt_record(a) for a in attempts),
            tuple(output_record(o) for o in outputs),
            tuple(event_record(e) for e in events),
        )

    def attempt(self, attempt_id: uuid.UUID) -> AttemptRecord | None:
        """One attempt by our attempt id."""
        row = self.s.get(Attempt, attempt_id)
        return None if row is None else attempt_record(row)

    def job_at(
        self, job_id: uuid.UUID, number: int, state: JobState
    ) -> tuple[JobRecord, AttemptRecord] | None:
        """The job and its attempt ``number``, if the job is in ``state`` on that attempt.

        None means the message asking for this step is stale: the job moved on.
        """
        job = self.job(job_id)
        if job is None or job.state is not state or job.attempt != number:
            return None
        attempt = self.current_attempt(job_id, number)
        return None if attempt is None else (job, attempt)

    def current_attempt(self, job_id: uuid.UUID, number: int) -> AttemptRecord | None:
        """Attempt ``number`` of a job."""
        row = self.s.scalars(
            select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
        ).first()
        return None if row is None else attempt_record(row)

    def count_matching(self, where: JobFilter) -> int:
        """How many jobs match ``where``."""
        return int(self.s.scalar(select(func.count()).where(*filter_clauses(where))) or 0)

    def list_jobs(self, where: JobFilter, limit: int, after: Cursor | None) -> list[JobRecord]:
        """Jobs matching ``where``, newest first, after ``after``."""
        query = select(Job).where(*filter_clauses(where))
        if after is not None:
            query = query.where(
                or_(
                    Job.created_at < after.created_at,
                    and_(Job.created_at == after.created_at, Job.id < after.id),
                )
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return [job_record(row) for row in self.s.scalars(query)]

    def count_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        rows = self.s.execute(select(Job.state, func.count()).group_by(Job.state))
        return dict(rows.all())

    def in_flight(self) -> dict[str, int]:
        """Jobs each provider is working on (submitting or running), by provider."""
        rows = self.s.execute(
            select(Job.provider, func.count())
            .where(Job.state.in_(IN_FLIGHT_STATES))
            .group_by(Job.provider)
        )
        return {provider: count for provider, count in rows if provider}


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
    if where.until:
        clauses.append(Job.created_at < where.until)
    return clauses


def job_record(row: Job) -> JobRecord:
    """A job row as a frozen record."""
    return JobRecord(
        id=row.id,
        state=row.state,
        model=row.model,
        input=row.input,
        providers=tuple(row.providers),
        provider=row.provider,
        attempt=row.attempt,
        failed_attempts=row.failed_attempts,
        max_attempts=row.max_attempts,
        priority=row.priority,
        external_id=row.external_id,
        batch_id=row.batch_id,
        callback_url=row.callback_url,
        metadata=row.metadata_,
        excluded_providers=row.excluded_providers,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        run_after=row.run_after,
        error_code=row.error_code,
        error_message=row.error_message,
        cost_usd=row.cost_usd,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


def attempt_record(row: Attempt) -> AttemptRecord:
    """An attempt row as a frozen record."""
    return AttemptRecord(
        id=row.id,
        job_id=row.job_id,
        number=row.number,
        provider=row.provider,
        outcome=row.outcome,
        request_id=row.request_id,
        provider_data=row.provider_data,
        result=row.result,
        error_code=row.error_code,
        error_message=row.error_message,
        cost_usd=row.cost_usd,
        created_at=row.created_at,
        submitted_at=row.submitted_at,
        finished_at=row.finished_at,
    )


def output_record(row: JobOutput) -> OutputRecord:
    """An output row as a frozen record."""
    return OutputRecord(
        row.index, row.key, row.content_type, row.width, row.height, row.bytes, row.sha256
    )


def event_record(row: JobEvent) -> EventRecord:
    """An event row as a frozen record."""
    return EventRecord(
        row.at, row.transition, row.state, row.attempt, row.actor, row.reason, row.data
    )
