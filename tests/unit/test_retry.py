"""Backoff, failure verdicts and poll intervals are pure functions of their inputs."""

from __future__ import annotations

import random

import pytest

from worker.faults import ErrorKind, Fault
from worker.values.retry import RetryPolicy, Verdict, backoff_seconds, decide, poll_interval

POLICY = RetryPolicy(base_seconds=2.0, max_seconds=60.0, rate_limit_seconds=5.0)


def fault(kind: ErrorKind, retry_after: float | None = None) -> Fault:
    return Fault(kind, f"{kind.value}_code", "provider said so", retry_after)


@pytest.mark.parametrize(
    ("failures", "ceiling"), [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (9, 60.0)]
)
def test_backoff_is_full_jitter_under_an_exponential_ceiling(failures: int, ceiling: float) -> None:
    rng = random.Random(1)
    draws = [backoff_seconds(failures, POLICY, rng) for _ in range(2000)]
    assert min(draws) >= 0 and max(draws) <= ceiling
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(draws) < ceiling * 0.05 and max(draws) > ceiling * 0.95


def test_terminal_faults_fail_at_once() -> None:
    decision = decide(fault(ErrorKind.TERMINAL), 0, 5, POLICY, random.Random(0))
    assert decision.verdict is Verdict.FAIL


def test_a_rate_limit_waits_for_retry_after_and_does_not_count() -> None:
    decision = decide(fault(ErrorKind.RATE_LIMITED, 10.0), 4, 5, POLICY, random.Random(0))
    assert decision.verdict is Verdict.REQUEUE and not decision.counts
    assert 10.0 <= decision.delay_seconds <= 11.0


def test_a_rate_limit_without_retry_after_uses_the_default_wait() -> None:
    decision = decide(fault(ErrorKind.RATE_LIMITED), 0, 5, POLICY, random.Random(0))
    assert 5.0 <= decision.delay_seconds <= 6.0


def test_retryable_faults_back_off_until_max_attempts() -> None:
    rng = random.Random(0)
    verdicts = [decide(fault(ErrorKind.RETRYABLE), n, 5, POLICY, rng) for n in range(5)]
    assert [d.verdict for d in verdicts] == [Verdict.REQUEUE] * 4 + [Verdict.FAIL]
    assert all(d.counts for d in verdicts)


def test_poll_interval_grows_with_age_within_bounds() -> None:
    assert poll_interval(0, 1.0, 15.0) == 1.0
    assert poll_interval(30, 1.0, 15.0) == pytest.approx(6.0)
    assert poll_interval(3600, 1.0, 15.0) == 15.0
