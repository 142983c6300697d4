"""Which provider gets which job: learned limits, submit rates, breakers, spill-over.

Dispatch runs in one transaction under an advisory lock: it reads how many jobs each
provider has in flight and each provider's health, works out how many new jobs each may
take (its learned limit, :mod:`worker.values.routing`), and claims them. A provider whose
breaker is open takes none, and the queued jobs waiting for it move to the next provider
on their own list that can take them; a full provider's ``spread`` and ``cheapest`` jobs
spill over to the next of their providers with room.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

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
from worker.values.routing import CapacityPolicy, cut, latency_skip

#: Most jobs one dispatch round claims for one provider, so one transaction stays short.
CLAIM_BATCH = 1000


def dispatch(
    repo: Repository,
    limits: Limits,
    lease_seconds: float,
    latency: Mapping[str, float] | None = None,
) -> list[Claimed]:
    """Claim due queued jobs within every provider's limit, rate and breaker.

    First each provider takes the jobs waiting for it (and those of a provider whose breaker
    is open). Then spill-over: a provider with room left takes ``spread`` and ``cheapest``
    jobs waiting for a full provider, when it is the first of the job's providers with room
    (:meth:`Repository.spill_due`); a slower provider (by ``latency``, seconds per job)
    leaves to faster full ones the jobs they would finish first.

    A batch with a budget is also held to it: a job is claimed only while the batch's
    spend plus the list price of what it has in flight, and of this job, stays within it.
    The first job that would pass it stops the batch: its queued jobs are canceled
    (``budget_exhausted``) and the batch says so.
    """
    repo.lock_dispatch()
    in_flight = repo.in_flight()
    health = repo.lock_all_health(list(limits.order))
    before = dict(health)
    now = datetime.now(UTC)
    room: dict[str, int] = {}
    for name in limits.order:
        health[name], breaker_limit = admission(
            health[name], now, limits.breaker, in_flight.get(name, 0)
        )
        free = max(limits.limit(name, health[name]) - in_flight.get(name, 0), 0)
        room[name] = free if breaker_limit is None else min(free, breaker_limit)
    closed = [name for name in limits.order if _refuses(health[name], room[name])]
    waiting = repo.waiting_for(limits.order)
    claims = _Claims(repo, limits, lease_seconds, health, now)
    for name in limits.order:
        others = [n for n in closed if n != name]
        # Nothing waits for it, itself or through failover: no query, and no tokens taken.
        if room[name] == 0 or waiting.isdisjoint([name, *others]):
            continue
        room[name] -= claims.take(name, room[name], partial(repo.due, name, stand_in_for=others))
    _spill_over(repo, limits, claims, room, waiting, latency or {})
    for name, value in health.items():
        if value != before[name]:
            repo.save_health(name, value)
    for batch_id in claims.over:
        repo.stop_for_budget(batch_id)
    return claims.claimed


def _spill_over(
    repo: Repository,
    limits: Limits,
    claims: _Claims,
    room: dict[str, int],
    waiting: set[str],
    latency: Mapping[str, float],
) -> None:
    """Let providers with room take over the jobs waiting for full ones."""
    limit = {name: limits.limit(name, claims.health[name]) for name in limits.order}
    full = {name: limit[name] for name in limits.order if not room[name]}
    if waiting.isdisjoint(full):
        return
    for name in limits.order:
        wanted = room[name]
        # Only a working provider finishes jobs sooner: an open breaker's (or a paused
        # one's) takes none.
        working = {n: v for n, v in full.items() if _working(claims.health[n])}
        skip = latency_skip(name, latency, working) if wanted else 0
        if skip:
            backlog = repo.spill_backlog(name, list(full), skip + wanted)
            wanted = min(wanted, max(backlog - skip, 0))
        if not wanted:
            continue
        room[name] -= claims.take(name, wanted, partial(repo.spill_due, name, full=list(full)))
        if not room[name]:
            full[name] = limit[name]


class _Claims:
    """What one dispatch round claims: within each provider's rate and each batch's budget."""

    def __init__(
        self,
        repo: Repository,
        limits: Limits,
        lease_seconds: float,
        health: dict[str, Health],
        now: datetime,
    ) -> None:
        self.repo = repo
        self.limits = limits
        self.lease_seconds = lease_seconds
        self.health = health
        self.now = now
        self.budgets = repo.budgets()
        self.over: set[uuid.UUID] = set()
        self.claimed: list[Claimed] = []

    def take(self, provider: str, wanted: int, fetch: Callable[[int], list[Candidate]]) -> int:
        """Claim up to ``wanted`` of the jobs ``fetch(n)`` finds for ``provider``; how many."""
        rate = self.limits.rates.get(provider)
        self.health[provider], granted = take_tokens(self.health[provider], self.now, rate, wanted)
        if granted == 0:
            return 0
        due = fetch(min(granted, CLAIM_BATCH))
        ids = within_budget(due, provider, self.budgets, self.over)
        got = self.repo.claim(provider, ids, self.lease_seconds)
        # Tokens not used by a claim that found fewer jobs go back to the bucket.
        self.health[provider] = _refund(self.health[provider], granted - len(got), rate)
        self.claimed += got
        return len(got)


class LatencyEstimates:
    """Each provider's recent time per job, read at most every ``refresh_seconds``."""

    def __init__(self, window_seconds: float = 300.0, refresh_seconds: float = 5.0) -> None:
        self._window = window_seconds
        self._refresh = refresh_seconds
        self._read_at = -math.inf
        self._values: dict[str, float] = {}

    def get(self, repo: Repository) -> dict[str, float]:
        """The estimates, read again when they are older than ``refresh_seconds``."""
        now = time.monotonic()
        if now - self._read_at >= self._refresh:
            self._values = repo.latencies(self._window)
            self._read_at = now
        return self._values


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


def _working(health: Health) -> bool:
    return health.state is BreakerState.CLOSED and health.paused_at is None


def _refuses(health: Health, room: int) -> bool:
    # A provider whose breaker is not closed, or that an operator paused, hands its whole
    # queue on, whatever the jobs' routing; one that is merely busy keeps its ``failover``
    # jobs, which chose it first.
    return room == 0 and not _working(health)


def _refund(health: Health, unused: int, rate: float | None) -> Health:
    if rate is None or unused <= 0:
        return health
    return replace(health, tokens=health.tokens + unused)


def record_rate_limit(repo: Repository, provider: str, policy: CapacityPolicy) -> None:
    """``provider`` answered a submission with 429 or queue-full: cut its learned limit."""
    if not policy.learning:
        return
    health = repo.lock_health(provider)
    now = datetime.now(UTC)
    # What the provider holds of ours: it said no at about that many.
    accepted = repo.running_at(provider)
    lowered = cut(health.learned_limit, health.limit_cut_at, accepted, now, policy)
    if lowered is not None:
        repo.save_health(provider, replace(health, learned_limit=lowered, limit_cut_at=now))


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
