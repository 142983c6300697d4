"""The moves producers and ops ask for: cancel one job or every one matching, retry one or
every one matching."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from models.state import IN_FLIGHT_STATES, TRANSITIONS, BatchState, JobState, Transition
from models.tables import Attempt, Batch, Job, JobEvent
from worker.faults import CANCELED, canceled_message
from worker.repository.base import OPEN_OUTCOMES
from worker.repository.reads import filter_clauses, job_from_row, job_query
from worker.repository.sql import NOW
from worker.repository.transitions import Transitions
from worker.values.observations import JobFinished
from worker.values.records import JobFilter, JobRecord


class OpsMoves(Transitions):
    """Cancel and retry; a retried chain resumes at the step it stopped on."""

    def cancel(self, job_id: uuid.UUID, reason: str | None) -> JobRecord | None:
        """Cancel a job that is not terminal; returns it as it was before, or None.

        The job's error says it was canceled, by whom and why (an earlier attempt's error is
        not its story any more), and its open attempt is closed as ``canceled``.
        """
        before = self.run(job_query(Job.id == job_id).with_for_update()).first()
        if before is None:
            return None
        job = job_from_row(before)
        attempt = self.current_attempt(job_id, job.attempt) if job.attempt else None
        closing = None
        if attempt is not None and attempt.outcome in OPEN_OUTCOMES:
            closing = (attempt.id, {"outcome": "canceled", "finished_at": NOW})
        moved = self._move(
            job_id,
            Transition.CANCEL,
            None,
            {
                "lease_expires_at": None,
                "lease_token": None,
                "next_poll_at": None,
                "completed_at": NOW,
                "error_code": CANCELED,
                "error_message": canceled_message(self.actor, reason),
            },
            reason=reason,
            attempt_update=closing,
        )
        if moved is None:
            return None
        if moved.callback_url is not None:
            self.notify_job(job_id)
        return job

    def cancel_matching(
        self, where: JobFilter, reason: str | None
    ) -> list[tuple[uuid.UUID, int, JobState]]:
        """Cancel every unfinished job matching an ops filter (see :meth:`cancel_jobs`)."""
        return self.cancel_jobs(filter_clauses(where), reason)

    def cancel_jobs(
        self,
        where: Sequence[Any],
        reason: str | None,
        error: tuple[str, str] | None = None,
    ) -> list[tuple[uuid.UUID, int, JobState]]:
        """Cancel every unfinished job matching ``where`` in one statement, with its event.

        Each job's error says it was canceled (``error`` gives another code and message, as
        a stop at the budget does), and its open attempt is closed as ``canceled``.
        """
        move = TRANSITIONS[Transition.CANCEL]
        before = (
            select(Job.id, Job.state)
            .where(Job.state.in_(move.sources), *where)
            .with_for_update()
            .cte("before")
        )
        values: dict[str, Any] = {
            "state": move.target,
            "lease_expires_at": None,
            "lease_token": None,
            "next_poll_at": None,
            "completed_at": NOW,
            "updated_at": NOW,
        }
        values["error_code"], values["error_message"] = error or (
            CANCELED,
            canceled_message(self.actor, reason),
        )
        returned = self.s.execute(
            update(Job)
            .where(Job.id == before.c.id)
            .values(values)
            .returning(Job.id, Job.attempt, before.c.state, Job.provider, Job.created_at)
        ).all()
        rows = [(job_id, attempt, state) for job_id, attempt, state, _, _ in returned]
        now = datetime.now(UTC)
        self.observed += [
            JobFinished(
                provider, move.target.value, values["error_code"], (now - at).total_seconds()
            )
            for _, _, _, provider, at in returned
        ]
        if rows:
            self.s.execute(
                insert(JobEvent),
                [
                    {
                        "job_id": job_id,
                        "transition": Transition.CANCEL.value,
                        "state": move.target,
                        "attempt": attempt,
                        "actor": self.actor,
                        "reason": reason,
                        "data": {"bulk": True},
                    }
                    for job_id, attempt, _ in rows
                ],
            )
            self.run(
                update(Attempt)
                .where(
                    tuple_(Attempt.job_id, Attempt.number).in_([(j, n) for j, n, _ in rows]),
                    Attempt.outcome.in_(OPEN_OUTCOMES),
                )
                .values(outcome="canceled", finished_at=NOW)
            )
            self.notify_jobs([job_id for job_id, _, _ in rows])
            if any(state in IN_FLIGHT_STATES for _, _, state in rows):
                self.wake_dispatch()
        return [(job_id, attempt, state) for job_id, attempt, state in rows]

    def retry(self, job_id: uuid.UUID, reason: str | None) -> bool:
        """Send a failed or canceled job round again with a fresh attempt budget."""
        moved = self._move(job_id, Transition.RETRY, None, _RETRY_VALUES, reason=reason)
        if moved is None:
            return False
        self.reopen_batches([job_id])
        return True

    def retry_matching(self, where: JobFilter, reason: str) -> list[uuid.UUID]:
        """Retry every failed or canceled job matching ``where``, in one statement.

        Each retried job gets its ``retry`` event, with ``reason``, in the same transaction.
        """
        move = TRANSITIONS[Transition.RETRY]
        rows = self.run(
            update(Job)
            .where(Job.state.in_(move.sources), *filter_clauses(where))
            .values(state=move.target, updated_at=NOW, **_RETRY_VALUES)
            .returning(Job.id, Job.attempt)
        ).all()
        if rows:
            self.run(
                insert(JobEvent),
                [
                    {
                        "job_id": job_id,
                        "transition": Transition.RETRY.value,
                        "state": move.target,
                        "attempt": attempt,
                        "actor": self.actor,
                        "reason": reason,
                        "data": {"bulk": True},
                    }
                    for job_id, attempt in rows
                ],
            )
            self.reopen_batches([job_id for job_id, _ in rows])
            self.wake_dispatch()
        return [job_id for job_id, _ in rows]

    def reopen_batches(self, job_ids: Sequence[uuid.UUID]) -> None:
        """Jobs of these batches were retried: a finished batch runs again."""
        if not job_ids:
            return
        batch_ids = select(Job.batch_id).where(Job.id.in_(job_ids), Job.batch_id.is_not(None))
        self.run(
            update(Batch)
            .where(
                Batch.id.in_(batch_ids.scalar_subquery()),
                Batch.state.in_((BatchState.FINALIZING, BatchState.COMPLETED, BatchState.CANCELED)),
            )
            .values(
                state=BatchState.RUNNING,
                cancel_requested_at=None,
                lease_expires_at=None,
                completed_at=None,
                updated_at=NOW,
            )
        )


#: What a retry resets: the job starts over on its first provider with a fresh budget (of
#: attempts and of quality retries).
_RETRY_VALUES = {
    "run_after": NOW,
    "failed_attempts": 0,
    "quality_retries": 0,
    "provider": Job.providers[1],
    "completed_at": None,
    "error_code": None,
    "error_message": None,
}
