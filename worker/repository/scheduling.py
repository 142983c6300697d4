"""Creating jobs, dispatch, leases and the scheduler's queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    Interval,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    exists,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert

from models.state import TRANSITIONS, BatchState, JobState, Transition
from models.tables import Attempt, Batch, Job, JobEvent
from worker.records import AttemptRecord, Candidate, Claimed, NewJob
from worker.repository.base import NOW, SessionBound, seconds_from_now


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

    # -- dispatch -------------------------------------------------------------------------

    def lock_dispatch(self) -> None:
        """Serialise dispatchers for this transaction, so capacity is never over-claimed."""
        self.run(text("SELECT pg_advisory_xact_lock(hashtext('editq.dispatch'))"))

    def waiting_for(self, providers: Sequence[str]) -> set[str]:
        """The providers of ``providers`` that have a queued job waiting for them, due or not.

        One index probe each: a dispatch round skips the due queries of a provider nobody
        waits for, which in a one-provider deployment are most of a round's statements.
        """
        return set(self.run(_WAITING, {"names": list(providers)}).scalars())

    def due(self, provider: str, limit: int, stand_in_for: Sequence[str] = ()) -> list[Candidate]:
        """Up to ``limit`` due queued jobs for ``provider``, locked, in fair order.

        Fair order is priority first, then round-robin: the first job of every running
        batch (and of the jobs in no batch), then the second of each, and so on; so one
        10,000-row batch does not hold back an interactive job or another batch.

        Jobs waiting for a provider in ``stand_in_for`` (its breaker is open) that also list
        ``provider`` are taken too: that is failover at dispatch. ``FOR UPDATE SKIP LOCKED``
        lets dispatch proceed past rows another transaction is changing (a cancel, say).
        """
        params = {"due_provider": provider, "due_others": list(stand_in_for), "due_limit": limit}
        rows = [*self.run(_DUE_UNBATCHED, params), *self.run(_DUE_BATCHED, params)]
        rows.sort(key=lambda r: (-r.priority, r.run_after, r.created_at))
        turn: dict[uuid.UUID | None, int] = {}
        ranked: list[tuple[int, int, Candidate]] = []
        for job_id, batch_id, priority, _, _, model, num_images in rows:
            turn[batch_id] = turn.get(batch_id, -1) + 1
            ranked.append(
                (-priority, turn[batch_id], Candidate(job_id, batch_id, model, num_images or 1))
            )
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [candidate for _, _, candidate in ranked[:limit]]

    def claim(self, provider: str, ids: Sequence[uuid.UUID], lease_seconds: float) -> list[Claimed]:
        """Claim the locked due jobs ``ids`` for ``provider``: each gets a new attempt."""
        if not ids:
            return []
        move = TRANSITIONS[Transition.CLAIM]
        rows = self.run(
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
        if not rows:
            return []
        claimed = [Claimed(job_id, number, uuid.uuid4(), provider) for job_id, number in rows]
        self.run(
            insert(Attempt),
            [
                {"id": c.attempt_id, "job_id": c.job_id, "number": c.attempt, "provider": provider}
                for c in claimed
            ],
        )
        self.run(
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

    def expired_leases(self, limit: int) -> list[tuple[uuid.UUID, int, JobState]]:
        """Submitting or finalizing jobs whose lease ran out (a worker died, a message was lost)."""
        rows = self.run(
            select(Job.id, Job.attempt, Job.state)
            .where(
                Job.state.in_((JobState.SUBMITTING, JobState.FINALIZING)),
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
    }


def _due_statements() -> tuple[Select[Any], Select[Any]]:
    """The due jobs in no batch, and the head of each running batch's due jobs.

    Built once, with the provider, the providers it stands in for, and the limit as
    parameters: building the lateral join costs more CPU than running it.
    """
    provider = bindparam("due_provider", type_=Text)
    others = bindparam("due_others", type_=ARRAY(Text))
    mine = or_(
        Job.provider == provider,
        and_(Job.provider == any_(others), provider == any_(Job.providers)),
    )
    columns = (
        Job.id,
        Job.batch_id,
        Job.priority,
        Job.run_after,
        Job.created_at,
        Job.model,
        Job.input["num_images"].as_integer(),
    )

    def head(*where: Any) -> Select[Any]:
        return (
            select(*columns)
            .where(Job.state == JobState.QUEUED, mine, Job.run_after <= NOW, *where)
            .order_by(Job.priority.desc(), Job.run_after, Job.created_at)
            .limit(bindparam("due_limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )

    running = select(Batch.id).where(Batch.state == BatchState.RUNNING).subquery()
    per_batch = head(Job.batch_id == running.c.id).lateral()
    return (
        head(Job.batch_id.is_(None)),
        select(per_batch).select_from(running.join(per_batch, true())),
    )


_DUE_UNBATCHED, _DUE_BATCHED = _due_statements()


def _waiting_statement() -> Select[Any]:
    # One EXISTS probe of (state, provider) per name, not a scan of every queued job.
    names = (
        func.unnest(bindparam("names", type_=ARRAY(Text)))
        .table_valued("name")
        .render_derived(name="p")
    )
    queued = exists().where(Job.state == JobState.QUEUED, Job.provider == names.c.name)
    return select(names.c.name).where(queued)


_WAITING = _waiting_statement()

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
