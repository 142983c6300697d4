"""A batch row's later steps (a multi-turn edit chain), checked: the steps themselves or
the first rule they break, with its field named as the row wrote it.

In JSONL the later steps are the row's ``steps`` key, and a place in them is named as
``steps.1.num_images``; in CSV they are the ``prompt_{n}`` columns, and a place is the
column of its step. Each step is planned against the step before it, as
:func:`worker.values.chain.plan` does, so that a step its carried-over parameters make
invalid is named; then the chain's own rules (:func:`worker.values.chain.problems`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from worker.values import chain
from worker.values.canonical import EditInput
from worker.values.chain import MAX_STEPS, StepIn

#: The CSV columns giving the prompts of a chain's later steps: steps 2, 3, ... in order.
STEP_PROMPTS = tuple(f"prompt_{n}" for n in range(2, MAX_STEPS + 1))


def csv_steps(first: EditInput, values: dict[str, Any]) -> tuple[StepIn, ...] | chain.Problem:
    """The later steps of a CSV row whose step 1 is ``first``: its filled ``prompt_{n}``
    cells (among ``values``), which must be consecutive."""
    given = {k: v for k, v in values.items() if k in STEP_PROMPTS}
    later = [{"prompt": given[c]} for c in STEP_PROMPTS if c in given]
    return _step_gap(given) or _chain(first, later, _csv_step_field)


def jsonl_steps(first: EditInput, later: object) -> tuple[StepIn, ...] | chain.Problem:
    """The later steps of a JSONL row whose step 1 is ``first``: its ``steps`` key."""
    return _chain(first, later, _jsonl_step_field)


_STEPS: TypeAdapter[list[StepIn]] = TypeAdapter(list[StepIn])

#: Where a pydantic error is, as a field name.
_Locate = Callable[[tuple[int | str, ...]], str]


def _chain(
    first: EditInput, later: object, step_field: _Locate
) -> tuple[StepIn, ...] | chain.Problem:
    """The later steps of a chain whose step 1 is ``first``, or the first rule they break.

    ``later`` is the steps as the row wrote them (``None`` or ``[]``: none); ``step_field``
    names a place in them.
    """
    if later is None or later == []:
        return ()
    try:
        steps = tuple(_STEPS.validate_python(later))
    except ValidationError as exc:
        return first_problem(exc, step_field)
    planned: list[chain.PlannedStep] = []
    before = first
    for i, step in enumerate(steps):
        # Planned one at a time, each against the step before (just as chain.plan does), so
        # that a step its carried-over parameters make invalid (an explicit null
        # num_images, say) is named.
        try:
            [made] = chain.plan(before, [step])
        except ValidationError as exc:
            return first_problem(exc, _within(i, step_field))
        planned.append(made)
        before = made.edit
    found = chain.problems(first, planned)
    return found[0] if found else steps


def first_problem(exc: ValidationError, locate: _Locate) -> chain.Problem:
    """The first error of ``exc``, its field named by ``locate`` and its type the rule."""
    first = exc.errors()[0]
    field = locate(tuple(first["loc"]))
    return chain.Problem(field, first["type"], f"{field}: {first['msg']}")


def _within(i: int, step_field: _Locate) -> _Locate:
    """``step_field`` for places within step ``i`` (0 is step 2)."""
    return lambda loc: step_field((i, *loc))


def _jsonl_step_field(loc: tuple[int | str, ...]) -> str:
    """A place in a JSONL row's ``steps``: ``steps``, ``steps.1``, ``steps.1.num_images``."""
    return ".".join(("steps", *(str(p) for p in loc)))


def _csv_step_field(loc: tuple[int | str, ...]) -> str:
    """A place in a CSV row's later steps: the ``prompt_{n}`` column of the step (a CSV
    step has nothing but its prompt)."""
    if loc and isinstance(loc[0], int):
        return STEP_PROMPTS[loc[0]]
    return "row"


def _step_gap(given: dict[str, str]) -> chain.Problem | None:
    """The first ``prompt_{n}`` column filled while the step before it has no prompt."""
    expected = 2
    for n, column in enumerate(STEP_PROMPTS, start=2):
        if column not in given:
            continue
        if n != expected:
            return chain.Problem(
                column,
                "step_gap",
                f"{column} is given but step {expected} has no prompt (prompt_{expected} "
                "is empty); the prompts of later steps must be consecutive",
            )
        expected = n + 1
    return None
