"""What a transaction did reaches the metrics once it commits, and only then.

Each test runs the repository's real transitions on PostgreSQL through a
:class:`worker.database.Database` whose ``observe`` keeps what it is handed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import TypeVar

import pytest

from models.state import JobState
from tests.factories import job_request
from tests.integration.test_batches import catalog, submit
from worker.database import Database
from worker.faults import ErrorKind, Fault
from worker.values.observations import (
    AttemptEnded,
    BudgetStopped,
    JobFinished,
    Observation,
    Spent,
    Wait,
    Waited,
)
from worker.wiring import Container

pytestmark = pytest.mark.integration
T = TypeVar("T")


class Kept:
    """An ``observe`` that keeps every committed transaction's observations."""

    def __init__(self) -> None:
        self.seen: list[Observation] = []

    def __call__(self, observations: Sequence[Observation]) -> None:
        self.seen.extend(observations)

    def of(self, kind: type[T]) -> list[T]:
        return [o for o in self.seen if isinstance(o, kind)]


def database(container: Container) -> tuple[Database, Kept]:
    kept = Kept()
    return Database(container.sessions, "worker", kept), kept


def new_job(container: Container) -> uuid.UUID:
    return container.jobs("test").create(job_request(providers=("fal",)))[0].id


def test_a_job_s_life_is_observed_stretch_by_stretch(container: Container) -> None:
    db, kept = database(container)
    job_id = new_job(container)
    with db.transaction() as repo:
        [claim] = repo.claim("fal", [job_id], lease_seconds=60)
    [queued] = kept.of(Waited)
    assert queued == Waited(Wait.QUEUE, "fal", queued.seconds) and queued.seconds >= 0
    with db.transaction() as repo:
        found = repo.job_at(job_id, claim.attempt, JobState.SUBMITTING)
        assert found is not None
        assert repo.mark_running(found[1], "req-1", {"images": 1}, poll_in_seconds=60)
    with db.transaction() as repo:
        found = repo.job_at(job_id, claim.attempt, JobState.RUNNING)
        assert found is not None
        assert repo.begin_finalize(found[1], None, {"outputs": []}, lease_seconds=60)
    at_provider = [o for o in kept.of(Waited) if o.wait is Wait.PROVIDER]
    assert [o.provider for o in at_provider] == ["fal"]
    token = uuid.uuid4()
    with db.transaction() as repo:
        assert repo.take_finalize_lease(job_id, claim.attempt, token, 60)
        found = repo.job_at(job_id, claim.attempt, JobState.FINALIZING)
        assert found is not None
        job, attempt = found
        assert repo.succeed(job, attempt, token, [], Decimal("0.04"))

    assert kept.of(AttemptEnded) == [AttemptEnded("fal", "succeeded")]
    assert kept.of(Spent) == [Spent("fal", job.model, Decimal("0.04"))]
    [finished] = kept.of(JobFinished)
    assert (finished.provider, finished.state, finished.error_code) == ("fal", "succeeded", None)
    assert finished.seconds > 0


def test_a_rolled_back_transaction_counts_nothing(container: Container) -> None:
    db, kept = database(container)
    job_id = new_job(container)

    def claim_then_die() -> None:
        with db.transaction() as repo:
            assert repo.claim("fal", [job_id], lease_seconds=60)
            raise RuntimeError("the worker died before the commit")

    with pytest.raises(RuntimeError):
        claim_then_die()
    assert kept.seen == []
    assert container.jobs("test").get(job_id).job.state is JobState.QUEUED


def test_a_transition_that_lost_its_guard_counts_nothing(container: Container) -> None:
    db, kept = database(container)
    job_id = new_job(container)
    with db.transaction() as repo:
        [claim] = repo.claim("fal", [job_id], lease_seconds=60)
        found = repo.job_at(job_id, claim.attempt, JobState.SUBMITTING)
        assert found is not None
    kept.seen.clear()
    fault = Fault(ErrorKind.TERMINAL, "moderated", "refused")
    with db.transaction() as repo:
        assert repo.fail(found[1], fault)
    with db.transaction() as repo:
        assert not repo.fail(found[1], fault)  # a redelivered message: already failed
    assert kept.of(AttemptEnded) == [AttemptEnded("fal", "failed")]
    assert [(o.state, o.error_code) for o in kept.of(JobFinished)] == [("failed", "moderated")]


def test_a_429_is_its_own_attempt_outcome(container: Container) -> None:
    db, kept = database(container)
    job_id = new_job(container)
    with db.transaction() as repo:
        [claim] = repo.claim("fal", [job_id], lease_seconds=60)
        found = repo.job_at(job_id, claim.attempt, JobState.SUBMITTING)
        assert found is not None
        fault = Fault(ErrorKind.RATE_LIMITED, "rate_limited", "full")
        assert repo.requeue(found[1], fault, 1.0, counts=False, next_provider="fal")
    assert kept.of(AttemptEnded) == [AttemptEnded("fal", "rate_limited")]
    assert kept.of(JobFinished) == []  # back in the queue, not finished


def test_a_budget_stop_counts_the_batch_once_and_every_job_it_cancels(
    container: Container,
) -> None:
    db, kept = database(container)
    batch_id = submit(container, catalog(3), budget_usd=Decimal("0.01"))
    with db.transaction() as repo:
        repo.stop_for_budget(batch_id)
    with db.transaction() as repo:
        repo.stop_for_budget(batch_id)  # the next round: nothing left to stop
    assert kept.of(BudgetStopped) == [BudgetStopped()]
    finished = kept.of(JobFinished)
    assert len(finished) == 3
    assert {(o.state, o.error_code) for o in finished} == {("canceled", "budget_exhausted")}
