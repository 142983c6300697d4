"""Which provider gets which job: capacity, submit rates, circuit breakers and failover.

Dispatch runs in one transaction under an advisory lock: it reads how many jobs each
provider has in flight and each provider's health, works out how many new jobs each may
take, and claims them. A provider whose breaker is open takes none, and the queued jobs
waiting for it move to the next provider on their own list that can take them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from worker.faults import QUALITY_CODES, ErrorKind, Fault
from worker.repository import Repository
from worker.values.breaker import (
    BreakerPolicy,
    BreakerState,
    Health,
    Limits,
    admission,
    after_failure,
    take_tokens,
)
from worker.values.pricing import list_price
from worker.values.records import BudgetUse, Candidate, Claimed, JobRecord

#: Most jobs one dispatch round claims for one provider, so one transaction stays short.
CLAIM_BATCH = 1000


def dispatch(repo: Repository, limits: Limits, lease_seconds: float) -> list[Claimed]:
    """Claim due queued jobs within every provider's capacity, rate and breaker.

    A batch with a budget is also held to it: a job is claimed only while the batch's
    spend plus the list price of what it has in flight, and of this job, stays within it.
    The first job that would pass it stops the batch: its queued jobs are canceled
    (``budget_exhausted``) and the batch says so.
    """
    repo.lock_dispatch()
    budgets = repo.budgets()
    over: set[uuid.UUID] = set()
    in_flight = repo.in_flight()
    health = repo.lock_all_health(list(limits.order))
    before = dict(health)
    now = datetime.now(UTC)
    room: dict[str, int] = {}
    for name in limits.order:
        health[name], breaker_limit = admission(
            health[name], now, limits.breaker, in_flight.get(name, 0)
        )
        free = max(limits.capacity.get(name, 0) - in_flight.get(name, 0), 0)
        room[name] = free if breaker_limit is None else min(free, breaker_limit)
    closed = [name for name in limits.order if _refuses(health[name], room[name])]
    waiting = repo.waiting_for(limits.order)
    claimed: list[Claimed] = []
    for name in limits.order:
        others = [n for n in closed if n != name]
        # Nothing waits for it, itself or through failover: no query, and no tokens taken.
        if room[name] == 0 or waiting.isdisjoint([name, *others]):
            continue
        health[name], granted = take_tokens(health[name], now, limits.rates.get(name), room[name])
        if granted == 0:
            continue
        due = repo.due(name, min(granted, CLAIM_BATCH), stand_in_for=others)
        ids = within_budget(due, name, budgets, over)
        got = repo.claim(name, ids, lease_seconds)
        # Tokens not used by a claim that found fewer jobs go back to the bucket.
        health[name] = _refund(health[name], granted - len(got), limits.rates.get(name))
        claimed += got
    for name, value in health.items():
        if value != before[name]:
            repo.save_health(name, value)
    for batch_id in over:
        repo.stop_for_budget(batch_id)
    return claimed


def within_budget(
    due: Sequence[Candidate],
    provider: str,
    budgets: dict[uuid.UUID, BudgetUse],
    over: set[uuid.UUID],
) -> list[uuid.UUID]:
    """The jobs of ``due`` that fit their batch's budget at ``provider``'s list price.

    ``budgets`` is updated with what is committed; a batch a job does not fit joins ``over``
    and none of its later jobs is taken (a smaller job behind it would break row order).
    """
    taken: list[uuid.UUID] = []
    for job in due:
        use = budgets.get(job.batch_id) if job.batch_id else None
        if use is None:
            taken.append(job.job_id)
            continue
        if job.batch_id in over:
            continue
        cost = list_price(provider, job.model, job.num_images)
        if use.committed_usd + cost > use.budget_usd:
            over.add(use.batch_id)
            continue
        budgets[use.batch_id] = replace(use, committed_usd=use.committed_usd + cost)
        taken.append(job.job_id)
    return taken


def _refuses(health: Health, room: int) -> bool:
    # Only a provider whose breaker is not closed hands its queue on; one that is merely
    # busy keeps its jobs, which chose it first.
    return room == 0 and health.state is not BreakerState.CLOSED


def _refund(health: Health, unused: int, rate: float | None) -> Health:
    if rate is None or unused <= 0:
        return health
    return replace(health, tokens=health.tokens + unused)


def record_failure(repo: Repository, provider: str, policy: BreakerPolicy) -> None:
    """Count a failure on the provider's side toward its breaker."""
    health = repo.lock_health(provider)
    repo.save_health(provider, after_failure(health, datetime.now(UTC), policy))


def counts_against(fault: Fault) -> bool:
    """Whether a fault says the provider is unwell (not busy, not given bad input).

    An output the quality gate refused is not: the provider answered, and one bad image
    must not take a provider out of rotation for everyone.
    """
    return fault.kind is ErrorKind.RETRYABLE and fault.code not in QUALITY_CODES


def next_provider(job: JobRecord, current: str, fault: Fault) -> str:
    """Where the next attempt goes: after a retryable failure, the next provider listed."""
    providers: Sequence[str] = job.providers
    if fault.kind is not ErrorKind.RETRYABLE or current not in providers or len(providers) < 2:
        return current
    return providers[(providers.index(current) + 1) % len(providers)]
