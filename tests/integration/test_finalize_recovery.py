"""An output the provider finished is copied, not paid for again: leases, lost messages, refetch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.exceptions
from sqlalchemy import select, update

from emulators.fal import FalEmulatorConfig
from emulators.fal import create_app as create_fal_app
from emulators.runflow import RunflowEmulatorConfig
from emulators.runflow import create_app as create_runflow_app
from emulators.server import RunningServer, run_in_thread
from models.state import JobState
from models.tables import Job
from tests.factories import job_request
from tests.waiting import wait_until
from worker.database import Database, TaskQueue
from worker.pipeline.leases import LeaseKeeper
from worker.pipeline.steps import Pipeline
from worker.providers.base import Provider
from worker.providers.fal.adapter import FalProvider
from worker.providers.fal.signature import JwksCache
from worker.providers.runflow.adapter import RunflowProvider
from worker.values.records import JobDetail
from worker.wiring import Container

pytestmark = pytest.mark.integration

SECRET = "whsec_finalize-recovery"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def short_lived_runflow() -> Iterator[RunningServer]:
    """A Runflow whose output URLs work half a second, while it keeps the files an hour."""
    config = RunflowEmulatorConfig(
        latency=0.1, jitter=0.0, url_ttl=0.5, result_ttl=3600, callback_secret=SECRET, seed=3
    )
    with run_in_thread(create_runflow_app(config)) as server:
        yield server


@pytest.fixture(scope="module")
def short_lived_fal() -> Iterator[RunningServer]:
    """A fal whose output files are gone half a second after they are made."""
    config = FalEmulatorConfig(latency=0.1, jitter=0.0, result_ttl=0.5, seed=4)
    with run_in_thread(create_fal_app(config)) as server:
        yield server


def steps_with(
    container: Container, providers: Mapping[str, Provider], queue: TaskQueue | None = None
) -> Pipeline:
    return Pipeline(
        Database(container.sessions, "test"),
        providers,
        container.storage,
        container.fetcher,
        queue or container.queue,
        container.policy(),
        container.leases,
    )


def finished_at_provider(container: Container, steps: Pipeline, provider: str) -> uuid.UUID:
    """A job of ``provider`` submitted and seen done by a poll: now finalizing."""
    job, _ = container.jobs("test").create(job_request(providers=(provider,)))
    assert steps.dispatch() == 1
    assert steps.submit(job.id, 1) == "running"
    wait_until(lambda: steps.poll(job.id, 1) == "finalizing", timeout=30, what="the result")
    return job.id


def output_urls(container: Container, job_id: uuid.UUID) -> list[str]:
    (attempt,) = container.jobs("test").get(job_id).attempts
    assert attempt.result is not None
    return [str(o["url"]) for o in attempt.result["outputs"]]


def expired(url: str) -> bool:
    return httpx.get(url).status_code in (403, 404, 410)


def notes(detail: JobDetail, what: str) -> list[dict[str, Any]]:
    return [e.data for e in detail.events if e.transition == what]


def test_an_expired_output_url_is_fetched_again_fresh_and_paid_once(
    container: Container, short_lived_runflow: RunningServer, http: httpx.Client
) -> None:
    runflow = RunflowProvider(
        http, base_url=short_lived_runflow.url, api_key="k", callback_secret=SECRET.encode()
    )
    steps = steps_with(container, {"runflow": runflow})
    job_id = finished_at_provider(container, steps, "runflow")
    (first,) = output_urls(container, job_id)
    wait_until(lambda: expired(first), timeout=10, what="the output URL to expire")

    assert steps.finalize(job_id, 1) == "succeeded"

    detail = container.jobs("test").get(job_id)
    assert [a.outcome for a in detail.attempts] == ["succeeded"]
    (note,) = notes(detail, "refetch_result")
    assert note["outcome"] == "fresh_urls" and note["provider"] == "runflow"
    assert output_urls(container, job_id) != [first]
    stats = httpx.get(f"{short_lived_runflow.url}/_emulator/stats").json()
    assert stats["accepted"] == 1


def test_when_the_provider_has_no_fresh_url_the_job_says_so_and_is_sent_again(
    container: Container, short_lived_fal: RunningServer, http: httpx.Client
) -> None:
    fal = FalProvider(http, jwks=JwksCache(http), base_url=short_lived_fal.url, key="k")
    steps = steps_with(container, {"fal": fal})
    job_id = finished_at_provider(container, steps, "fal")
    (url,) = output_urls(container, job_id)
    wait_until(lambda: expired(url), timeout=10, what="the output file to expire")

    assert steps.finalize(job_id, 1) == "requeue"

    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.QUEUED
    assert detail.job.error_code == "output_unavailable"
    (note,) = notes(detail, "refetch_result")
    assert note["outcome"] == "same_urls"
    requeue = notes(detail, "requeue")
    assert requeue[-1]["refetched"] == "same_urls"


class BrokerDown:
    """The task queue while the broker is unreachable: every publish fails."""

    def __getattr__(self, name: str) -> Any:
        def refuse(*_: object) -> None:
            raise redis.exceptions.ConnectionError("Error 111 connecting to valkey: refused")

        return refuse


def test_a_finalize_that_could_not_be_published_is_due_at_once_not_at_lease_expiry(
    container: Container,
) -> None:
    steps = steps_with(container, container.providers)
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))
    assert steps.dispatch() == 1
    assert steps.submit(job.id, 1) == "running"
    down = steps_with(container, container.providers, BrokerDown())
    wait_until(lambda: down.poll(job.id, 1) == "finalizing", timeout=30, what="the result")

    with container.sessions.begin() as session:
        lease = session.scalar(select(Job.lease_expires_at).where(Job.id == job.id))
    assert lease is not None and lease <= datetime.now(UTC)
    with Database(container.sessions, "test").transaction() as repo:
        due = [(job_id, state) for job_id, _, state in repo.expired_leases(100)]
    assert (job.id, JobState.FINALIZING) in due


def test_live_work_keeps_its_lease_and_ended_work_does_not(container: Container) -> None:
    steps = steps_with(container, container.providers)
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))
    assert steps.dispatch() == 1  # submitting, under a lease
    keeper = LeaseKeeper(Database(container.sessions, "test"), lease_seconds=30, interval=0.1)

    def expire_now() -> None:
        with container.engine.begin() as conn:
            conn.execute(
                update(Job).where(Job.id == job.id).values(lease_expires_at=Job.created_at)
            )

    def lease_left() -> float:
        with container.engine.connect() as conn:
            at = conn.scalar(select(Job.lease_expires_at).where(Job.id == job.id))
        assert at is not None
        return (at - datetime.now(UTC)).total_seconds()

    expire_now()
    with keeper.holding(job.id, 1):
        wait_until(lambda: lease_left() > 20, timeout=10, what="the keeper to renew the lease")
    expire_now()
    assert keeper.renew() == 0
    assert lease_left() < 0
    keeper.close()
