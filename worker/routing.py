"""Which provider gets which job: capacity, submit rates, circuit breakers and failover.

Dispatch runs in one transaction under an advisory lock: it reads how many jobs each
provider has in flight and each provider's health, works out how many new jobs each may
take, and claims them. A provider whose breaker is open takes none, and the queued jobs
waiting for it move to the next provider on their own list that can take them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from worker.breaker import (
    BreakerPolicy,
    BreakerState,
    Health,
    admission,
    after_failure,
    take_tokens,
)
from worker.providers.base import ErrorKind, Fault
from worker.records import Claimed, JobRecord
from worker.repository import Repository

#: Most jobs one dispatch round claims for one provider, so one transaction stays short.
CLAIM_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """What bounds admission to each provider."""

    #: Providers in dispatch order (the default order first).
    order: tuple[str, ...]
    capacity: Mapping[str, int]
    rates: Mapping[str, float | None]
    breaker: BreakerPolicy


def dispatch(repo: Repository, limits: Limits, lease_seconds: float) -> list[Claimed]:
    """Claim due queued jobs within every provider's capacity, rate and breaker."""
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
        free = max(limits.capacity.get(name, 0) - in_flight.get(name, 0), 0)
        room[name] = free if breaker_limit is None else min(free, breaker_limit)
    closed = [name for name in limits.order if _refuses(health[name], room[name])]
    claimed: list[Claimed] = []
    for name in limits.order:
        if room[name] == 0:
            continue
        health[name], granted = take_tokens(health[name], now, limits.rates.get(name), room[name])
        if granted == 0:
            continue
        others = [n for n in closed if n != name]
        got = repo.claim(name, min(granted, CLAIM_BATCH), lease_seconds, stand_in_for=others)
        # Tokens not used by a claim that found fewer jobs go back to the bucket.
        health[name] = _refund(health[name], granted - len(got), limits.rates.get(name))
        claimed += got
    for name, value in health.items():
        if value != before[name]:
            repo.save_health(name, value)
    return claimed


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
    """Whether a fault says the provider is unwell (not busy, not given bad input)."""
    return fault.kind is ErrorKind.RETRYABLE


def next_provider(job: JobRecord, current: str, fault: Fault) -> str:
    """Where the next attempt goes: after a retryable failure, the next provider listed."""
    providers: Sequence[str] = job.providers
    if fault.kind is not ErrorKind.RETRYABLE or current not in providers or len(providers) < 2:
        return current
    return providers[(providers.index(current) + 1) % len(providers)]
