"""Every SQL statement editq runs, and the named guarded transitions.

A transition is one ``UPDATE jobs ... WHERE id = :id AND state IN (:sources) [AND attempt
= :n] RETURNING`` plus an ``INSERT INTO job_events`` in the same transaction. Zero rows
updated is an expected outcome (a duplicate message, a late webhook, a lost race) and is
returned as ``False``, never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.state import IN_FLIGHT_STATES, TRANSITIONS, JobState, Transition
from models.tables import Attempt, Job, JobEvent, JobOutput
from worker.providers.base import Fault
from worker.records import (
    AttemptRecord,
    Claimed,
    Cursor,
    EventRecord,
    JobDetail,
    JobFilter,
    JobRecord,
    NewJob,
    OutputRecord,
)

_NOW = func.now()


def _seconds(value: float) -> Any:
    return _NOW + timedelta(seconds=value)


class Repository:
    """SQL over one session; the caller owns the transaction."""

    def __init__(self, session: Session, actor: str) -> None:
        self.s = session
        #: Recorded on every event this repository writes (``api``, ``worker``, ...).
        self.actor = actor

    # -- reading --------------------------------------------------------------------------

    def job(self, job_id: uuid.UUID) -> JobRecord | None:
        """One job, or None."""
        row = self.s.get(Job, job_id)
        return None if row is None else _job_record(row)

    def job_by_idempotency_key(self, key: str) -> JobRecord | None:
        """The job created with this Idempotency-Key, or None."""
        row = self.s.scalars(select(Job).where(Job.idempotency_key == key)).first()
        return None if row is None else _job_record(row)

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
            tuple(_attempt_record(a) for a in attempts),
            tuple(_output_record(o) for o in outputs),
            tuple(_event_record(e) for e in events),
        )

    def attempt(self, attempt_id: uuid.UUID) -> AttemptRecord | None:
        """One attempt by our attempt id."""
        row = self.s.get(Attempt, attempt_id)
        return None if row is None else _attempt_record(row)

    def start_sending(self, attempt_id: uuid.UUID) -> bool:
        """Mark an attempt as being sent; False when it was sent (or is being sent) already.

        This is what keeps one attempt to one provider call: a redelivered submit message
        finds the attempt past ``pending`` and stops.
        """
        row = self.s.execute(
            update(Attempt)
            .where(Attempt.id == attempt_id, Attempt.outcome == "pending")
            .values(outcome="sending")
            .returning(Attempt.id)
        ).first()
        return row is not None

    def extend_lease(self, job_id: uuid.UUID, number: int, lease_seconds: float) -> bool:
        """Renew the lease of a submitting job whose submit message is being sent again."""
        row = self.s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == number, Job.state == JobState.SUBMITTING)
            .values(lease_expires_at=_seconds(lease_seconds))
            .returning(Job.id)
        ).first()
        return row is not None

    def schedule_poll(self, job_id: uuid.UUID, number: int, in_seconds: float) -> None:
        """Set when a running job is next asked about."""
        self.s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == number, Job.state == JobState.RUNNING)
            .values(next_poll_at=_seconds(in_seconds))
        )

    def abandon(self, attempt: AttemptRecord, fault: Fault) -> bool:
        """Requeue a job whose submitting worker vanished, without counting the attempt."""
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            {"run_after": _NOW, "lease_expires_at": None, "lease_token": None},
            reason=fault.code,
            data={"kind": fault.kind.value},
        )
        if moved:
            self._finish_attempt(attempt.id, "abandoned", fault)
        return moved

    def current_attempt(self, job_id: uuid.UUID, number: int) -> AttemptRecord | None:
        """Attempt ``number`` of a job."""
        row = self.s.scalars(
            select(Attempt).where(Attempt.job_id == job_id, Attempt.number == number)
        ).first()
        return None if row is None else _attempt_record(row)

    def list_jobs(self, where: JobFilter, limit: int, after: Cursor | None) -> list[JobRecord]:
        """Jobs matching ``where``, newest first, after ``after``."""
        query = select(Job).where(*_filter_clauses(where))
        if after is not None:
            query = query.where(
                or_(
                    Job.created_at < after.created_at,
                    and_(Job.created_at == after.created_at, Job.id < after.id),
                )
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        return [_job_record(row) for row in self.s.scalars(query)]

    def count_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        rows = self.s.execute(select(Job.state, func.count()).group_by(Job.state))
        return dict(rows)

    def in_flight(self) -> dict[str, int]:
        """Jobs each provider is working on (submitting or running), by provider."""
        rows = self.s.execute(
            select(Job.provider, func.count())
            .where(Job.state.in_(IN_FLIGHT_STATES))
            .group_by(Job.provider)
        )
        return {provider: count for provider, count in rows if provider}

    # -- creating -------------------------------------------------------------------------

    def insert_job(self, new: NewJob) -> bool:
        """Insert a queued job; False when its Idempotency-Key is taken already."""
        values = {
            "id": new.id,
            "state": JobState.QUEUED,
            "model": new.model,
            "input": new.input,
            "providers": list(new.providers),
            "provider": new.providers[0],
            "max_attempts": new.max_attempts,
            "priority": new.priority,
            "external_id": new.external_id,
            "callback_url": new.callback_url,
            "metadata_": new.metadata,
            "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash,
        }
        inserted = self.s.execute(
            insert(Job).values(values).on_conflict_do_nothing().returning(Job.id)
        ).first()
        if inserted is None:
            return False
        self._event(new.id, Transition.CREATE, JobState.QUEUED, 0)
        return True

    # -- dispatch -------------------------------------------------------------------------

    def lock_dispatch(self) -> None:
        """Serialise dispatchers for this transaction, so capacity is never over-claimed."""
        self.s.execute(text("SELECT pg_advisory_xact_lock(hashtext('editq.dispatch'))"))

    def claim(self, provider: str, limit: int, lease_seconds: float) -> list[Claimed]:
        """Claim up to ``limit`` due queued jobs for ``provider``: each gets a new attempt.

        ``FOR UPDATE SKIP LOCKED`` lets a claim proceed past rows another transaction is
        changing (a cancel, say) instead of waiting on them.
        """
        due = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, Job.provider == provider, Job.run_after <= _NOW)
            .order_by(Job.priority.desc(), Job.run_after, Job.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list(self.s.scalars(due))
        if not ids:
            return []
        move = TRANSITIONS[Transition.CLAIM]
        rows = self.s.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.state.in_(move.sources))
            .values(
                state=move.target,
                attempt=Job.attempt + 1,
                lease_expires_at=_seconds(lease_seconds),
                lease_token=None,
                updated_at=_NOW,
            )
            .returning(Job.id, Job.attempt)
        ).all()
        claimed = [Claimed(job_id, number, uuid.uuid4(), provider) for job_id, number in rows]
        self.s.execute(
            insert(Attempt),
            [
                {"id": c.attempt_id, "job_id": c.job_id, "number": c.attempt, "provider": provider}
                for c in claimed
            ],
        )
        self.s.execute(
            insert(JobEvent),
            [
                {
                    "job_id": c.job_id,
                    "transition": Transition.CLAIM.value,
                    "state": move.target,
                    "attempt": c.attempt,
                    "actor": self.actor,
                    "data": {"provider": provider, "attempt_id": str(c.attempt_id)},
                }
                for c in claimed
            ],
        )
        return claimed

    # -- named guarded transitions ---------------------------------------------------------

    def mark_running(
        self,
        attempt: AttemptRecord,
        request_id: str,
        provider_data: dict[str, Any],
        poll_in_seconds: float,
    ) -> bool:
        """The provider accepted ``attempt`` as ``request_id``."""
        moved = self._move(
            attempt.job_id,
            Transition.MARK_RUNNING,
            attempt.number,
            {"lease_expires_at": None, "next_poll_at": _seconds(poll_in_seconds)},
            data={"request_id": request_id},
        )
        if moved:
            self._update_attempt(
                attempt.id,
                outcome="running",
                request_id=request_id,
                provider_data=provider_data,
                submitted_at=_NOW,
            )
        return moved

    def begin_finalize(
        self,
        attempt: AttemptRecord,
        request_id: str | None,
        result: dict[str, Any],
        lease_seconds: float,
    ) -> bool:
        """The provider finished ``attempt`` with ``result``; finalize may take the job."""
        moved = self._move(
            attempt.job_id,
            Transition.BEGIN_FINALIZE,
            attempt.number,
            {
                "lease_expires_at": _seconds(lease_seconds),
                "lease_token": None,
                "next_poll_at": None,
            },
        )
        if moved:
            values: dict[str, Any] = {"result": result, "outcome": "finalizing"}
            if request_id and attempt.request_id is None:
                values["request_id"] = request_id
            self._update_attempt(attempt.id, **values)
        return moved

    def take_finalize_lease(
        self, job_id: uuid.UUID, number: int, token: uuid.UUID, lease_seconds: float
    ) -> bool:
        """Take the finalize lease unless another live finalize holds it."""
        taken = self.s.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.state == JobState.FINALIZING,
                Job.attempt == number,
                or_(Job.lease_token.is_(None), Job.lease_expires_at < _NOW),
            )
            .values(lease_token=token, lease_expires_at=_seconds(lease_seconds), updated_at=_NOW)
            .returning(Job.id)
        ).first()
        return taken is not None

    def release_finalize_lease(self, job_id: uuid.UUID, token: uuid.UUID, delay: float) -> None:
        """Give the lease up so the reconcile tick re-runs finalize after ``delay``."""
        self.s.execute(
            update(Job)
            .where(Job.id == job_id, Job.lease_token == token)
            .values(lease_expires_at=_seconds(delay))
        )

    def succeed(
        self,
        attempt: AttemptRecord,
        token: uuid.UUID,
        outputs: Sequence[OutputRecord],
        cost_usd: Decimal,
    ) -> bool:
        """Every output is stored: record them and finish the job (once)."""
        moved = self._move(
            attempt.job_id,
            Transition.SUCCEED,
            attempt.number,
            {
                "lease_expires_at": None,
                "lease_token": None,
                "completed_at": _NOW,
                "error_code": None,
                "error_message": None,
                "cost_usd": Job.cost_usd + cost_usd,
            },
            extra_where=(Job.lease_token == token,),
            data={"outputs": len(outputs)},
        )
        if moved:
            self.s.execute(
                insert(JobOutput),
                [
                    {
                        "job_id": attempt.job_id,
                        "index": o.index,
                        "key": o.key,
                        "content_type": o.content_type,
                        "width": o.width,
                        "height": o.height,
                        "bytes": o.bytes,
                        "sha256": o.sha256,
                    }
                    for o in outputs
                ],
            )
            self._update_attempt(
                attempt.id, outcome="succeeded", finished_at=_NOW, cost_usd=cost_usd
            )
        return moved

    def requeue(
        self,
        attempt: AttemptRecord,
        fault: Fault,
        delay_seconds: float,
        *,
        counts: bool,
        next_provider: str,
    ) -> bool:
        """Send the job back to the queue after a failed attempt."""
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            {
                "run_after": _seconds(delay_seconds),
                "failed_attempts": Job.failed_attempts + (1 if counts else 0),
                "provider": next_provider,
                "lease_expires_at": None,
                "lease_token": None,
                "next_poll_at": None,
                "error_code": fault.code,
                "error_message": fault.message,
            },
            reason=fault.code,
            data={"kind": fault.kind.value, "delay_seconds": round(delay_seconds, 3)},
        )
        if moved:
            self._finish_attempt(attempt.id, "failed", fault)
        return moved

    def fail(self, attempt: AttemptRecord, fault: Fault) -> bool:
        """Fail the job for good with ``fault``."""
        moved = self._move(
            attempt.job_id,
            Transition.FAIL,
            attempt.number,
            {
                "lease_expires_at": None,
                "lease_token": None,
                "next_poll_at": None,
                "completed_at": _NOW,
                "failed_attempts": Job.failed_attempts + 1,
                "error_code": fault.code,
                "error_message": fault.message,
            },
            reason=fault.code,
            data={"kind": fault.kind.value},
        )
        if moved:
            self._finish_attempt(attempt.id, "failed", fault)
        return moved

    def cancel(self, job_id: uuid.UUID, reason: str | None) -> JobRecord | None:
        """Cancel a job that is not terminal; returns it as it was before, or None."""
        before = self.s.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if before is None:
            return None
        record = _job_record(before)
        moved = self._move(
            job_id,
            Transition.CANCEL,
            None,
            {
                "lease_expires_at": None,
                "lease_token": None,
                "next_poll_at": None,
                "completed_at": _NOW,
            },
            reason=reason,
        )
        return record if moved else None

    def retry(self, job_id: uuid.UUID, reason: str | None) -> bool:
        """Send a failed or canceled job round again with a fresh attempt budget."""
        return self._move(
            job_id,
            Transition.RETRY,
            None,
            {
                "run_after": _NOW,
                "failed_attempts": 0,
                "provider": Job.providers[1],
                "completed_at": None,
                "error_code": None,
                "error_message": None,
            },
            reason=reason,
        )

    # -- ticks ----------------------------------------------------------------------------

    def due_polls(self, limit: int, next_in_seconds: float) -> list[tuple[uuid.UUID, int]]:
        """Running jobs due a status check; their next check is pushed back at once."""
        due = (
            select(Job.id)
            .where(Job.state == JobState.RUNNING, Job.next_poll_at <= _NOW)
            .order_by(Job.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.s.execute(
            update(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .values(next_poll_at=_seconds(next_in_seconds))
            .returning(Job.id, Job.attempt)
        )
        return [(job_id, number) for job_id, number in rows]

    def expired_leases(self, limit: int) -> list[tuple[uuid.UUID, int, JobState]]:
        """Submitting or finalizing jobs whose lease ran out (a worker died, a message was lost)."""
        rows = self.s.execute(
            select(Job.id, Job.attempt, Job.state)
            .where(
                Job.state.in_((JobState.SUBMITTING, JobState.FINALIZING)),
                Job.lease_expires_at < _NOW,
            )
            .order_by(Job.lease_expires_at)
            .limit(limit)
        )
        return [(job_id, number, state) for job_id, number, state in rows]

    # -- helpers --------------------------------------------------------------------------

    def _move(
        self,
        job_id: uuid.UUID,
        transition: Transition,
        attempt: int | None,
        values: dict[str, Any],
        *,
        extra_where: Iterable[Any] = (),
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        move = TRANSITIONS[transition]
        query = update(Job).where(Job.id == job_id, Job.state.in_(move.sources), *extra_where)
        if attempt is not None:
            query = query.where(Job.attempt == attempt)
        row = self.s.execute(
            query.values(state=move.target, updated_at=_NOW, **values).returning(Job.attempt)
        ).first()
        if row is None:
            return False
        self._event(job_id, transition, move.target, row.attempt, reason, data)
        return True

    def _event(
        self,
        job_id: uuid.UUID,
        transition: Transition,
        state: JobState,
        attempt: int,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.s.execute(
            insert(JobEvent).values(
                job_id=job_id,
                transition=transition.value,
                state=state,
                attempt=attempt,
                actor=self.actor,
                reason=reason,
                data=data or {},
            )
        )

    def _update_attempt(self, attempt_id: uuid.UUID, **values: Any) -> None:
        self.s.execute(update(Attempt).where(Attempt.id == attempt_id).values(**values))

    def _finish_attempt(self, attempt_id: uuid.UUID, outcome: str, fault: Fault) -> None:
        self._update_attempt(
            attempt_id,
            outcome=outcome,
            error_code=fault.code,
            error_message=fault.message,
            finished_at=_NOW,
        )


def _filter_clauses(where: JobFilter) -> list[Any]:
    clauses: list[Any] = []
    if where.states:
        clauses.append(Job.state.in_(where.states))
    if where.provider:
        clauses.append(Job.provider == where.provider)
    if where.error_code:
        clauses.append(Job.error_code == where.error_code)
    if where.since:
        clauses.append(Job.created_at >= where.since)
    if where.until:
        clauses.append(Job.created_at < where.until)
    return clauses


def _job_record(row: Job) -> JobRecord:
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
        callback_url=row.callback_url,
        metadata=row.metadata_,
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


def _attempt_record(row: Attempt) -> AttemptRecord:
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


def _output_record(row: JobOutput) -> OutputRecord:
    return OutputRecord(
        row.index, row.key, row.content_type, row.width, row.height, row.bytes, row.sha256
    )


def _event_record(row: JobEvent) -> EventRecord:
    return EventRecord(
        row.at, row.transition, row.state, row.attempt, row.actor, row.reason, row.data
    )
