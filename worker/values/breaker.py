"""Provider health: a circuit breaker and a submit-rate bucket, as pure functions, and the
:class:`Limits` that bound admission to each provider.

The state lives in PostgreSQL (``provider_health``) so every worker and the scheduler see
one breaker per provider; these functions decide, the repository persists.

- **closed**: the provider is healthy; dispatch admits up to its free capacity.
- **open**: ``failure_threshold`` provider failures in a row (5xx, timeouts, lost
  requests; not rate limits, not bad input). Dispatch admits nothing for ``cooldown``
  seconds; queued jobs that list another provider move to it.
- **half_open**: the cooldown passed; dispatch admits one probe. Its success closes the
  breaker (``Repository.record_success``), its failure opens it again for another cooldown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from worker.values.routing import CapacityPolicy, current


class BreakerState(StrEnum):
    """Where a provider's circuit breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open."""

    failure_threshold: int = 5
    cooldown_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Health:
    """One provider's breaker and its submit-rate bucket."""

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    #: Submit tokens left at ``tokens_at`` (ignored when the provider has no rate limit).
    tokens: float = 0.0
    tokens_at: datetime | None = None
    #: The in-flight limit learned from its answers (:mod:`worker.values.routing`); None:
    #: not heard from yet.
    learned_limit: float | None = None
    #: When a rate-limit answer last cut the limit (None: never).
    limit_cut_at: datetime | None = None
    #: Operator controls, written only by their actions: paused since (None: not paused),
    #: and a ceiling in place of the configured capacity (None: the configured one).
    paused_at: datetime | None = None
    capacity_override: int | None = None

    @property
    def healthy(self) -> bool:
        """Closed with no failure counted: nothing to record after a success."""
        return self.state is BreakerState.CLOSED and self.consecutive_failures == 0


def after_failure(health: Health, now: datetime, policy: BreakerPolicy) -> Health:
    """A provider call failed on the provider's side: count it, open at the threshold."""
    failures = health.consecutive_failures + 1
    if health.state is BreakerState.HALF_OPEN or failures >= policy.failure_threshold:
        return replace(
            health, state=BreakerState.OPEN, consecutive_failures=failures, opened_at=now
        )
    return replace(health, consecutive_failures=failures)


def admission(
    health: Health, now: datetime, policy: BreakerPolicy, in_flight: int
) -> tuple[Health, int | None]:
    """How many new jobs the breaker lets dispatch send (None: no limit from the breaker).

    An open breaker whose cooldown has passed turns half-open here, which admits one probe
    while nothing else of that provider is in flight.
    """
    if health.state is BreakerState.OPEN:
        assert health.opened_at is not None
        if now < health.opened_at + timedelta(seconds=policy.cooldown_seconds):
            return health, 0
        health = replace(health, state=BreakerState.HALF_OPEN)
    if health.state is BreakerState.HALF_OPEN:
        return health, 0 if in_flight else 1
    return health, None


def take_tokens(
    health: Health, now: datetime, rate: float | None, wanted: int
) -> tuple[Health, int]:
    """Take up to ``wanted`` submit tokens from a bucket refilled at ``rate`` per second.

    The bucket holds at most one second's worth (``rate`` tokens, at least one), so an idle
    provider does not save up a burst. Without a rate every request is granted.
    """
    if rate is None:
        return health, wanted
    burst = max(rate, 1.0)
    elapsed = (now - health.tokens_at).total_seconds() if health.tokens_at else burst / rate
    tokens = min(burst, health.tokens + max(elapsed, 0.0) * rate)
    granted = min(wanted, math.floor(tokens))
    return replace(health, tokens=tokens - granted, tokens_at=now), granted


@dataclass(frozen=True, slots=True)
class Limits:
    """What bounds admission to each provider."""

    #: Providers in dispatch order (the default order first).
    order: tuple[str, ...]
    #: Each provider's configured in-flight limit: the ceiling of its learned one.
    capacity: Mapping[str, int]
    rates: Mapping[str, float | None]
    breaker: BreakerPolicy
    learning: CapacityPolicy = field(default_factory=CapacityPolicy)

    def ceiling(self, provider: str, health: Health) -> int:
        """``provider``'s in-flight ceiling: an operator's override, else its capacity."""
        if health.capacity_override is not None:
            return health.capacity_override
        return self.capacity.get(provider, 0)

    def limit(self, provider: str, health: Health) -> int:
        """How many jobs ``provider`` may have in flight now (learned, within its ceiling);
        none while an operator has it paused."""
        if health.paused_at is not None:
            return 0
        return current(health.learned_limit, self.ceiling(provider, health), self.learning)
