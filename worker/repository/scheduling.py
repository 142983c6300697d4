"""Creating jobs, dispatch, leases and the scheduler's queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import and_, any_, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert

from models.state import TRANSITIONS, JobState, Transition
from models.tables import Attempt, Job, JobEvent
from worker.records import AttemptRecord, Claimed, NewJob
from worker.repository.base import NOW, SessionBound, seconds_from_now


class Scheduling(SessionBound):
    """Inserts, claims, leases and the rows the ticks look for."""

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
            "excluded_providers": new.excluded_providers,
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

    def claim(
        self,
        provider: str,
        limit: int,
        lease_seconds: float,
        stand_in_for: Sequence[str] = (),
    ) -> list[Claimed]:
        """Claim up to ``limit`` due queued jobs for ``provider``: each gets a new attempt.

        Jobs waiting for a provider in ``stand_in_for`` (its breaker is open) that also list
        ``provider`` are taken too, and move to it: that is failover at dispatch.
        ``FOR UPDATE SKIP LOCKED`` lets a claim proceed past rows another transaction is
        changing (a cancel, say) instead of waiting on them.
        """
        mine = Job.provider == provider
        if stand_in_for:
            listed = literal(provider) == any_(Job.providers)
            mine = or_(mine, and_(Job.provider.in_(stand_in_for), listed))
        due = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, mine, Job.run_after <= NOW)
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
                provider=provider,
                attempt=Job.attempt + 1,
                lease_expires_at=seconds_from_now(lease_seconds),
                lease_token=None,
                updated_at=NOW,
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
            .values(lease_expires_at=seconds_from_now(lease_seconds))
            .returning(Job.id)
        ).first()
        return row is not None

    def resend(self, attempt: AttemptRecord, lease_seconds: float) -> bool:
        """Let an attempt whose worker vanished mid-call be sent again, with the same id.

        Only for providers that recognise a repeated attempt id; see the pipeline.
        """
        reopened = self.s.execute(
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
        self.s.execute(
            update(Job)
            .where(Job.id == job_id, Job.attempt == number, Job.state == JobState.RUNNING)
            .values(next_poll_at=seconds_from_now(in_seconds))
        )

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
                or_(Job.lease_token.is_(None), Job.lease_expires_at < NOW),
            )
            .values(
                lease_token=token, lease_expires_at=seconds_from_now(lease_seconds), updated_at=NOW
            )
            .returning(Job.id)
        ).first()
        return taken is not None

    def release_finalize_lease(self, job_id: uuid.UUID, token: uuid.UUID, delay: float) -> None:
        """Give the lease up so the reconcile tick re-runs finalize after ``delay``."""
        self.s.execute(
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
        rows = self.s.execute(
            update(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .values(next_poll_at=seconds_from_now(next_in_seconds))
            .returning(Job.id, Job.attempt)
        )
        return [(job_id, number) for job_id, number in rows]

    def expired_leases(self, limit: int) -> list[tuple[uuid.UUID, int, JobState]]:
        """Submitting or finalizing jobs whose lease ran out (a worker died, a message was lost)."""
        rows = self.s.execute(
            select(Job.id, Job.attempt, Job.state)
            .where(
                Job.state.in_((JobState.SUBMITTING, JobState.FINALIZING)),
                Job.lease_expires_at < NOW,
            )
            .order_by(Job.lease_expires_at)
            .limit(limit)
        )
        return [(job_id, number, state) for job_id, number, state in rows]
