"""Dispatch and guarded transitions on real PostgreSQL: capacity, order, races, duplicates."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import event, func, select, text, update

from emulators.server import RunningServer
from models.state import JobState
from models.tables import Job
from tests.factories import data_uri, job_request
from tests.waiting import wait_until
from worker.faults import ErrorKind, Fault
from worker.pipeline import scheduler
from worker.pipeline.steps import Pipeline
from worker.pipeline.wakeups import ListeningWakeups
from worker.repository import Repository
from worker.repository.sql import CHANNEL
from worker.usecases.batch_ingest import BatchOptions
from worker.values.breaker import BreakerPolicy, BreakerState, Health
from worker.values.records import JobFilter, NewJob
from worker.wiring import Container

pytestmark = pytest.mark.integration


def pipeline_with_capacity(container: Container, capacity: int) -> Pipeline:
    policy = container.policy()
    limits = dataclasses.replace(policy.limits, capacity={"fal": capacity})
    return container.pipeline("test", dataclasses.replace(policy, limits=limits))


def queue_jobs(container: Container, count: int, **changes: object) -> list[uuid.UUID]:
    return [container.jobs("test").create(job_request(**changes))[0].id for _ in range(count)]


def states(container: Container, ids: list[uuid.UUID]) -> list[JobState]:
    jobs = container.jobs("test")
    return [jobs.get(i).job.state for i in ids]


def test_dispatch_claims_no_more_than_free_capacity(container: Container) -> None:
    ids = queue_jobs(container, 10)
    pipeline = pipeline_with_capacity(container, 3)
    assert pipeline.dispatch() == 3
    assert pipeline.dispatch() == 0  # three are in flight: nothing is free
    assert sorted(states(container, ids)).count(JobState.SUBMITTING) == 3


def test_higher_priority_is_claimed_first(container: Container) -> None:
    low = queue_jobs(container, 3, priority=0)
    high = queue_jobs(container, 2, priority=10)
    assert pipeline_with_capacity(container, 2).dispatch() == 2
    assert states(container, high) == [JobState.SUBMITTING] * 2
    assert states(container, low) == [JobState.QUEUED] * 3


def test_jobs_waiting_for_backoff_are_not_claimed(container: Container) -> None:
    later = queue_jobs(container, 2)
    with container.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.id.in_(later))
            .values(run_after=Job.run_after + timedelta(hours=1))
        )
    assert pipeline_with_capacity(container, 10).dispatch() == 0


def test_concurrent_dispatchers_lock_disjoint_jobs(container: Container) -> None:
    queue_jobs(container, 6)
    first, second = container.sessions(), container.sessions()
    try:
        a = Repository(first, "a").due("fal", 3)
        b = Repository(second, "b").due("fal", 3)  # does not wait on a's locked rows
        assert len(a) == 3 and len(b) == 3
        assert not {c.job_id for c in a} & {c.job_id for c in b}
    finally:
        first.rollback()
        second.rollback()
        first.close()
        second.close()


def test_a_duplicate_submit_message_calls_the_provider_once(
    container: Container, fal_emulator: RunningServer
) -> None:
    [job_id] = queue_jobs(container, 1)
    pipeline = pipeline_with_capacity(container, 5)
    before = httpx.get(f"{fal_emulator.url}/_emulator/stats").json()["accepted"]
    assert pipeline.dispatch() == 1
    assert pipeline.submit(job_id, 1) == "running"
    assert pipeline.submit(job_id, 1) == "stale"  # the job moved on
    after = httpx.get(f"{fal_emulator.url}/_emulator/stats").json()["accepted"]
    assert after - before == 1
    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.RUNNING and len(detail.attempts) == 1


def test_a_submit_redelivered_while_the_first_is_in_flight_stops(container: Container) -> None:
    [job_id] = queue_jobs(container, 1)
    pipeline = pipeline_with_capacity(container, 5)
    pipeline.dispatch()
    attempt = container.jobs("test").get(job_id).attempts[0]
    with container.sessions.begin() as session:
        assert Repository(session, "test").start_sending(attempt.id)  # the first delivery
    assert pipeline.submit(job_id, 1) == "duplicate"


def test_guarded_transitions_refuse_stale_attempts(container: Container) -> None:
    [job_id] = queue_jobs(container, 1)
    pipeline_with_capacity(container, 5).dispatch()
    attempt = container.jobs("test").get(job_id).attempts[0]
    stale = dataclasses.replace(attempt, number=attempt.number + 1)
    fault = Fault(ErrorKind.RETRYABLE, "provider_unavailable", "503")
    with container.sessions.begin() as session:
        repo = Repository(session, "test")
        assert not repo.mark_running(stale, "req-1", {}, 1.0)
        assert not repo.fail(stale, fault)
        assert repo.mark_running(attempt, "req-1", {}, 1.0)
        assert not repo.mark_running(attempt, "req-1", {}, 1.0)  # a duplicate is zero rows
    events = [e.transition for e in container.jobs("test").get(job_id).events]
    assert events == ["create", "claim", "mark_running"]


def open_breaker(container: Container, provider: str, opened_seconds_ago: float) -> None:
    opened = datetime.now(UTC) - timedelta(seconds=opened_seconds_ago)
    with container.sessions.begin() as session:
        Repository(session, "test").save_health(
            provider, Health(BreakerState.OPEN, consecutive_failures=5, opened_at=opened)
        )


def pipeline_for_all(container: Container) -> Pipeline:
    policy = container.policy()
    limits = dataclasses.replace(
        policy.limits,
        order=("fal", "runware", "runflow"),
        capacity={"fal": 10, "runware": 10, "runflow": 10},
        breaker=BreakerPolicy(failure_threshold=5, cooldown_seconds=30),
    )
    return container.pipeline("test", dataclasses.replace(policy, limits=limits))


def test_an_open_breaker_hands_its_queue_to_the_next_listed_provider(container: Container) -> None:
    failover = queue_jobs(container, 3, providers=("fal", "runware"))
    fal_only = queue_jobs(container, 2, providers=("fal",))
    open_breaker(container, "fal", opened_seconds_ago=1)

    assert pipeline_for_all(container).dispatch() == 3

    jobs = container.jobs("test")
    assert {jobs.get(i).job.provider for i in failover} == {"runware"}
    assert states(container, failover) == [JobState.SUBMITTING] * 3
    # A job that lists no other provider waits for fal.
    assert states(container, fal_only) == [JobState.QUEUED] * 2


def test_only_providers_someone_waits_for_are_searched_for_due_jobs(
    container: Container,
) -> None:
    queue_jobs(container, 2, providers=("fal",))
    with container.sessions.begin() as session:
        assert Repository(session, "test").waiting_for(["fal", "runware", "runflow"]) == {"fal"}
    searched: list[str] = []

    def record(conn: object, cursor: object, statement: str, params: object, *_: object) -> None:
        if "SKIP LOCKED" in statement:  # the due-job queries, one pair per provider searched
            searched.append(str(params))

    event.listen(container.engine, "before_cursor_execute", record)
    try:
        assert pipeline_for_all(container).dispatch() == 2
    finally:
        event.remove(container.engine, "before_cursor_execute", record)
    # Runware and Runflow have room too, but no job waits for them (or for a provider
    # they could stand in for), so a round costs their queries nothing.
    assert len(searched) == 2
    assert all("'fal'" in params for params in searched)


def test_after_the_cooldown_one_probe_goes_to_the_provider(container: Container) -> None:
    ids = queue_jobs(container, 4, providers=("fal",))
    open_breaker(container, "fal", opened_seconds_ago=31)
    pipeline = pipeline_for_all(container)

    assert pipeline.dispatch() == 1  # the probe
    assert pipeline.dispatch() == 0  # nothing more while the probe is in flight
    assert sorted(states(container, ids)).count(JobState.SUBMITTING) == 1
    with container.sessions.begin() as session:
        assert Repository(session, "test").all_health()["fal"].state is BreakerState.HALF_OPEN


def test_a_success_closes_the_breaker(container: Container) -> None:
    open_breaker(container, "fal", opened_seconds_ago=31)
    with container.sessions.begin() as session:
        Repository(session, "test").record_success("fal")
    with container.sessions.begin() as session:
        health = Repository(session, "test").all_health()["fal"]
    assert health == Health()


def test_the_submit_rate_bounds_each_dispatch(container: Container) -> None:
    queue_jobs(container, 10, providers=("fal",))
    policy = container.policy()
    # One submit a minute: the bucket holds one token, and the next takes a minute to come.
    limits = dataclasses.replace(policy.limits, capacity={"fal": 100}, rates={"fal": 1 / 60})
    pipeline = container.pipeline("test", dataclasses.replace(policy, limits=limits))
    assert pipeline.dispatch() == 1
    assert pipeline.dispatch() == 0


def test_a_freed_slot_is_refilled_at_once_not_at_the_next_tick(container: Container) -> None:
    # Two jobs, room for one at a time, and a tick a minute apart: only the notification
    # of the first job's completion can get the second one sent in time.
    edit = job_request().input.model_dump(mode="json", exclude_none=True)
    ids = [uuid.uuid4(), uuid.uuid4()]
    with container.sessions.begin() as session:
        for job_id in ids:  # inserted as the API does, before the scheduler listens
            Repository(session, "test").insert_job(
                NewJob(id=job_id, model="flux-kontext-pro", input=edit, providers=("fal",),
                       max_attempts=3)
            )  # fmt: skip
    first, second = ids
    pipeline = container.pipeline("test")  # does what a worker would, in this thread
    with listening_scheduler(container, capacity=1):  # its first tick sends the first job
        wait_until(lambda: states(container, ids)[0] is JobState.SUBMITTING, what="job 1 claimed")
        assert pipeline.submit(first, 1) == "running"
        assert states(container, [second]) == [JobState.QUEUED]  # no room for it yet
        # The provider finishes job 1 (a poll here, as a webhook would): its slot frees up.
        wait_until(lambda: pipeline.poll(first, 1) == "finalizing", what="job 1 to finish at fal")
        wait_until(
            lambda: states(container, [second]) == [JobState.SUBMITTING],
            timeout=10,
            what="job 2 to be claimed well before the next tick",
        )


def _canceled_job(container: Container) -> uuid.UUID:
    [job_id] = queue_jobs(container, 1)
    container.jobs("test").cancel(job_id)
    return job_id


ONE_ROW = {"external_id": "SKU-1", "image_url": data_uri(), "prompt": "make it blue"}

#: The ways work reaches the queue, each given a canceled job it may send round again.
ARRIVALS: dict[str, Callable[[Container, uuid.UUID], object]] = {
    "a new job": lambda container, _: queue_jobs(container, 1),
    "a batch": lambda container, _: container.batches("test").submit(
        io.BytesIO(json.dumps(ONE_ROW).encode()), "jsonl", BatchOptions()
    ),
    "a retried job": lambda container, canceled: container.jobs("test").retry(canceled),
    "a bulk retry": lambda container, _: container.jobs("test").retry_matching(
        JobFilter(states=(JobState.CANCELED,)), "provider back", dry_run=False
    ),
}


@pytest.mark.parametrize("arrival", list(ARRIVALS))
def test_queued_work_is_sent_at_once_not_at_the_next_tick(
    container: Container, arrival: str
) -> None:
    # A tick a minute apart, whose first run is over: only the notification the queuing
    # transaction sends can get the job claimed within seconds.
    canceled = _canceled_job(container)
    with listening_scheduler(container, capacity=5):
        ARRIVALS[arrival](container, canceled)
        wait_until(
            lambda: in_state(container, JobState.SUBMITTING) == 1,
            timeout=10,
            what="the queued job to be claimed well before the next tick",
        )


@contextmanager
def listening_scheduler(container: Container, capacity: int) -> Iterator[None]:
    """The scheduler loop, ticking a minute apart, once its first tick is over."""
    stop = threading.Event()
    wakeups = ListeningWakeups(container.settings.database_url)
    loop = threading.Thread(
        target=scheduler.run,
        args=(pipeline_with_capacity(container, capacity), container.batches("test"), 60.0, stop),
        kwargs={"wakeups": wakeups},
        daemon=True,
    )
    loop.start()
    try:
        # The loop listens after its first tick; PostgreSQL shows the connection doing so.
        wait_until(lambda: listeners(container) == 1, what="the scheduler to listen")
        yield
    finally:
        stop.set()
        with container.engine.begin() as conn:  # ends its wait, so it sees the stop
            conn.execute(text(f"NOTIFY {CHANNEL}"))
        loop.join(10)
        wakeups.close()


def listeners(container: Container) -> int:
    with container.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query = :listen"
                ),
                {"listen": f"LISTEN {CHANNEL}"},
            ).scalar_one()
        )


def in_state(container: Container, state: JobState) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(Job.state == state)).scalar_one())
