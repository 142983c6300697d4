"""The circuit breaker and the submit-rate bucket decide from (health, now) alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.values.breaker import (
    BreakerPolicy,
    BreakerState,
    Health,
    admission,
    after_failure,
    take_tokens,
)

POLICY = BreakerPolicy(failure_threshold=3, cooldown_seconds=30)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def failures(count: int, start: Health | None = None) -> Health:
    health = start or Health()
    for _ in range(count):
        health = after_failure(health, T0, POLICY)
    return health


def test_the_breaker_opens_at_the_threshold() -> None:
    assert failures(2).state is BreakerState.CLOSED
    opened = failures(3)
    assert opened.state is BreakerState.OPEN and opened.opened_at == T0


def test_a_closed_breaker_sets_no_limit() -> None:
    assert admission(failures(2), T0, POLICY, in_flight=7) == (failures(2), None)


def test_an_open_breaker_admits_nothing_during_the_cooldown() -> None:
    health, limit = admission(failures(3), T0 + timedelta(seconds=29), POLICY, in_flight=0)
    assert limit == 0 and health.state is BreakerState.OPEN


def test_after_the_cooldown_one_probe_is_admitted() -> None:
    later = T0 + timedelta(seconds=31)
    health, limit = admission(failures(3), later, POLICY, in_flight=0)
    assert health.state is BreakerState.HALF_OPEN and limit == 1
    # While the probe is in flight, nothing else goes.
    assert admission(health, later, POLICY, in_flight=1) == (health, 0)


def test_a_failed_probe_opens_the_breaker_again() -> None:
    probing, _ = admission(failures(3), T0 + timedelta(seconds=31), POLICY, in_flight=0)
    again = after_failure(probing, T0 + timedelta(seconds=32), POLICY)
    assert again.state is BreakerState.OPEN
    assert again.opened_at == T0 + timedelta(seconds=32)


def test_without_a_rate_every_request_is_granted() -> None:
    assert take_tokens(Health(), T0, None, 500)[1] == 500


def test_the_bucket_grants_the_rate_per_second_and_holds_no_more_than_a_second() -> None:
    health, granted = take_tokens(Health(), T0, 10.0, 100)
    assert granted == 10  # a fresh bucket starts full: one second's worth
    health, granted = take_tokens(health, T0 + timedelta(seconds=0.5), 10.0, 100)
    assert granted == 5
    health, granted = take_tokens(health, T0 + timedelta(seconds=60), 10.0, 100)
    assert granted == 10  # an idle minute does not save up a burst
    assert take_tokens(health, T0 + timedelta(seconds=60), 10.0, 100)[1] == 0
