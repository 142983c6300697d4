"""The guarded-write machinery every repository part shares.

A transition is one guarded statement (:mod:`worker.repository.sql`). Zero rows
updated is an expected outcome (a duplicate message, a late webhook, a lost race) and is
returned as ``False``, never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Executable, Integer, Text, case, cast, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from models.state import TERMINAL_STATES, TRANSITIONS, JobState, Transition
from models.tables import Job, JobEvent
from worker.faults import Fault
from worker.repository.sql import CHANNEL, NOW, transition_statement
from worker.values.observations import JobFinished, Observation


def _step_images() -> Any:
    """How many images the step each job is on asks for (NULL: the default, one)."""
    later = Job.steps.op("->", return_type=JSONB)(cast(Job.step - 2, Integer))
    value = case(
        (Job.step == 1, Job.input.op("->>", return_type=Text)("num_images")),
        else_=later.op("->>", return_type=Text)("num_images"),
    )
    return cast(value, Integer)


#: The ``num_images`` of the step each job is on, as SQL (a chain's steps may differ).
STEP_IMAGES = _step_images()


def seconds_from_now(value: float) -> Any:
    """``now() + value seconds``, evaluated by the database."""
    return NOW + timedelta(seconds=value)


@dataclass(frozen=True, slots=True)
class Moved:
    """A job a transition moved, and where its producer hears of it (if anywhere)."""

    callback_url: str | None
    model: str


class SessionBound:
    """SQL over one session; the caller owns the transaction."""

    def __init__(self, session: Session, actor: str) -> None:
        self.s = session
        #: Recorded on every event this repository writes (``api``, ``worker``, ...).
        self.actor = actor
        #: What this transaction did, for the metrics to count once it commits.
        self.observed: list[Observation] = []

    def run(
        self,
        statement: Executable,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> Any:
        """Execute ``statement`` as plain SQL, on the session's connection.

        The repository hands out frozen records, never ORM objects, so there is nothing in
        the session for the ORM to keep in step with a write; its bookkeeping would cost
        more CPU than the statement itself.
        """
        return self.s.connection().execute(statement, params)

    def _move(
        self,
        job_id: uuid.UUID,
        transition: Transition,
        attempt: int | None,
        values: dict[str, Any],
        *,
        lease_token: uuid.UUID | None = None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        attempt_update: tuple[uuid.UUID, dict[str, Any]] | None = None,
    ) -> Moved | None:
        """Apply ``transition`` to one job if it is in a source state; None if it is not.

        One statement: the guarded ``UPDATE jobs``, its event, the attempt's own update
        (``attempt_update``: its id and values) and, when a provider slot frees up, the
        scheduler's wake-up. The parts after the first join on the moved row, so none of
        them happens when the guard turns the update down. ``attempt`` and ``lease_token``,
        when given, must match too.

        A value is a plain value, :data:`NOW`, :class:`FromNow` or :class:`Plus`
        (:func:`~worker.repository.sql.transition_statement`).
        """
        attempt_id, attempt_values = attempt_update or (None, {})
        statement, params = transition_statement(
            transition,
            by_attempt=attempt is not None,
            by_token=lease_token is not None,
            with_attempt=attempt_id is not None,
            values=values,
            attempt_values=attempt_values,
        )
        params.update(
            m_job_id=job_id,
            m_number=attempt,
            m_token=lease_token,
            m_attempt_id=attempt_id,
            m_actor=self.actor,
            m_reason=reason,
            m_data=data or {},
        )
        row = self.run(statement, params).first()
        if row is None:
            return None
        target = TRANSITIONS[transition].target
        if target in TERMINAL_STATES:
            took = (datetime.now(UTC) - row.created_at).total_seconds()
            self.observed.append(JobFinished(row.provider, target.value, row.error_code, took))
        return Moved(row.callback_url, row.model)

    def note(
        self,
        job_id: uuid.UUID,
        attempt: int,
        what: str,
        state: JobState,
        data: Mapping[str, Any],
        reason: str | None = None,
    ) -> None:
        """Write a line in a job's history that is not a move of its state (``state`` stays)."""
        self.run(
            insert(JobEvent),
            {
                "job_id": job_id,
                "transition": what,
                "state": state,
                "attempt": attempt,
                "actor": self.actor,
                "reason": reason,
                "data": dict(data),
            },
        )

    def wake_dispatch(self) -> None:
        """Wake the scheduler when this transaction commits: a slot or a job may be waiting.

        PostgreSQL sends one notification per transaction however often this is called.
        """
        self.run(text(f"NOTIFY {CHANNEL}"))


#: Outcomes of an attempt that has not ended: written, being sent, at the provider, copying.
OPEN_OUTCOMES = ("pending", "sending", "running", "finalizing")


def finished_attempt(outcome: str, fault: Fault) -> dict[str, Any]:
    """What an attempt that ended with ``fault`` records."""
    return {
        "outcome": outcome,
        "error_code": fault.code,
        "error_message": fault.message,
        "finished_at": NOW,
    }
