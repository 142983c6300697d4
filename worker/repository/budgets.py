"""Batch budgets: what each batch has spent and committed, and stopping it at its budget."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select, update

from models.state import BatchState, JobState
from models.tables import Batch, Job
from worker.faults import BUDGET_EXHAUSTED
from worker.repository.base import STEP_IMAGES
from worker.repository.batches import BatchRows
from worker.repository.sql import NOW
from worker.values.observations import BudgetStopped
from worker.values.pricing import list_price
from worker.values.records import BudgetUse

#: Job states whose provider may have charged, or be about to, for the current attempt.
_COMMITTED = (JobState.SUBMITTING, JobState.RUNNING, JobState.FINALIZING)


def _budgets_statement() -> Select[Any]:
    # Built once: every dispatch round runs it, and building it cost more than running it.
    in_flight = func.count().filter(Job.state.in_(_COMMITTED))
    images = STEP_IMAGES.label("images")
    return (
        select(
            Batch.id,
            Batch.budget_usd,
            Job.provider,
            Job.model,
            images,
            in_flight,
            func.sum(Job.cost_usd),
        )
        .join(Job, Job.batch_id == Batch.id)
        .where(Batch.state == BatchState.RUNNING, Batch.budget_usd.is_not(None))
        .group_by(Batch.id, Job.provider, Job.model, images)
    )


_BUDGETS = _budgets_statement()


class BudgetRows(BatchRows):
    """The budget a dispatch round holds each batch to."""

    def budgets(self) -> dict[uuid.UUID, BudgetUse]:
        """Each running batch with a budget: spend plus the list price of its in-flight jobs."""
        rows = self.run(_BUDGETS).all()
        uses: dict[uuid.UUID, BudgetUse] = {}
        for batch_id, budget, provider, model, images, flying, spent in rows:
            committed = (spent or Decimal(0)) + flying * list_price(provider, model, images or 1)
            before = uses.get(batch_id, BudgetUse(batch_id, budget, Decimal(0)))
            uses[batch_id] = BudgetUse(batch_id, budget, before.committed_usd + committed)
        return uses

    def stop_for_budget(self, batch_id: uuid.UUID) -> None:
        """Cancel the batch's queued jobs: the next would pass its budget."""
        batch = self.batch(batch_id)
        if batch is None or batch.budget_usd is None:
            return
        message = f"not sent: it would pass the batch's budget of ${batch.budget_usd:.2f}"
        self.cancel_jobs(
            (Job.batch_id == batch_id, Job.state == JobState.QUEUED),
            BUDGET_EXHAUSTED,
            error=(BUDGET_EXHAUSTED, message),
        )
        stopped = self.s.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.budget_exhausted_at.is_(None))
            .values(budget_exhausted_at=NOW, updated_at=NOW)
            .returning(Batch.id)
        ).first()
        if stopped is not None:
            self.observed.append(BudgetStopped())
