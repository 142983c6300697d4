"""The guarded-write machinery every repository part shares.

A transition is one ``UPDATE jobs ... WHERE id = :id AND state IN (:sources) [AND attempt
= :n] RETURNING`` with its ``INSERT INTO job_events``, in one statement. Zero rows
updated is an expected outcome (a duplicate message, a late webhook, a lost race) and is
returned as ``False``, never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Executable, Text, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from models.state import IN_FLIGHT_STATES, TRANSITIONS, JobState, Transition
from models.tables import Attempt, Job, JobEvent
from worker.providers.base import Fault
from worker.wakeups import CHANNEL

NOW = func.now()


def seconds_from_now(value: float) -> Any:
    """``now() + value seconds``, evaluated by the database."""
    return NOW + timedelta(seconds=value)


@dataclass(frozen=True, slots=True)
class Moved:
    """A job a transition moved: its attempt number and where its producer hears of it."""

    attempt: int
    callback_url: str | None


class SessionBound:
    """SQL over one session; the caller owns the transaction."""

    def __init__(self, session: Session, actor: str) -> None:
        self.s = session
        #: Recorded on every event this repository writes (``api``, ``worker``, ...).
        self.actor = actor

    def run(self, statement: Executable, rows: Sequence[dict[str, Any]] | None = None) -> Any:
        """Execute ``statement`` as plain SQL, on the session's connection.

        The repository hands out frozen records, never ORM objects, so there is nothing in
        the session for the ORM to keep in step with a write; its bookkeeping would cost
        more CPU than the statement itself.
        """
        return self.s.connection().execute(statement, rows)

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
        attempt_update: tuple[uuid.UUID, dict[str, Any]] | None = None,
    ) -> Moved | None:
        """Apply ``transition`` to one job if it is in a source state; None if it is not.

        One statement: the guarded ``UPDATE jobs``, its event, the attempt's own update
        (``attempt_update``: its id and values) and, when a provider slot frees up, the
        scheduler's wake-up. The parts after the first join on the moved row, so none of
        them happens when the guard turns the update down.
        """
        move = TRANSITIONS[transition]
        query = update(Job).where(Job.id == job_id, Job.state.in_(move.sources), *extra_where)
        if attempt is not None:
            query = query.where(Job.attempt == attempt)
        moved = (
            query.values(state=move.target, updated_at=NOW, **values)
            .returning(Job.id, Job.attempt, Job.callback_url)
            .cte("moved")
        )
        event = insert(JobEvent).from_select(
            ["job_id", "transition", "state", "attempt", "actor", "reason", "data"],
            select(
                moved.c.id,
                literal(transition.value),
                literal(move.target, JobEvent.state.type),
                moved.c.attempt,
                literal(self.actor),
                literal(reason, Text),
                literal(data or {}, JSONB),
            ),
        )
        parts = [event.cte("event")]
        if attempt_update is not None:
            attempt_id, changes = attempt_update
            parts.append(
                update(Attempt)
                .where(Attempt.id == attempt_id, Attempt.job_id == moved.c.id)
                .values(**changes)
                .cte("attempt_moved")
            )
        columns: list[Any] = [moved.c.attempt, moved.c.callback_url]
        if move.sources & IN_FLIGHT_STATES and move.target not in IN_FLIGHT_STATES:
            # Sent when this transaction commits: a provider slot may be free.
            columns.append(func.pg_notify(CHANNEL, ""))
        row = self.run(select(*columns).add_cte(*parts)).first()
        return None if row is None else Moved(row.attempt, row.callback_url)

    def capacity_freed(self) -> None:
        """Wake the scheduler when this transaction commits: a provider slot may be free."""
        self.run(text(f"NOTIFY {CHANNEL}"))

    def _event(
        self,
        job_id: uuid.UUID,
        transition: Transition,
        state: JobState,
        attempt: int,
    ) -> None:
        self.run(
            insert(JobEvent).values(
                job_id=job_id,
                transition=transition.value,
                state=state,
                attempt=attempt,
                actor=self.actor,
                data={},
            )
        )

    def _update_attempt(self, attempt_id: uuid.UUID, **values: Any) -> None:
        self.run(update(Attempt).where(Attempt.id == attempt_id).values(**values))


def finished_attempt(outcome: str, fault: Fault) -> dict[str, Any]:
    """What an attempt that ended with ``fault`` records."""
    return {
        "outcome": outcome,
        "error_code": fault.code,
        "error_message": fault.message,
        "finished_at": NOW,
    }
