"""Creating jobs, leases and the scheduler's queries (dispatch's own: ``dispatch.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Interval,
    bindparam,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from models.state import JobState, Transition
from models.tables import Attempt, Job, JobEvent
from worker.repository.base import SessionBound, seconds_from_now
from worker.repository.sql import NOW
from worker.values.records import AttemptRecord, NewJob

#: The states in which a job holds a lease.
_LEASED = (JobState.SUBMITTING, JobState.FINALIZING)


class Scheduling(SessionBound):
    """Inserts, claims, leases and the rows the ticks look for."""

    def insert_job(self, new: NewJob) -> bool:
        """Insert a queued job; False when its Idempotency-Key is taken already."""
        inserted = self.s.execute(
            insert(Job).values(job_values(new)).on_conflict_do_nothing().returning(Job.id)
        ).first()
        if inserted is None:
            return False
        self._created([new.id])
        self.wake_dispatch()
        return True

    def insert_jobs(self, jobs: Sequence[NewJob]) -> None:
        """Insert queued jobs in bulk (a chunk of batch rows), each with its create event."""
        if not jobs:
            return
        self.s.execute(insert(Job), [job_values(new) for new in jobs])
        self._created([new.id for new in jobs])

    def _created(self, job_ids: Sequence[uuid.UUID]) -> None:
        """The create event of each of ``job_ids``, just inserted as queued."""
        self.run(
            insert(JobEvent),
            [
                {
                    "job_id": job_id,
                    "transition": Transition.CREATE.value,
                    "state": JobState.QUEUED,
                    "attempt": 0,
                    "actor": self.actor,
                    "data": {},
                }
                for job_id in job_ids
            ],
        )

    def start_sending(self, attempt_id: uuid.UUID) -> bool:
        """Mark an attempt as being sent; False when it was sent (or is being sent) already.

        This is what keeps one attempt to one provider call: a redelivered submit message
        finds the attempt past ``pending`` and stops.
        """
        return self.run(_START_SENDING, {"s_attempt_id": attempt_id}).first() is not None

    def extend_lease(self, job_id: uuid.UUID, number: int, lease_seconds: float) -> bool:
        """Renew the lease of a submitting job whose submit message is being sent again."""
        row = self.run(
            update(Job)
            .where(Job.id == job_id, Job.attempt == number, Job.state == JobState.SUBMITTING)
            .values(lease_expires_at=seconds_from_now(lease_seconds))
            .returning(Job.id)
        ).first()
        return row is not None

    def resend(self, attempt: AttemptRecord, lease_seconds: float) -> bool:
        """Let an attempt whose worker vanished mid-call be sent again, with the same id.

        Only for providers that recognise a repeated attempt id; see the pipeline.
        """
        reopened = self.run(
            update(Attempt)
            .where(Attempt.id == attempt.id, Attempt.outcome == "sending")
            .values(outcome="pending")
            .returning(Attempt.id)
        ).first()
        return reopened is not None and self.extend_lease(
            attempt.job_id, attempt.number, lease_seconds
        )

    def schedule_poll(self, job_id: uuid.UUID, number: int, in_seconds: float) -> None:
        """Set when a running job is next asked about."""
        self.run(
            update(Job)
            .where(Job.id == job_id, Job.attempt == number, Job.state == JobState.RUNNING)
            .values(next_poll_at=seconds_from_now(in_seconds))
        )

    def take_finalize_lease(
        self, job_id: uuid.UUID, number: int, token: uuid.UUID, lease_seconds: float
    ) -> bool:
        """Take the finalize lease unless another live finalize holds it."""
        params = {
            "f_job_id": job_id,
            "f_number": number,
            "f_token": token,
            "f_lease": timedelta(seconds=lease_seconds),
        }
        return self.run(_TAKE_FINALIZE_LEASE, params).first() is not None

    def release_finalize_lease(self, job_id: uuid.UUID, token: uuid.UUID, delay: float) -> None:
        """Give the lease up so the reconcile tick re-runs finalize after ``delay``."""
        self.run(
            update(Job)
            .where(Job.id == job_id, Job.lease_token == token)
            .values(lease_expires_at=seconds_from_now(delay))
        )

    def due_polls(self, limit: int, next_in_seconds: float) -> list[tuple[uuid.UUID, int]]:
        """Running jobs due a status check; their next check is pushed back at once."""
        due = (
            select(Job.id)
            .where(Job.state == JobState.RUNNING, Job.next_poll_at <= NOW)
            .order_by(Job.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.run(
            update(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .values(next_poll_at=seconds_from_now(next_in_seconds))
            .returning(Job.id, Job.attempt)
        )
        return [(job_id, number) for job_id, number in rows]

    def record_canceled_request(
        self, attempt_id: uuid.UUID, request_id: str, provider_data: dict[str, Any]
    ) -> bool:
        """Keep the request the provider accepted for an attempt whose job was canceled meanwhile.

        The attempt was paid for, so it keeps its request id (and the handles to cancel it
        with); False when the job is not canceled, or the attempt has its request already.
        """
        row = self.run(
            update(Attempt)
            .where(
                Attempt.id == attempt_id,
                Attempt.request_id.is_(None),
                Attempt.job_id == Job.id,
                Job.state == JobState.CANCELED,
            )
            .values(request_id=request_id, provider_data=provider_data, submitted_at=NOW)
            .returning(Attempt.id)
        ).first()
        return row is not None

    def source_facts(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """What the quality gate kept of a job's source, or None."""
        facts: dict[str, Any] | None = self.s.scalar(
            select(Job.source_facts).where(Job.id == job_id)
        )
        return facts

    def refresh_result(self, attempt_id: uuid.UUID, result: dict[str, Any]) -> None:
        """Replace a finalizing attempt's result with a fresher one from the provider."""
        self.run(
            update(Attempt)
            .where(Attempt.id == attempt_id, Attempt.outcome == "finalizing")
            .values(result=result)
        )

    def renew_leases(self, held: Sequence[tuple[uuid.UUID, int]], lease_seconds: float) -> int:
        """Extend the leases of live work: ``(job id, attempt)`` pairs still submitting or
        finalizing. Returns how many were extended (a job that moved on is left alone)."""
        rows = self.run(
            update(Job)
            .where(
                tuple_(Job.id, Job.attempt).in_(list(held)),
                Job.state.in_(_LEASED),
                Job.lease_expires_at.is_not(None),
            )
            .values(lease_expires_at=seconds_from_now(lease_seconds))
            .returning(Job.id)
        ).all()
        return len(rows)

    def lease_due_now(self, job_id: uuid.UUID, number: int) -> None:
        """Let the next tick repair a job at once: its message could not be published.

        Only a lease nobody has taken (a submit not yet sent, a finalize not yet started):
        the tick then sends the message again instead of waiting out the lease.
        """
        self.run(
            update(Job)
            .where(
                Job.id == job_id,
                Job.attempt == number,
                Job.state.in_(_LEASED),
                Job.lease_token.is_(None),
            )
            .values(lease_expires_at=NOW)
        )

    def expired_leases(self, limit: int) -> list[tuple[uuid.UUID, int, JobState]]:
        """Submitting or finalizing jobs whose lease ran out (a worker died, a message was lost)."""
        rows = self.run(
            select(Job.id, Job.attempt, Job.state)
            .where(
                Job.state.in_(_LEASED),
                Job.lease_expires_at < NOW,
            )
            .order_by(Job.lease_expires_at)
            .limit(limit)
        )
        return [(job_id, number, state) for job_id, number, state in rows]


def job_values(new: NewJob) -> dict[str, Any]:
    """The column values of a new queued job."""
    return {
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
        "excluded_providers": new.excluded_providers,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "batch_id": new.batch_id,
        "quality": new.quality,
        "steps": list(new.steps),
        "callback_events": list(new.callback_events),
        "routing": new.routing,
    }


# Built once, as the statements every job runs: building one costs more CPU than running it.
_START_SENDING = (
    update(Attempt)
    .where(Attempt.id == bindparam("s_attempt_id"), Attempt.outcome == "pending")
    .values(outcome="sending")
    .returning(Attempt.id)
)
_TAKE_FINALIZE_LEASE = (
    update(Job)
    .where(
        Job.id == bindparam("f_job_id"),
        Job.state == JobState.FINALIZING,
        Job.attempt == bindparam("f_number"),
        or_(Job.lease_token.is_(None), Job.lease_expires_at < NOW),
    )
    .values(
        lease_token=bindparam("f_token"),
        lease_expires_at=NOW + bindparam("f_lease", type_=Interval),
        updated_at=NOW,
    )
    .returning(Job.id)
)
