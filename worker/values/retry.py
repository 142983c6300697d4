"""Pure decisions about time: backoff, what a failure does to a job, when to poll next.

Functions of (what happened, attempt, now) only, so they are unit-tested with no database.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from worker.faults import ErrorKind, Fault


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before trying a failed job again."""

    base_seconds: float = 2.0
    max_seconds: float = 300.0
    #: Wait after a 429 that carried no Retry-After.
    rate_limit_seconds: float = 5.0


def backoff_seconds(failures: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(failures-1))].

    Full jitter spreads a burst of jobs that failed together (a provider outage) so they
    do not come back together.
    """
    ceiling = min(policy.max_seconds, policy.base_seconds * 2 ** max(failures - 1, 0))
    return rng.uniform(0, ceiling)


class Verdict(StrEnum):
    """What happens to a job after a failed attempt."""

    REQUEUE = "requeue"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict, the delay before the next attempt, and whether the attempt counts."""

    verdict: Verdict
    delay_seconds: float = 0.0
    counts: bool = True


def decide(
    fault: Fault,
    failed_attempts: int,
    max_attempts: int,
    policy: RetryPolicy,
    rng: random.Random,
) -> Decision:
    """Decide what a classified failure does to a job that has ``failed_attempts`` so far.

    Terminal faults fail at once; a rate limit waits (Retry-After when given) without using
    up an attempt; anything retryable backs off until ``max_attempts`` have failed.
    """
    if fault.kind is ErrorKind.TERMINAL:
        return Decision(Verdict.FAIL)
    if fault.kind is ErrorKind.RATE_LIMITED:
        delay = fault.retry_after if fault.retry_after is not None else policy.rate_limit_seconds
        # A little jitter so every job told "retry after 10 s" does not return at once.
        return Decision(Verdict.REQUEUE, delay + rng.uniform(0, 1), counts=False)
    failures = failed_attempts + 1
    if failures >= max_attempts:
        return Decision(Verdict.FAIL)
    return Decision(Verdict.REQUEUE, backoff_seconds(failures, policy, rng))


def poll_interval(age_seconds: float, first: float, ceiling: float) -> float:
    """Seconds until a running job is next polled, growing with its age.

    A young job is asked about often (most edits take seconds); an old one less often, so
    a provider's slow hour does not turn into a storm of status calls.
    """
    return max(first, min(ceiling, age_seconds * 0.2))
