"""Producer callbacks: the outbox rows, their delivery tries, listing and redelivery.

:meth:`CallbackRows.notify_job` is called by the transitions that end a job, in their own
transaction, so a finished job and its callback are committed together or not at all.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from models.tables import Callback, CallbackAttempt, Job, JobOutput
from worker.repository.base import SessionBound, seconds_from_now
from worker.repository.reads import job_from_row, job_query, output_record
from worker.repository.sql import NOW
from worker.values.callback_events import (
    BATCH_COMPLETED,
    JOB_EVENTS,
    STEP_SUCCEEDED,
    CallbackDetail,
    CallbackFilter,
    CallbackRecord,
    CallbackState,
    CallbackTry,
    Decision,
    Verdict,
    job_payload,
    step_payload,
)
from worker.values.ids import new_id
from worker.values.records import OutputRecord

#: Jobs one statement of :meth:`CallbackRows.notify_jobs` reads at most.
_CHUNK = 1000


class CallbackRows(SessionBound):
    """Every statement about callbacks."""

    # -- writing events -------------------------------------------------------------------

    def notify_job(self, job_id: uuid.UUID) -> int:
        """Write the callback for a job that just ended, if it names a ``callback_url``."""
        return self.notify_jobs([job_id])

    def notify_jobs(self, job_ids: Sequence[uuid.UUID]) -> int:
        """Write a callback for each of ``job_ids`` that ended and names a ``callback_url``.

        Each payload is a snapshot of the job and its outputs as this transaction sees them.
        Returns how many callbacks were written.
        """
        written = 0
        for start in range(0, len(job_ids), _CHUNK):
            written += self._notify_chunk(job_ids[start : start + _CHUNK])
        return written

    def _notify_chunk(self, job_ids: Sequence[uuid.UUID]) -> int:
        jobs = [
            job_from_row(row)
            for row in self.run(
                job_query(
                    Job.id.in_(job_ids),
                    Job.callback_url.is_not(None),
                    Job.state.in_(tuple(JOB_EVENTS)),
                )
            )
        ]
        if not jobs:
            return 0
        outputs = self._outputs([j.id for j in jobs])
        rows = []
        for job in jobs:
            payload = job_payload(job, outputs[job.id])
            rows.append(
                {
                    "id": new_id(),
                    "job_id": job.id,
                    "batch_id": job.batch_id,
                    "url": job.callback_url,
                    "event": payload["type"],
                    "payload": payload,
                }
            )
        self.s.execute(insert(Callback), rows)
        return len(rows)

    def notify_step(self, job_id: uuid.UUID, step: int) -> None:
        """Write the ``job.step_succeeded`` callback of step ``step`` of a chain."""
        row = self.run(job_query(Job.id == job_id, Job.callback_url.is_not(None))).first()
        if row is None:
            return
        job = job_from_row(row)
        outputs = self._outputs([job_id])[job_id]
        self.s.execute(
            insert(Callback).values(
                id=new_id(),
                job_id=job.id,
                batch_id=job.batch_id,
                url=job.callback_url,
                event=STEP_SUCCEEDED,
                payload=step_payload(job, step, outputs),
            )
        )

    def _outputs(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[OutputRecord]]:
        """Every output of each job, by step then index."""
        outputs: dict[uuid.UUID, list[OutputRecord]] = defaultdict(list)
        for row in self.s.scalars(
            select(JobOutput)
            .where(JobOutput.job_id.in_(job_ids))
            .order_by(JobOutput.job_id, JobOutput.step, JobOutput.index)
        ):
            outputs[row.job_id].append(output_record(row))
        return outputs

    def notify_batch(self, batch_id: uuid.UUID, url: str, payload: dict[str, Any]) -> uuid.UUID:
        """Write the ``batch.completed`` callback of a batch, with the body it is sent."""
        callback_id = new_id()
        self.s.execute(
            insert(Callback).values(
                id=callback_id,
                batch_id=batch_id,
                url=url,
                event=BATCH_COMPLETED,
                payload=payload,
            )
        )
        return callback_id

    # -- delivering -----------------------------------------------------------------------

    def due_callbacks(self, limit: int, lease_seconds: float) -> list[tuple[uuid.UUID, int]]:
        """Pending callbacks whose time has come, each with the number of its next try.

        Their ``next_attempt_at`` is pushed ``lease_seconds`` ahead at once, so the next tick
        does not send them again while this try is under way; a lost message is sent again
        when it passes.
        """
        due = (
            select(Callback.id)
            .where(Callback.state == CallbackState.PENDING, Callback.next_attempt_at <= NOW)
            .order_by(Callback.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.s.execute(
            update(Callback)
            .where(Callback.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=seconds_from_now(lease_seconds))
            .returning(Callback.id, Callback.attempts)
        )
        return [(callback_id, attempts + 1) for callback_id, attempts in rows]

    def start_callback_try(
        self, callback_id: uuid.UUID, attempt: int, lease_seconds: float
    ) -> CallbackRecord | None:
        """Take try number ``attempt`` of a pending callback; None when it is not to be made.

        A duplicate message, or one for a try already made, finds the count moved on.
        """
        row = self.s.scalars(
            update(Callback)
            .where(
                Callback.id == callback_id,
                Callback.state == CallbackState.PENDING,
                Callback.attempts == attempt - 1,
            )
            .values(attempts=attempt, next_attempt_at=seconds_from_now(lease_seconds))
            .returning(Callback)
            .execution_options(populate_existing=True)
        ).first()
        return None if row is None else callback_record(row)

    def finish_callback_try(
        self,
        callback_id: uuid.UUID,
        attempt: int,
        status: int | None,
        error: str | None,
        duration_ms: int,
        decision: Decision,
    ) -> bool:
        """Log try ``attempt`` and apply its verdict; False when the callback moved meanwhile."""
        self.s.execute(
            insert(CallbackAttempt).values(
                callback_id=callback_id, status=status, error=error, duration_ms=duration_ms
            )
        )
        values: dict[str, Any] = {"last_status": status, "last_error": error}
        if decision.verdict is Verdict.DELIVERED:
            values.update(state=CallbackState.DELIVERED, delivered_at=NOW)
        elif decision.verdict is Verdict.FAILED:
            values.update(state=CallbackState.FAILED)
        else:
            values.update(next_attempt_at=seconds_from_now(decision.delay_seconds))
        row = self.s.execute(
            update(Callback)
            .where(
                Callback.id == callback_id,
                Callback.state == CallbackState.PENDING,
                Callback.attempts == attempt,
            )
            .values(**values)
            .returning(Callback.id)
        ).first()
        return row is not None

    # -- reading and redelivering ---------------------------------------------------------

    def callback_detail(self, callback_id: uuid.UUID) -> CallbackDetail | None:
        """A callback with its delivery log."""
        row = self.s.get(Callback, callback_id, populate_existing=True)
        if row is None:
            return None
        tries = self.s.scalars(
            select(CallbackAttempt)
            .where(CallbackAttempt.callback_id == callback_id)
            .order_by(CallbackAttempt.id)
        )
        return CallbackDetail(
            callback_record(row),
            tuple(CallbackTry(t.at, t.status, t.error, t.duration_ms) for t in tries),
        )

    def list_callbacks(self, where: CallbackFilter, limit: int) -> list[CallbackRecord]:
        """Callbacks matching ``where``, newest first."""
        rows = self.s.scalars(
            select(Callback)
            .where(*_clauses(where))
            .order_by(Callback.created_at.desc(), Callback.id.desc())
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return [callback_record(row) for row in rows]

    def unknown_callbacks(self, ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """Those of ``ids`` no callback has."""
        wanted = list(dict.fromkeys(ids))
        known = set(self.s.scalars(select(Callback.id).where(Callback.id.in_(wanted))))
        return [i for i in wanted if i not in known]

    def redeliver_callbacks(self, where: CallbackFilter) -> list[uuid.UUID]:
        """Put the matching callbacks back to pending, due now, with a fresh budget of tries.

        Each keeps its id, so its ``webhook-id`` is the one the receiver may have seen.
        """
        rows = self.s.execute(
            update(Callback)
            .where(*_clauses(where))
            .values(state=CallbackState.PENDING, attempts=0, next_attempt_at=NOW, delivered_at=None)
            .returning(Callback.id)
        )
        return list(rows.scalars())


def _clauses(where: CallbackFilter) -> list[Any]:
    clauses: list[Any] = []
    if where.ids:
        clauses.append(Callback.id.in_(where.ids))
    if where.job_id:
        clauses.append(Callback.job_id == where.job_id)
    if where.batch_id:
        clauses.append(Callback.batch_id == where.batch_id)
    if where.states:
        clauses.append(Callback.state.in_([s.value for s in where.states]))
    return clauses


def callback_record(row: Callback) -> CallbackRecord:
    """A callback row as a frozen record."""
    return CallbackRecord(
        id=row.id,
        job_id=row.job_id,
        batch_id=row.batch_id,
        url=row.url,
        event=row.event,
        payload=row.payload,
        state=CallbackState(row.state),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
