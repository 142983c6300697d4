"""Dispatch's queries: who waits for which provider, the due jobs in fair order, the claim."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    Text,
    all_,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    func,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, array, insert

from models.state import TRANSITIONS, BatchState, JobState, Transition
from models.tables import Attempt, Batch, Job, JobEvent
from worker.repository.base import STEP_IMAGES, SessionBound, seconds_from_now
from worker.repository.sql import NOW
from worker.values.ids import new_id
from worker.values.observations import Wait, Waited
from worker.values.records import Candidate, Claimed


class DispatchRows(SessionBound):
    """The statements of one dispatch round, run under its advisory lock."""

    def lock_dispatch(self) -> None:
        """Serialise dispatchers for this transaction, so capacity is never over-claimed.

        The round's queries take the head of each queue in claim order, which the dispatch
        index gives without a sort. With sorts off for the transaction the planner keeps to
        it: it cannot estimate the array tests of spill-over and failover (and guesses that
        a handful of a batch's queued jobs pass them, not nearly all), and with that guess it
        would read and sort a batch's whole queue, tens of milliseconds a round at 10,000
        queued, instead of the fifty jobs it takes.
        """
        self.run(text("SELECT pg_advisory_xact_lock(hashtext('editq.dispatch'))"))
        self.run(text("SET LOCAL enable_sort = off"))

    def waiting_for(self, providers: Sequence[str]) -> set[str]:
        """The providers of ``providers`` that have a queued job waiting for them, due or not.

        One index probe each: a dispatch round skips the due queries of a provider nobody
        waits for, which in a one-provider deployment are most of a round's statements.
        """
        return set(self.run(_WAITING, {"names": list(providers)}).scalars())

    def due(self, provider: str, limit: int, stand_in_for: Sequence[str] = ()) -> list[Candidate]:
        """Up to ``limit`` due queued jobs for ``provider``, locked, in fair order.

        Fair order is priority first, then round-robin: the first job of every running
        batch (and of the jobs in no batch), then the second of each, and so on; so one
        10,000-row batch does not hold back an interactive job or another batch. Within a
        batch a chain's later step goes first: chains are finished before new ones start.

        Jobs waiting for a provider in ``stand_in_for`` (its breaker is open) that also list
        ``provider`` are taken too: that is failover at dispatch. ``FOR UPDATE SKIP LOCKED``
        lets dispatch proceed past rows another transaction is changing (a cancel, say).
        """
        params = {"due_provider": provider, "due_others": list(stand_in_for), "due_limit": limit}
        return _fair([*self.run(_OWN[0], params), *self.run(_OWN[1], params)], limit)

    def spill_due(self, provider: str, limit: int, full: Sequence[str]) -> list[Candidate]:
        """Up to ``limit`` due ``spread`` and ``cheapest`` jobs ``provider`` may take over,
        locked, in fair order: spill-over.

        A job is taken over when it waits for a provider in ``full`` (no room left), lists
        ``provider``, and every provider it lists before ``provider`` is full too: so it goes
        to the first of its providers with room, in the order it lists them (by price, for
        ``cheapest``).
        """
        params = {"due_provider": provider, "due_full": list(full), "due_limit": limit}
        return _fair([*self.run(_SPILL[0], params), *self.run(_SPILL[1], params)], limit)

    def spill_backlog(self, provider: str, full: Sequence[str], cap: int) -> int:
        """How many due jobs ``provider`` could take over (:meth:`spill_due`), up to ``cap``."""
        params = {"due_provider": provider, "due_full": list(full), "due_limit": cap}
        return int(self.run(_BACKLOG, params).scalar_one())

    def claim(self, provider: str, ids: Sequence[uuid.UUID], lease_seconds: float) -> list[Claimed]:
        """Claim the locked due jobs ``ids`` for ``provider``: each gets a new attempt.

        The rows are found by their ids, and the transition's guard is checked on each
        row found, never used to find them: as ``state = 'queued'`` it would let the
        planner look for the ids in the dispatch index (every queued job) instead of the
        primary key, as it does when the table's statistics were gathered before the
        queue grew, reading the whole queue on every claim. Compared as text, the state
        matches no index, so the ids are looked up one by one.
        """
        if not ids:
            return []
        move = TRANSITIONS[Transition.CLAIM]
        guard = cast(Job.state, Text).in_(sorted(state.value for state in move.sources))
        rows = self.run(
            update(Job)
            .where(Job.id.in_(ids), guard)
            .values(
                state=move.target,
                provider=provider,
                attempt=Job.attempt + 1,
                lease_expires_at=seconds_from_now(lease_seconds),
                lease_token=None,
                updated_at=NOW,
            )
            .returning(Job.id, Job.attempt, Job.step, func.extract("epoch", NOW - Job.run_after))
        ).all()
        if not rows:
            return []
        claimed = [Claimed(job_id, number, new_id(), provider) for job_id, number, _, _ in rows]
        steps = {job_id: step for job_id, _, step, _ in rows}
        self.observed += [Waited(Wait.QUEUE, provider, float(waited)) for *_, waited in rows]
        self.run(
            insert(Attempt),
            [
                {
                    "id": c.attempt_id,
                    "job_id": c.job_id,
                    "number": c.attempt,
                    "step": steps[c.job_id],
                    "provider": provider,
                }
                for c in claimed
            ],
        )
        self.run(
            insert(JobEvent),
            [
                {
                    "job_id": c.job_id,
                    "transition": Transition.CLAIM.value,
                    "state": move.target,
                    "attempt": c.attempt,
                    "actor": self.actor,
                    "data": {"provider": provider, "attempt_id": str(c.attempt_id)},
                }
                for c in claimed
            ],
        )
        return claimed


def _fair(rows: list[Any], limit: int) -> list[Candidate]:
    """Due rows in fair order: priority, then round-robin across batches, a chain's later
    step first within a batch."""
    rows.sort(key=lambda r: (-r.priority, -r.step, r.run_after, r.created_at))
    turn: dict[uuid.UUID | None, int] = {}
    ranked: list[tuple[int, int, Candidate]] = []
    for job_id, batch_id, priority, _, _, _, model, num_images in rows:
        turn[batch_id] = turn.get(batch_id, -1) + 1
        ranked.append(
            (-priority, turn[batch_id], Candidate(job_id, batch_id, model, num_images or 1))
        )
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [candidate for _, _, candidate in ranked[:limit]]


_PROVIDER = bindparam("due_provider", type_=Text)


#: The job lists the provider. As ``providers @> ARRAY[provider]`` the planner reads how
#: many do from the column's statistics; ``provider = ANY(providers)`` it would guess.
_LISTS_PROVIDER = Job.providers.contains(cast(array([_PROVIDER]), ARRAY(Text)))


def _own() -> Any:
    """Jobs waiting for the provider, or for one it stands in for (an open breaker's)."""
    others = bindparam("due_others", type_=ARRAY(Text))
    return or_(
        Job.provider == _PROVIDER,
        and_(Job.provider == any_(others), _LISTS_PROVIDER),
    )


def _spill() -> Any:
    """Jobs that spill over (every routing but ``failover``), waiting for a full provider,
    that list the provider after only full ones: the first of their providers with room.

    The last test is written as "the provider comes no later than the first of the job's
    providers not full", not as "the providers before it are all full" (a slice ``<@``
    the full ones): the planner cannot estimate either, but guesses a third of the rows
    pass the comparison and one in two hundred the containment, and with that guess it
    would read and sort a running batch's whole queue instead of taking its head in the
    dispatch index's order.
    """
    full = bindparam("due_full", type_=ARRAY(Text))
    position = func.generate_subscripts(Job.providers, 1).table_valued("i").render_derived()
    first_with_room = (
        select(func.min(position.c.i))
        .where(Job.providers[position.c.i] != all_(full))
        .scalar_subquery()
    )
    return and_(
        Job.routing != "failover",
        Job.provider == any_(full),
        _LISTS_PROVIDER,
        func.array_position(Job.providers, _PROVIDER) <= first_with_room,
    )


def _due_statements(mine: Any) -> tuple[Select[Any], Select[Any]]:
    """The due jobs in no batch, and the head of each running batch's due jobs.

    Built once, with the provider, who it takes jobs from, and the limit as parameters:
    building the lateral join costs more CPU than running it.
    """
    columns = (
        Job.id,
        Job.batch_id,
        Job.priority,
        Job.step,
        Job.run_after,
        Job.created_at,
        Job.model,
        STEP_IMAGES,
    )

    def head(*where: Any) -> Select[Any]:
        return (
            select(*columns)
            .where(Job.state == JobState.QUEUED, mine, Job.run_after <= NOW, *where)
            .order_by(Job.priority.desc(), Job.step.desc(), Job.run_after, Job.created_at)
            .limit(bindparam("due_limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )

    running = select(Batch.id).where(Batch.state == BatchState.RUNNING).subquery()
    per_batch = head(Job.batch_id == running.c.id).lateral()
    return (
        head(Job.batch_id.is_(None)),
        select(per_batch).select_from(running.join(per_batch, true())),
    )


_OWN = _due_statements(_own())
_SPILL = _due_statements(_spill())
_BACKLOG = select(func.count()).select_from(
    select(Job.id)
    .where(
        Job.state == JobState.QUEUED,
        Job.run_after <= NOW,
        _spill(),
        or_(
            Job.batch_id.is_(None),
            exists().where(Batch.id == Job.batch_id, Batch.state == BatchState.RUNNING),
        ),
    )
    .limit(bindparam("due_limit", type_=Integer))
    .subquery()
)


def _waiting_statement() -> Select[Any]:
    # One EXISTS probe of (state, provider) per name, not a scan of every queued job.
    names = (
        func.unnest(bindparam("names", type_=ARRAY(Text)))
        .table_valued("name")
        .render_derived(name="p")
    )
    queued = exists().where(Job.state == JobState.QUEUED, Job.provider == names.c.name)
    return select(names.c.name).where(queued)


_WAITING = _waiting_statement()
