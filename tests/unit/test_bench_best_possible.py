"""The benchmark's yardstick for the latency-bound run: what a perfect dispatcher would take."""

from __future__ import annotations

import pytest

from bench.ideal import best_possible


def test_without_jitter_a_perfect_dispatcher_takes_exactly_the_ideal() -> None:
    assert best_possible(1000, 100, 3.0, 0.0, runs=3) == pytest.approx(30.0)


def test_jitter_makes_even_a_perfect_run_longer_by_less_than_one_job() -> None:
    best = best_possible(1000, 100, 3.0, 0.5, runs=50)

    assert 30.0 < best < 30.0 + 3.5


def test_one_job_a_slot_ends_with_the_slowest_draw() -> None:
    # The largest of n uniform draws on [2.5, 3.5] averages 2.5 + n / (n + 1).
    best = best_possible(100, 100, 3.0, 0.5, runs=400)

    assert best == pytest.approx(2.5 + 100 / 101, abs=0.01)
