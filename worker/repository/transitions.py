"""The named guarded transitions: each moves a job along one edge of the lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from models.state import TRANSITIONS, BatchState, Transition
from models.tables import Batch, Job, JobEvent, JobOutput
from worker.faults import CANCELED, Fault, canceled_message
from worker.repository.base import NOW, OPEN_OUTCOMES, FromNow, Plus, finished_attempt
from worker.repository.callbacks import CallbackRows
from worker.repository.reads import Reads, filter_clauses, job_from_row, job_query
from worker.values.records import (
    AttemptRecord,
    JobFilter,
    JobRecord,
    OutputRecord,
    Rejection,
)


class Transitions(CallbackRows, Reads):
    """One method per transition of :data:`models.state.TRANSITIONS`.

    Those that end a job write its producer callback (if it has a ``callback_url``) in the
    same transaction: the outbox, so a finished job never misses its event.
    """

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
            {"lease_expires_at": None, "next_poll_at": FromNow(poll_in_seconds)},
            data={"request_id": request_id},
            attempt_update=(
                attempt.id,
                {
                    "outcome": "running",
                    "request_id": request_id,
                    "provider_data": provider_data,
                    "submitted_at": NOW,
                },
            ),
        )
        return moved is not None

    def begin_finalize(
        self,
        attempt: AttemptRecord,
        request_id: str | None,
        result: dict[str, Any],
        lease_seconds: float,
    ) -> bool:
        """The provider finished ``attempt`` with ``result``; finalize may take the job."""
        values: dict[str, Any] = {"result": result, "outcome": "finalizing"}
        if request_id and attempt.request_id is None:
            values["request_id"] = request_id
        moved = self._move(
            attempt.job_id,
            Transition.BEGIN_FINALIZE,
            attempt.number,
            {
                "lease_expires_at": FromNow(lease_seconds),
                "lease_token": None,
                "next_poll_at": None,
            },
            attempt_update=(attempt.id, values),
        )
        return moved is not None

    def succeed(
        self,
        attempt: AttemptRecord,
        token: uuid.UUID,
        outputs: Sequence[OutputRecord],
        cost_usd: Decimal,
        reports: list[dict[str, Any]] | None = None,
        source_facts: dict[str, Any] | None = None,
    ) -> bool:
        """Every output is stored: record them and finish the job (once).

        ``reports`` are the quality gate's, kept on the attempt (None: the gate was off);
        ``source_facts``, what it read of the source just now, on the job.
        """
        values: dict[str, Any] = {
            "lease_expires_at": None,
            "lease_token": None,
            "completed_at": NOW,
            "error_code": None,
            "error_message": None,
            "cost_usd": Plus(cost_usd),
        }
        if source_facts is not None:
            values["source_facts"] = source_facts
        moved = self._move(
            attempt.job_id,
            Transition.SUCCEED,
            attempt.number,
            values,
            lease_token=token,
            data={"outputs": len(outputs)},
            attempt_update=(
                attempt.id,
                {
                    "outcome": "succeeded",
                    "finished_at": NOW,
                    "cost_usd": cost_usd,
                    "quality": reports,
                },
            ),
        )
        if moved is None:
            return False
        if outputs:
            self.run(
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
                        "quality": o.quality,
                    }
                    for o in outputs
                ],
            )
        if moved.callback_url is not None:
            self.notify_job(attempt.job_id)
        return True

    def requeue(
        self,
        attempt: AttemptRecord,
        fault: Fault,
        delay_seconds: float,
        *,
        counts: bool,
        next_provider: str,
        details: Mapping[str, Any] | None = None,
        rejection: Rejection | None = None,
    ) -> bool:
        """Send the job back to the queue after a failed attempt; ``details`` join its event.

        A ``rejection`` (outputs the quality gate refused) charges the attempt's cost to the
        job and uses up one of its quality retries.
        """
        job_values: dict[str, Any] = {
            "run_after": FromNow(delay_seconds),
            "failed_attempts": Plus(1 if counts else 0),
            "provider": next_provider,
            "lease_expires_at": None,
            "lease_token": None,
            "next_poll_at": None,
            "error_code": fault.code,
            "error_message": fault.message,
        }
        if rejection is not None:
            job_values["quality_retries"] = Plus(1)
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            _charged(job_values, rejection),
            reason=fault.code,
            data={
                "kind": fault.kind.value,
                "delay_seconds": round(delay_seconds, 3),
                **(details or {}),
            },
            attempt_update=(attempt.id, _rejected(finished_attempt("failed", fault), rejection)),
        )
        return moved is not None

    def fail(
        self,
        attempt: AttemptRecord,
        fault: Fault,
        details: Mapping[str, Any] | None = None,
        rejection: Rejection | None = None,
    ) -> bool:
        """Fail the job for good with ``fault`` (a ``rejection`` charges its cost)."""
        moved = self._move(
            attempt.job_id,
            Transition.FAIL,
            attempt.number,
            _charged(
                {
                    "lease_expires_at": None,
                    "lease_token": None,
                    "next_poll_at": None,
                    "completed_at": NOW,
                    "failed_attempts": Plus(1),
                    "error_code": fault.code,
                    "error_message": fault.message,
                },
                rejection,
            ),
            reason=fault.code,
            data={"kind": fault.kind.value, **(details or {})},
            attempt_update=(attempt.id, _rejected(finished_attempt("failed", fault), rejection)),
        )
        if moved is None:
            return False
        if moved.callback_url is not None:
            self.notify_job(attempt.job_id)
        return True

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

    def abandon(self, attempt: AttemptRecord, fault: Fault) -> bool:
        """Requeue a job whose submitting worker vanished, without counting the attempt."""
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            {"run_after": NOW, "lease_expires_at": None, "lease_token": None},
            reason=fault.code,
            data={"kind": fault.kind.value},
            attempt_update=(attempt.id, finished_attempt("abandoned", fault)),
        )
        return moved is not None


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


def _charged(values: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    """A job's new values, with a rejected attempt's cost added to what it has spent (and
    what the gate read of the source, when it read it just now)."""
    if rejection is not None:
        values["cost_usd"] = Plus(rejection.cost_usd)
        if rejection.source_facts is not None:
            values["source_facts"] = rejection.source_facts
    return values


def _rejected(values: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    """An attempt's new values, with what the quality gate found and what it cost."""
    if rejection is not None:
        values.update(cost_usd=rejection.cost_usd, quality=rejection.reports)
    return values
