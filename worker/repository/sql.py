"""The SQL of a transition: the values it may set, and its one statement, built once a shape.

A transition is one ``UPDATE jobs ... WHERE id = :id AND state IN (:sources) [AND attempt
= :n] RETURNING`` with its ``INSERT INTO job_events``, the attempt's own update and, when
a provider slot frees up, the scheduler's wake-up, as data-modifying CTEs. A handful of
shapes occur (which guards, which columns, which kinds of value); each is built once and
run again with new parameters, since building a statement costs more CPU than running it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ClauseElement,
    Executable,
    Interval,
    Text,
    bindparam,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from models.state import IN_FLIGHT_STATES, TRANSITIONS, JobState, Move, Transition
from models.tables import Attempt, Job, JobEvent

NOW = func.now()
#: The channel that transactions giving dispatch work notify on (:mod:`worker.pipeline.wakeups`).
CHANNEL = "editq_dispatch"


@dataclass(frozen=True, slots=True)
class FromNow:
    """A transition's value: ``now()`` plus ``seconds``, by the database's clock."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Plus:
    """A transition's value: the column's own value plus ``amount``."""

    amount: int | Decimal


def wakes_dispatch(move: Move) -> bool:
    """Whether ``move`` can give a dispatch round work: it frees a slot or queues a job."""
    leaves_flight = bool(move.sources & IN_FLIGHT_STATES) and move.target not in IN_FLIGHT_STATES
    return leaves_flight or move.target is JobState.QUEUED


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


def transition_statement(
    transition: Transition,
    *,
    by_attempt: bool,
    by_token: bool,
    with_attempt: bool,
    values: Mapping[str, Any],
    attempt_values: Mapping[str, Any],
) -> tuple[Executable, dict[str, Any]]:
    """The statement of ``transition`` setting ``values`` (and ``attempt_values`` on the
    attempt), and the parameters those values take; the guards' parameters are the
    caller's (``m_job_id``, ``m_number``, ``m_token``, ``m_attempt_id``, ``m_actor``,
    ``m_reason``, ``m_data``).

    A value is a plain value, :data:`NOW`, :class:`FromNow` or :class:`Plus`; with only
    those, the statement is built once for its shape and reused.
    """
    shape = Shape(
        transition,
        by_attempt,
        by_token,
        with_attempt,
        _shape_of(values),
        _shape_of(attempt_values),
    )
    cacheable = all(kind is not None for _, kind in (*shape.values, *shape.attempt_values))
    statement = _MOVES.get(shape) if cacheable else None
    if statement is None:
        statement = _move_statement(shape, values, attempt_values)
        if cacheable:
            _MOVES[shape] = statement
    params = _params("v_", values)
    params.update(_params("a_", attempt_values))
    return statement, params


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
