"""Retention: which finished jobs are old enough to go, what goes with them, the deletes.

A job goes when it is terminal and completed before the cutoff, and no producer callback
about it is still pending (it would be sent about a job that is gone). Its attempts,
outputs rows, events and callbacks go with it (the foreign keys cascade). A batch goes
once it is finished, older than the cutoff, and none of its jobs is left.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select

from models.state import BatchState, JobState
from models.tables import Attempt, Batch, Callback, Job, JobEvent, JobOutput
from worker.repository.base import SessionBound
from worker.repository.reads import job_from_row, job_query
from worker.values.records import PruneCounts

_TERMINAL = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)
_FINISHED_BATCHES = (BatchState.COMPLETED, BatchState.CANCELED)


def _prunable(cutoff: datetime) -> Any:
    pending = exists().where(Callback.job_id == Job.id, Callback.state == "pending")
    return and_(Job.state.in_(_TERMINAL), Job.completed_at < cutoff, ~pending)


def _empty_batches(cutoff: datetime) -> Any:
    return and_(
        Batch.state.in_(_FINISHED_BATCHES),
        Batch.completed_at < cutoff,
        ~exists().where(Job.batch_id == Batch.id),
    )


class RetentionRows(SessionBound):
    """Finding, archiving and deleting what is past its retention."""

    def prunable_jobs(self, cutoff: datetime, limit: int) -> list[uuid.UUID]:
        """Up to ``limit`` jobs past the cutoff, oldest first, locked (others skip them)."""
        query = (
            select(Job.id)
            .where(_prunable(cutoff))
            .order_by(Job.completed_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.run(query).scalars())

    def archive_rows(self, ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
        """Each job of ``ids`` as the archive keeps it: its row, attempts, outputs, events."""
        jobs = [job_from_row(row) for row in self.run(job_query(Job.id.in_(ids)))]
        attempts = self._by_job(Attempt, ids)
        outputs = self._by_job(JobOutput, ids)
        events = self._by_job(JobEvent, ids)
        return [
            {
                "job": job,
                "attempts": attempts.get(job.id, []),
                "outputs": outputs.get(job.id, []),
                "events": events.get(job.id, []),
            }
            for job in jobs
        ]

    def _by_job(
        self, table: Any, ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[dict[str, Any]]]:
        found: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for row in self.run(select(table.__table__).where(table.job_id.in_(ids))).mappings():
            found.setdefault(row["job_id"], []).append(dict(row))
        return found

    def delete_jobs(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete the jobs ``ids`` and, by cascade, everything that hangs off them."""
        if not ids:
            return 0
        return len(self.run(delete(Job).where(Job.id.in_(ids)).returning(Job.id)).all())

    def delete_empty_batches(self, cutoff: datetime, limit: int) -> int:
        """Delete up to ``limit`` finished batches past the cutoff that no job refers to."""
        doomed = select(Batch.id).where(_empty_batches(cutoff)).limit(limit).scalar_subquery()
        return len(self.run(delete(Batch).where(Batch.id.in_(doomed)).returning(Batch.id)).all())

    def prune_counts(self, cutoff: datetime) -> PruneCounts:
        """What a prune at ``cutoff`` would delete, table by table (nothing is locked)."""
        doomed = select(Job.id).where(_prunable(cutoff)).subquery()

        def hanging(table: Any) -> int:
            query = (
                select(func.count()).select_from(table).where(table.job_id.in_(select(doomed.c.id)))
            )
            return int(self.run(query).scalar_one())

        jobs = int(self.run(select(func.count()).select_from(doomed)).scalar_one())
        # A batch goes once its jobs have: those that will have none left after this prune.
        left = exists().where(Job.batch_id == Batch.id, Job.id.not_in(select(doomed.c.id)))
        batches = select(func.count()).where(
            Batch.state.in_(_FINISHED_BATCHES), Batch.completed_at < cutoff, ~left
        )
        return PruneCounts(
            jobs=jobs,
            attempts=hanging(Attempt),
            outputs=hanging(JobOutput),
            events=hanging(JobEvent),
            callbacks=hanging(Callback),
            batches=int(self.run(batches).scalar_one()),
        )
