"""Fault injection on a run of a few hundred jobs: crashes, outages, storms and bad webhooks."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from models.tables import Attempt, JobEvent, JobOutput
from tests.acceptance.conftest import PROVIDERS, Running
from tests.faults.conftest import (
    JOBS,
    assert_nothing_lost_or_paid_twice,
    restart_workers,
    submit_all,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.faults


def _progress(stack: Running, at_least: int) -> bool:
    done = stack.api.get("/v1/jobs", params={"state": "succeeded", "limit": 500}).json()["jobs"]
    return len(done) >= at_least


def test_kill_9_every_worker_three_times_mid_run(stack: Running, engine: Engine) -> None:
    jobs = submit_all(stack)
    for round_ in range(1, 4):
        wait_until(
            functools.partial(_progress, stack, round_ * JOBS // 5), timeout=120, what="progress"
        )
        restart_workers(stack)

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": JOBS}


def _steps_done(engine: Engine, at_least: int) -> bool:
    """Whether ``at_least`` steps (of every chain) have been stored."""
    finished = select(func.count()).where(JobEvent.transition.in_(("advance", "succeed")))
    with engine.connect() as conn:
        return int(conn.scalar(finished) or 0) >= at_least


def test_kill_9_every_worker_and_the_broker_restarted_mid_chain_pay_no_step_twice(
    stack: Running, engine: Engine, embedded_home: Path | None
) -> None:
    home = _embedded(embedded_home)
    from worker.dev import services

    chains = JOBS // 4
    steps = [{"prompt": "Put it on a beach"}, {"prompt": "Warm colour grade"}]
    jobs = submit_all(stack, chains, steps=steps)
    wait_until(functools.partial(_steps_done, engine, chains), timeout=120, what="steps done")
    restart_workers(stack)
    wait_until(functools.partial(_steps_done, engine, 2 * chains), timeout=120, what="steps done")
    services.down(home, only=["valkey"])  # every queued and unacknowledged message is gone
    services.up(home)

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": chains}
    with engine.connect() as conn:
        # Every step of every chain succeeded once, and was handed on once.
        paid = conn.execute(
            select(Attempt.job_id, Attempt.step, func.count())
            .where(Attempt.outcome == "succeeded")
            .group_by(Attempt.job_id, Attempt.step)
        ).all()
        advances = conn.scalar(select(func.count()).where(JobEvent.transition == "advance"))
        outputs = conn.scalar(select(func.count()).select_from(JobOutput))
    assert sorted(step for _, step, n in paid if n == 1) == sorted([1, 2, 3] * chains)
    assert len(paid) == 3 * chains and advances == 2 * chains and outputs == 3 * chains


def test_valkey_stopped_and_restarted_mid_run(
    stack: Running, engine: Engine, embedded_home: Path | None
) -> None:
    home = _embedded(embedded_home)
    from worker.dev import services

    jobs = submit_all(stack)
    wait_until(lambda: _progress(stack, JOBS // 4), timeout=120, what="progress")
    services.down(home, only=["valkey"])  # every queued and unacknowledged message is gone
    services.up(home)

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": JOBS}


def test_postgresql_restarted_mid_run(
    stack: Running, engine: Engine, embedded_home: Path | None
) -> None:
    home = _embedded(embedded_home)
    from worker.dev import services

    jobs = submit_all(stack)
    wait_until(lambda: _progress(stack, JOBS // 4), timeout=120, what="progress")
    services.down(home, only=["postgres"])
    services.up(home)

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": JOBS}


def test_a_provider_error_storm(stack: Running, engine: Engine) -> None:
    for provider in PROVIDERS:
        stack.faults(provider, rate_5xx=0.3, rate_429=0.1, retry_after=1)

    jobs = submit_all(stack)
    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    # Ten attempts at 30 % failures: a job fails for good about once in 170,000 jobs.
    assert states == {"succeeded": JOBS}
    rejected = sum(stack.stats(p)["rejected"] for p in PROVIDERS)
    assert rejected >= JOBS * 0.3  # the storm really happened


def test_webhooks_duplicated_reordered_and_dropped(stack: Running, engine: Engine) -> None:
    for provider in PROVIDERS:
        # Three copies of each, 30 % never sent; jitter and Runware's one callback per image
        # make them arrive in no particular order.
        stack.faults(provider, webhook_duplicates=2, webhook_drop_rate=0.3, jitter=0.45)

    jobs = submit_all(stack, input={"num_images": 2})
    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": JOBS}
    assert sum(stack.stats(p)["webhooks_dropped"] for p in PROVIDERS) > 0


def test_s3_unreachable_for_ten_seconds(
    stack: Running, engine: Engine, embedded_home: Path | None
) -> None:
    home = _embedded(embedded_home)
    from worker.dev import services

    jobs = submit_all(stack)
    wait_until(lambda: _progress(stack, JOBS // 5), timeout=120, what="progress")
    services.down(home, only=["seaweedfs"])
    stopped = time.monotonic()
    # The outage lasts ten seconds, and long enough that finalizing work piles up behind it.
    wait_until(
        lambda: time.monotonic() - stopped >= 10 and _stuck_finalizing(stack),
        timeout=60,
        what="ten seconds of outage with outputs waiting to be copied",
    )
    services.up(home)

    states = assert_nothing_lost_or_paid_twice(stack, engine, jobs)

    assert states == {"succeeded": JOBS}


def _stuck_finalizing(stack: Running) -> bool:
    waiting = stack.api.get("/v1/jobs", params={"state": "finalizing"}).json()["jobs"]
    return bool(waiting)


def _embedded(home: Path | None) -> Path:
    if home is None:
        pytest.skip("stopping servers needs the embedded services (unset EDITQ_*_URL)")
    return home
