"""The guarded-write machinery every repository part shares.

A transition is one ``UPDATE jobs ... WHERE id = :id AND state IN (:sources) [AND attempt
= :n] RETURNING`` with its ``INSERT INTO job_events``, in one statement. Zero rows
updated is an expected outcome (a duplicate message, a late webhook, a lost race) and is
returned as ``False``, never raised.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Executable,
    Integer,
    Interval,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session

from models.state import (
    IN_FLIGHT_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    Move,
    Transition,
)
from models.tables import Attempt, Job, JobEvent
from worker.faults import Fault
from worker.values.observations import JobFinished, Observation

NOW = func.now()
#: The channel that transactions giving dispatch work notify on (:mod:`worker.pipeline.wakeups`).
CHANNEL = "editq_dispatch"


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
class FromNow:
    """A transition's value: ``now()`` plus ``seconds``, by the database's clock."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Plus:
    """A transition's value: the column's own value plus ``amount``."""

    amount: int | Decimal


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

        A value is a plain value, :data:`NOW`, :class:`FromNow` or :class:`Plus`; with only
        those, the statement is built once for its shape and reused with new parameters.
        """
        attempt_id, attempt_values = attempt_update or (None, {})
        shape = Shape(
            transition,
            attempt is not None,
            lease_token is not None,
            attempt_id is not None,
            _shape_of(values),
            _shape_of(attempt_values),
        )
        cacheable = all(kind is not None for _, kind in (*shape.values, *shape.attempt_values))
        statement = _MOVES.get(shape) if cacheable else None
        if statement is None:
            statement = _move_statement(shape, values, attempt_values)
            if cacheable:
                _MOVES[shape] = statement
        params: dict[str, Any] = {
            "m_job_id": job_id,
            "m_number": attempt,
            "m_token": lease_token,
            "m_attempt_id": attempt_id,
            "m_actor": self.actor,
            "m_reason": reason,
            "m_data": data or {},
        }
        params.update(_params("v_", values))
        params.update(_params("a_", attempt_values))
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


def wakes_dispatch(move: Move) -> bool:
    """Whether ``move`` can give a dispatch round work: it frees a slot or queues a job."""
    leaves_flight = bool(move.sources & IN_FLIGHT_STATES) and move.target not in IN_FLIGHT_STATES
    return leaves_flight or move.target is JobState.QUEUED


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


@dataclass(frozen=True, slots=True)
class Shape:
    """What a transition statement looks like, apart from its parameters."""

    transition: Transition
    by_attempt: bool
    by_token: bool
    with_attempt: bool
    #: Each value's column and kind; a kind of None is an SQL expression, built afresh.
    values: tuple[tuple[str, str | None], ...]
    attempt_values: tuple[tuple[str, str | None], ...]


#: Transition statements by shape. A handful of shapes occur; each is built once. Their
#: parameters are named unlike any column, which an UPDATE would take for a value to set.
_MOVES: dict[Shape, Executable] = {}


def _shape_of(values: Mapping[str, Any]) -> tuple[tuple[str, str | None], ...]:
    return tuple((column, _kind(value)) for column, value in values.items())


def _kind(value: Any) -> str | None:
    if value is NOW:
        return "now"
    if isinstance(value, FromNow):
        return "from_now"
    if isinstance(value, Plus):
        return "plus"
    if isinstance(value, ClauseElement):
        return None
    return "value"


def _params(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for column, value in values.items():
        if isinstance(value, FromNow):
            params[prefix + column] = timedelta(seconds=value.seconds)
        elif isinstance(value, Plus):
            params[prefix + column] = value.amount
        elif _kind(value) == "value":
            params[prefix + column] = value
    return params


def _set(entity: Any, prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The SET clause of ``values``, with a bound parameter for each value passed in."""
    clause = {}
    for column, value in values.items():
        kind = _kind(value)
        own = getattr(entity, column)
        if kind == "from_now":
            clause[column] = NOW + bindparam(prefix + column, type_=Interval)
        elif kind == "plus":
            clause[column] = own + bindparam(prefix + column, type_=own.type)
        elif kind == "value":
            clause[column] = bindparam(prefix + column, type_=own.type)
        else:
            clause[column] = value
    return clause


def _move_statement(
    shape: Shape, values: Mapping[str, Any], attempt_values: Mapping[str, Any]
) -> Executable:
    move = TRANSITIONS[shape.transition]
    query = update(Job).where(Job.id == bindparam("m_job_id"), Job.state.in_(move.sources))
    if shape.by_attempt:
        query = query.where(Job.attempt == bindparam("m_number"))
    if shape.by_token:
        query = query.where(Job.lease_token == bindparam("m_token"))
    moved = (
        query.values(state=move.target, updated_at=NOW, **_set(Job, "v_", values))
        .returning(
            Job.id,
            Job.attempt,
            Job.callback_url,
            Job.model,
            Job.provider,
            Job.error_code,
            Job.created_at,
        )
        .cte("moved")
    )
    event = insert(JobEvent).from_select(
        ["job_id", "transition", "state", "attempt", "actor", "reason", "data"],
        select(
            moved.c.id,
            literal(shape.transition.value),
            literal(move.target, JobEvent.state.type),
            moved.c.attempt,
            bindparam("m_actor", type_=Text),
            bindparam("m_reason", type_=Text),
            bindparam("m_data", type_=JSONB),
        ),
    )
    parts = [event.cte("event")]
    if shape.with_attempt:
        parts.append(
            update(Attempt)
            .where(Attempt.id == bindparam("m_attempt_id"), Attempt.job_id == moved.c.id)
            .values(**_set(Attempt, "a_", attempt_values))
            .cte("attempt_moved")
        )
    columns: list[Any] = [
        moved.c.callback_url,
        moved.c.model,
        moved.c.provider,
        moved.c.error_code,
        moved.c.created_at,
    ]
    if wakes_dispatch(move):
        columns.append(func.pg_notify(CHANNEL, ""))
    return select(*columns).add_cte(*parts)
