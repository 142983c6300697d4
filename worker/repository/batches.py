"""Batches: their rows in bulk, progress, cancel, and finishing them (budgets: ``budgets.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal

from sqlalchemy import and_, case, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from models.state import (
    ACTIVE_STATES,
    BatchState,
    JobState,
)
from models.tables import Batch, BatchReject, Job
from worker.repository.base import seconds_from_now
from worker.repository.ops import OpsMoves
from worker.repository.reads import job_from_row, job_query
from worker.repository.sql import NOW
from worker.values.batch_file import Reject
from worker.values.records import (
    BatchProgress,
    BatchRecord,
    JobRecord,
    NewBatch,
    OutputRecord,
)


class BatchRows(OpsMoves):
    """SQL about batches; their jobs move through the same guarded transitions as any job."""

    def insert_batch(self, new: NewBatch) -> bool:
        """Insert a validating batch; False when its Idempotency-Key is taken already."""
        inserted = self.s.execute(
            insert(Batch)
            .values(
                id=new.id,
                state=BatchState.VALIDATING,
                model=new.model,
                providers=list(new.providers),
                priority=new.priority,
                callback_url=new.callback_url,
                budget_usd=new.budget_usd,
                idempotency_key=new.idempotency_key,
                request_hash=new.request_hash,
                quality=new.quality,
                routing=new.routing,
            )
            .on_conflict_do_nothing()
            .returning(Batch.id)
        ).first()
        return inserted is not None

    def batch(self, batch_id: uuid.UUID) -> BatchRecord | None:
        """One batch."""
        row = self.s.get(Batch, batch_id, populate_existing=True)
        return batch_record(row) if row else None

    def batch_by_idempotency_key(self, key: str) -> BatchRecord | None:
        """The batch created with ``key``."""
        row = self.s.scalars(select(Batch).where(Batch.idempotency_key == key)).first()
        return batch_record(row) if row else None

    def list_batches(self, limit: int) -> list[BatchRecord]:
        """The newest batches first."""
        rows = self.s.scalars(
            select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)
        )
        return [batch_record(row) for row in rows]

    def insert_rejects(self, batch_id: uuid.UUID, rejects: Sequence[Reject]) -> None:
        """Keep the bad rows of a batch file, for its ``errors.jsonl``."""
        if rejects:
            self.s.execute(
                insert(BatchReject),
                [
                    {
                        "batch_id": batch_id,
                        "line": r.line,
                        "external_id": r.external_id,
                        "field": r.field,
                        "rule": r.rule,
                        "message": r.message,
                    }
                    for r in rejects
                ],
            )

    def open_batch(self, batch_id: uuid.UUID, total: int, accepted: int, rejected: int) -> None:
        """Every row is in: the batch's jobs may be dispatched, so dispatch is woken."""
        self.wake_dispatch()
        self.s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.state == BatchState.VALIDATING)
            .values(
                state=BatchState.RUNNING,
                rows_total=total,
                rows_accepted=accepted,
                rows_rejected=rejected,
                updated_at=NOW,
            )
        )

    def delete_batch(self, batch_id: uuid.UUID) -> None:
        """Remove a batch whose file was refused; it never had a job."""
        self.s.execute(
            delete(Batch).where(Batch.id == batch_id, Batch.state == BatchState.VALIDATING)
        )

    def progress(self, batch_id: uuid.UUID, window_seconds: float) -> BatchProgress:
        """Counts by state, cost so far, how many jobs finished within the window, and how
        many steps (of the batch's chains) there are and are done."""
        recent = func.count().filter(Job.completed_at > seconds_from_now(-window_seconds))
        steps = func.sum(1 + func.jsonb_array_length(Job.steps))
        # The steps before the one a job is on are done; so is that one, if it succeeded.
        done = func.sum(Job.step - 1 + case((Job.state == JobState.SUCCEEDED, 1), else_=0))
        rows = self.s.execute(
            select(Job.state, func.count(), func.sum(Job.cost_usd), recent, steps, done)
            .where(Job.batch_id == batch_id)
            .group_by(Job.state)
        ).all()
        return BatchProgress(
            counts={row[0]: row[1] for row in rows},
            cost_usd=sum((row[2] or Decimal(0) for row in rows), Decimal(0)),
            recent=sum(row[3] for row in rows),
            window_seconds=window_seconds,
            steps_total=sum(int(row[4] or 0) for row in rows),
            steps_done=sum(int(row[5] or 0) for row in rows),
        )

    # -- cancel ----------------------------------------------------------------------------

    def cancel_batch(
        self, batch_id: uuid.UUID, reason: str | None
    ) -> list[tuple[uuid.UUID, int, JobState]] | None:
        """Cancel every unfinished job of a batch; None when the batch cannot be canceled.

        Returns the canceled jobs with their state before, so that the ones a provider was
        working on can be stopped there.
        """
        marked = self.s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.state == BatchState.RUNNING)
            .values(cancel_requested_at=NOW, cancel_reason=reason, updated_at=NOW)
            .returning(Batch.id)
        ).first()
        if marked is None:
            return None
        return self.cancel_jobs((Job.batch_id == batch_id,), reason)

    # -- finishing ------------------------------------------------------------------------

    def batches_to_finish(self, lease_seconds: float, limit: int) -> list[uuid.UUID]:
        """Running batches whose every job is terminal, and stalled finishes: leased now."""
        active = exists().where(Job.batch_id == Batch.id, Job.state.in_(ACTIVE_STATES))
        due = (
            select(Batch.id)
            .where(
                or_(
                    and_(Batch.state == BatchState.RUNNING, ~active),
                    and_(Batch.state == BatchState.FINALIZING, Batch.lease_expires_at < NOW),
                )
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = self.s.execute(
            update(Batch)
            .where(Batch.id.in_(due.scalar_subquery()))
            .values(
                state=BatchState.FINALIZING,
                lease_expires_at=seconds_from_now(lease_seconds),
                updated_at=NOW,
            )
            .returning(Batch.id)
        )
        return [batch_id for (batch_id,) in rows]

    def batch_jobs(
        self, batch_id: uuid.UUID, chunk: int = 1000
    ) -> Iterator[tuple[JobRecord, list[OutputRecord]]]:
        """Every job of a batch by external id, with every step's outputs, read in chunks."""
        jobs = self.run(
            job_query(Job.batch_id == batch_id)
            .order_by(Job.external_id)
            .execution_options(yield_per=chunk)
        )
        for page in jobs.partitions():
            part = [job_from_row(row) for row in page]
            outputs = self._outputs([j.id for j in part])
            for job in part:
                yield job, outputs.get(job.id, [])

    def rejects(self, batch_id: uuid.UUID) -> list[Reject]:
        """The bad rows of a batch file, by line."""
        rows = self.s.scalars(
            select(BatchReject).where(BatchReject.batch_id == batch_id).order_by(BatchReject.line)
        )
        return [Reject(r.line, r.external_id, r.field, r.rule, r.message) for r in rows]

    def complete_batch(
        self, batch_id: uuid.UUID, results_key: str, errors_key: str
    ) -> BatchState | None:
        """The result files are written: the batch ends (canceled, if a cancel asked for it).

        None when a job of it was retried meanwhile: the batch runs again.
        """
        active = exists().where(Job.batch_id == Batch.id, Job.state.in_(ACTIVE_STATES))
        final = case(
            (Batch.cancel_requested_at.is_(None), BatchState.COMPLETED.value),
            else_=BatchState.CANCELED.value,
        )
        row = self.s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.state == BatchState.FINALIZING, ~active)
            .values(
                state=final.cast(Batch.state.type),
                results_key=results_key,
                errors_key=errors_key,
                lease_expires_at=None,
                completed_at=NOW,
                updated_at=NOW,
            )
            .returning(Batch.state)
        ).first()
        return row.state if row else None


def batch_record(row: Batch) -> BatchRecord:
    """A batch row as a frozen record."""
    return BatchRecord(
        id=row.id,
        state=row.state,
        model=row.model,
        providers=tuple(row.providers),
        priority=row.priority,
        callback_url=row.callback_url,
        budget_usd=row.budget_usd,
        budget_exhausted_at=row.budget_exhausted_at,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        rows_total=row.rows_total,
        rows_accepted=row.rows_accepted,
        rows_rejected=row.rows_rejected,
        results_key=row.results_key,
        errors_key=row.errors_key,
        cancel_requested_at=row.cancel_requested_at,
        cancel_reason=row.cancel_reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
        routing=row.routing,
    )
