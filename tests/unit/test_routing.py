"""Routing as pure functions: the order a job prefers, the learned limit, the latency rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from worker.values import pricing
from worker.values.routing import CapacityPolicy, current, cut, grown, latency_skip, ordered

POLICY = CapacityPolicy(start=20, floor=2, decrease=0.9, hold_seconds=2.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_cheapest_orders_by_list_price_and_keeps_the_listed_order_among_equals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(pricing.PRICE_PER_IMAGE, ("runflow", "flux-kontext-pro"), Decimal("0.03"))
    listed = ("fal", "runware", "runflow")
    assert ordered("cheapest", listed, "flux-kontext-pro") == ("runflow", "fal", "runware")
    assert ordered("spread", listed, "flux-kontext-pro") == listed
    assert ordered("failover", listed, "flux-kontext-pro") == listed


def test_a_limit_starts_low_stays_within_floor_and_ceiling_and_is_the_ceiling_when_off() -> None:
    assert current(None, 200, POLICY) == 20
    assert current(None, 8, POLICY) == 8
    assert current(0.5, 200, POLICY) == 2
    assert current(57.9, 50, POLICY) == 50
    assert current(3.0, 200, CapacityPolicy(learning=False)) == 200


def test_a_limit_doubles_a_round_trip_until_the_first_429_then_grows_by_one() -> None:
    value: float | None = None
    for _ in range(20):  # one round trip at 20 in flight: twenty accepted submissions
        value = grown(value, None, 200, POLICY)
    assert value == 40
    after_cut = 40.0
    for _ in range(40):  # one round trip at 40, after a cut
        after_cut = grown(after_cut, T0, 200, POLICY)
    assert 40.9 < after_cut < 41.1
    assert grown(199.5, None, 200, POLICY) == 200


def test_a_429_cuts_to_a_share_of_what_was_in_flight_once_per_burst() -> None:
    lowered = cut(80.0, None, 52, T0, POLICY)
    assert lowered == pytest.approx(0.9 * 52)
    # More answers of the same burst do not cut again; a later one does.
    assert cut(lowered, T0, 50, T0 + timedelta(seconds=1), POLICY) is None
    assert cut(lowered, T0, 50, T0 + timedelta(seconds=3), POLICY) == pytest.approx(0.9 * 46.8)
    assert cut(3.0, None, 1, T0, POLICY) == 2  # never below the floor


def test_learning_finds_a_hidden_limit_with_few_429s() -> None:
    """A provider that takes 50 at once, configured for 200: round trips of 3 s."""
    hidden, value, cut_at, refused = 50, None, None, 0
    now = T0
    limits = []
    for _ in range(60):
        limit = current(value, 200, POLICY)
        accepted = min(limit, hidden)
        for _ in range(accepted):
            value = grown(value, cut_at, 200, POLICY)
        if limit > hidden:
            refused += limit - hidden
            lowered = cut(value, cut_at, hidden, now, POLICY)
            if lowered is not None:
                value, cut_at = lowered, now
        limits.append(limit)
        now += timedelta(seconds=3)
    settled = limits[10:]
    assert min(settled) >= 42 and max(settled) <= 52
    # Jobs run at about the hidden limit: 60 rounds of 50 is the best possible.
    assert sum(min(limit, hidden) for limit in limits) >= 0.9 * 60 * hidden
    assert refused < 0.05 * sum(limits)


def test_a_slower_provider_leaves_the_jobs_a_faster_full_one_finishes_first() -> None:
    latency = {"fast": 2.0, "slow": 6.0}
    # In 6 s the fast one, 40 at a time, finishes 40 x (6 - 2) / 2 = 80 jobs more.
    assert latency_skip("slow", latency, {"fast": 40}) == 80
    assert latency_skip("fast", latency, {"slow": 40}) == 0
    assert latency_skip("slow", latency, {}) == 0
    assert latency_skip("slow", {"fast": 2.0}, {"fast": 40}) == 0  # not measured yet
