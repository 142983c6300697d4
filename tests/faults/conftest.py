"""The fault-injection suite: a few hundred jobs on the real processes, with things breaking.

Every scenario ends with the same checks (:func:`assert_nothing_lost_or_paid_twice`):
every job ends terminal, none is lost, each succeeded job was finalized once, and each
emulator's count of accepted (paid) submissions equals the attempts editq recorded for it.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from models.state import TERMINAL_STATES, JobState
from models.tables import Attempt, Job, JobEvent, JobOutput
from tests.acceptance.conftest import PROVIDERS, Running, start_stack
from tests.waiting import wait_until

#: Jobs a scenario runs.
JOBS = 240
#: Timing that makes repairs quick enough to watch in a test. The lease is left at its
#: default: a dead worker's job must be repaired while the provider's output still works.
FAULT_ENV = {
    "EDITQ_SUBMIT_GRACE_SECONDS": "30",
    "EDITQ_WEBHOOK_GRACE_SECONDS": "3",
    "EDITQ_POLL_SECONDS": "0.5",
    "EDITQ_POLL_MAX_SECONDS": "2",
    "EDITQ_BACKOFF_BASE_SECONDS": "0.3",
    "EDITQ_BACKOFF_MAX_SECONDS": "2",
    "EDITQ_MAX_ATTEMPTS": "10",
    "EDITQ_BREAKER_COOLDOWN_SECONDS": "1",
}
#: Provider outputs expire a minute after the provider finished, as Runware's may.
OUTPUT_TTL = ("--result-ttl", "60")
#: The emulators' behaviour unless a scenario changes it.
STEADY = {"latency": 0.5, "jitter": 0.3, "webhook_retry_delays": [0.5, 1.0, 2.0, 4.0]}


@pytest.fixture(scope="session")
def engine(test_env: dict[str, str]) -> Iterator[Engine]:
    built = create_engine(test_env["EDITQ_DATABASE_URL"], pool_pre_ping=True)
    yield built
    built.dispose()


@pytest.fixture
def stack(test_env: dict[str, str], engine: Engine, tmp_path: Path) -> Iterator[Running]:
    """A fresh stack over empty tables, with the emulators in their steady behaviour."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE batches, jobs, attempts, job_outputs, job_events, provider_health,"
                " scheduler_lease, schedulers CASCADE"
            )
        )
    for running in start_stack(
        test_env, tmp_path / "logs", webhooks=True, extra_env=FAULT_ENV, emulator_args=OUTPUT_TTL
    ):
        for provider in PROVIDERS:
            running.faults(provider, **STEADY)
        yield running


def submit_all(stack: Running, count: int = JOBS, **changes: Any) -> list[str]:
    """Submit ``count`` jobs, each listing the three providers (first each in turn), with
    the default routing: a provider that is full or failing spills its jobs to the others."""
    return [
        stack.submit(providers=[PROVIDERS[(i + k) % 3] for k in range(3)], **changes)["id"]
        for i in range(count)
    ]


def restart_workers(stack: Running) -> None:
    """kill -9 every worker process (the main one and its children), then start anew."""
    stack.stack.kill("worker", signal.SIGKILL)
    stack.stack.procs["worker"].wait(10)
    stack.stack.start("worker", ["worker", "--concurrency", "2"])


def assert_nothing_lost_or_paid_twice(
    stack: Running, engine: Engine, job_ids: list[str], timeout: float = 240
) -> Counter[str]:
    """The suite's promise, checked after every scenario; returns jobs by final state."""

    def all_ended() -> bool:
        # A process that died (not one a scenario killed and restarted) fails at once.
        exited = stack.stack.exited()
        assert not exited, f"exited: {exited}; see the logs in {stack.stack.logs}"
        return not _unfinished(engine, job_ids)

    try:
        wait_until(all_ended, timeout=timeout, interval=0.5, what="every job to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; unfinished: {dict(_unfinished(engine, job_ids))}") from None
    with engine.connect() as conn:
        rows = conn.execute(select(Job.id, Job.state).where(Job.id.in_(job_ids))).all()
        succeeds = Counter(
            str(job_id)
            for (job_id,) in conn.execute(
                select(JobEvent.job_id).where(JobEvent.transition == "succeed")
            )
        )
        outputs = Counter(str(job_id) for (job_id,) in conn.execute(select(JobOutput.job_id)))
        # An output the provider delivered is never paid for again: no attempt may end for
        # want of one (output_unavailable) when copies run within the outputs' minute.
        lost_outputs = conn.scalar(
            select(func.count()).where(Attempt.error_code == "output_unavailable")
        )
        recorded = dict(
            conn.execute(
                select(Attempt.provider, func.count())
                .where(Attempt.request_id.is_not(None))
                .group_by(Attempt.provider)
            ).all()
        )
    assert len(rows) == len(job_ids)  # none lost
    assert lost_outputs == 0, f"{lost_outputs} delivered output(s) expired before the copy"
    states = Counter(state.value for _, state in rows)
    assert set(states) <= {s.value for s in TERMINAL_STATES}
    for job_id, state in rows:
        expected = 1 if state is JobState.SUCCEEDED else 0
        assert succeeds[str(job_id)] == expected, (
            f"job {job_id} finalized {succeeds[str(job_id)]} times"
        )
        if state is JobState.SUCCEEDED:
            assert outputs[str(job_id)] >= 1
    for provider in PROVIDERS:
        paid = stack.stats(provider)["accepted"]
        assert paid == recorded.get(provider, 0), f"{provider}: {paid} paid, {recorded} recorded"
    return states


def _unfinished(engine: Engine, job_ids: list[str]) -> Counter[str]:
    """The jobs not yet ended, by state."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Job.state, func.count())
            .where(Job.id.in_(job_ids), Job.state.not_in(TERMINAL_STATES))
            .group_by(Job.state)
        ).all()
    return Counter({state.value: count for state, count in rows})
