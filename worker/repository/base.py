"""The guarded-write machinery every repository part shares.

A transition is one ``UPDATE jobs ... WHERE id = :id AND state IN (:sources) [AND attempt
= :n] RETURNING`` plus an ``INSERT INTO job_events`` in the same transaction. Zero rows
updated is an expected outcome (a duplicate message, a late webhook, a lost race) and is
returned as ``False``, never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.state import IN_FLIGHT_STATES, TRANSITIONS, JobState, Transition
from models.tables import Attempt, Job, JobEvent
from worker.providers.base import Fault
from worker.wakeups import CHANNEL

NOW = func.now()


def seconds_from_now(value: float) -> Any:
    """``now() + value seconds``, evaluated by the database."""
    return NOW + timedelta(seconds=value)


class SessionBound:
    """SQL over one session; the caller owns the transaction."""

    def __init__(self, session: Session, actor: str) -> None:
        self.s = session
        #: Recorded on every event this repository writes (``api``, ``worker``, ...).
        self.actor = actor

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
            query.values(state=move.target, updated_at=NOW, **values).returning(Job.attempt)
        ).first()
        if row is None:
            return False
        self._event(job_id, transition, move.target, row.attempt, reason, data)
        if move.sources & IN_FLIGHT_STATES and move.target not in IN_FLIGHT_STATES:
            self.capacity_freed()
        return True

    def capacity_freed(self) -> None:
        """Wake the scheduler when this transaction commits: a provider slot may be free."""
        self.s.execute(text(f"NOTIFY {CHANNEL}"))

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
            finished_at=NOW,
        )
