"""A transition is one statement: job, event and attempt move together or not at all.

Transition statements are built once per shape and reused; these tests run the same shape
for several jobs with different values, so a value baked into the shared statement would
show up on the wrong job.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

import pytest

from models.state import JobState
from tests.factories import job_request
from worker.faults import ErrorKind, Fault
from worker.repository import Repository
from worker.values.records import AttemptRecord
from worker.wiring import Container

pytestmark = pytest.mark.integration


def claimed(container: Container, count: int) -> list[AttemptRecord]:
    """``count`` jobs claimed for fal, each with its first attempt."""
    jobs = container.jobs("test")
    ids = [jobs.create(job_request(providers=("fal",)))[0].id for _ in range(count)]
    with container.sessions.begin() as session:
        repo = Repository(session, "test")
        got = repo.claim("fal", ids, lease_seconds=60)
        assert len(got) == count
        found = [repo.job_at(c.job_id, c.attempt, JobState.SUBMITTING) for c in got]
    return [attempt for _, attempt in filter(None, found)]


def test_each_job_keeps_its_own_values_through_a_shared_statement(container: Container) -> None:
    attempts = claimed(container, 3)
    with container.sessions.begin() as session:
        repo = Repository(session, "worker")
        for n, attempt in enumerate(attempts):
            assert repo.mark_running(attempt, f"req-{n}", {"n": n}, poll_in_seconds=10 * n)
    for n, attempt in enumerate(attempts):
        detail = container.jobs("test").get(attempt.job_id)
        assert detail.job.state is JobState.RUNNING
        [sent] = detail.attempts
        assert (sent.outcome, sent.request_id, sent.provider_data) == (
            "running",
            f"req-{n}",
            {"n": n},
        )
        event = detail.events[-1]
        assert (event.transition, event.actor, event.data) == (
            "mark_running",
            "worker",
            {"request_id": f"req-{n}"},
        )


def test_a_turned_down_transition_writes_no_event_and_leaves_the_attempt(
    container: Container,
) -> None:
    [attempt] = claimed(container, 1)
    with container.sessions.begin() as session:
        # Still submitting: a job cannot succeed before it was finalized.
        repo = Repository(session, "worker")
        job = repo.job(attempt.job_id)
        assert job is not None
        assert not repo.succeed(job, attempt, uuid.uuid4(), [], Decimal(1))
    detail = container.jobs("test").get(attempt.job_id)
    assert detail.job.state is JobState.SUBMITTING
    assert detail.job.cost_usd == Decimal(0)
    assert [e.transition for e in detail.events] == ["create", "claim"]
    assert (detail.attempts[0].outcome, detail.attempts[0].cost_usd) == ("pending", None)


def test_counters_add_to_what_each_row_holds(container: Container) -> None:
    attempts = claimed(container, 2)
    faults = [Fault(ErrorKind.RETRYABLE, f"code_{n}", f"message {n}") for n in range(2)]
    with container.sessions.begin() as session:
        repo = Repository(session, "worker")
        # One counts against the job's attempts, the other does not.
        assert repo.requeue(attempts[0], faults[0], 5, counts=True, next_provider="fal")
        assert repo.requeue(attempts[1], faults[1], 50, counts=False, next_provider="fal")
    first, second = (container.jobs("test").get(a.job_id) for a in attempts)
    assert (first.job.failed_attempts, second.job.failed_attempts) == (1, 0)
    assert (first.job.error_code, second.job.error_code) == ("code_0", "code_1")
    assert first.attempts[0].error_message == "message 0"
    assert second.attempts[0].error_message == "message 1"
    # 5 s and 50 s from the same clock: the second runs 45 s after the first.
    gap = (second.job.run_after - first.job.run_after).total_seconds()
    assert 44 < gap < 46
    assert first.events[-1].data == {"kind": "retryable", "delay_seconds": 5}
    assert second.events[-1].reason == "code_1"
    assert first.job.cost_usd == second.job.cost_usd == Decimal(0)


def test_a_stale_attempt_or_another_job_moves_nothing(container: Container) -> None:
    attempts = claimed(container, 2)
    stale = dataclasses.replace(attempts[0], number=attempts[0].number + 1)
    elsewhere = dataclasses.replace(attempts[1], job_id=uuid.uuid4())
    with container.sessions.begin() as session:
        repo = Repository(session, "worker")
        assert not repo.mark_running(stale, "req", {}, 1)
        assert not repo.mark_running(elsewhere, "req", {}, 1)
    for attempt in attempts:
        detail = container.jobs("test").get(attempt.job_id)
        assert detail.job.state is JobState.SUBMITTING
        assert detail.attempts[0].request_id is None
