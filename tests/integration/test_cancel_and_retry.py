"""Cancel says what happened and stops the provider; a retry by filter brings back what failed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from emulators.fal import FalEmulatorConfig
from emulators.fal import create_app as create_fal_app
from emulators.server import RunningServer, run_in_thread
from models.state import JobState
from tests.factories import job_request
from tests.integration.test_batches import catalog, submit
from tests.integration.test_finalize_recovery import steps_with
from tests.waiting import wait_until
from worker.faults import ErrorKind, Fault
from worker.pipeline.steps import Pipeline
from worker.providers.fal.adapter import FalProvider
from worker.providers.fal.signature import JwksCache
from worker.values.batch_status import BatchStatus
from worker.values.chain import StepIn
from worker.values.records import JobFilter
from worker.wiring import Container

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def slow_fal() -> Iterator[RunningServer]:
    """A fal that takes its time, with one slot, so a second request waits in its queue."""
    config = FalEmulatorConfig(latency=30, jitter=0, concurrency=1, seed=5)
    with run_in_thread(create_fal_app(config)) as server:
        yield server


@pytest.fixture
def steps(container: Container, slow_fal: RunningServer) -> Iterator[Pipeline]:
    with httpx.Client(timeout=10) as http:
        fal = FalProvider(http, jwks=JwksCache(http), base_url=slow_fal.url, key="k")
        yield steps_with(container, {"fal": fal})


def running_job(container: Container, steps: Pipeline) -> uuid.UUID:
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))
    assert steps.dispatch() == 1
    assert steps.submit(job.id, 1) == "running"
    return job.id


def fal_states(server: RunningServer) -> list[str]:
    return [r["state"] for r in httpx.get(f"{server.url}/_emulator/requests").json()]


def test_a_canceled_job_says_who_canceled_it_closes_its_attempt_and_stops_fal(
    container: Container, steps: Pipeline, slow_fal: RunningServer
) -> None:
    job_id = running_job(container, steps)
    jobs = container.jobs("ops")
    # An earlier attempt's error must not stand as the canceled job's story.
    with container.database("test").transaction() as repo:
        (attempt,) = repo.detail(job_id).attempts  # type: ignore[union-attr]  # it exists
    fault = Fault(ErrorKind.RETRYABLE, "provider_unavailable", "fal answered 503")
    with container.database("test").transaction() as repo:
        assert repo.requeue(attempt, fault, 0, counts=True, next_provider="fal")
    assert steps.dispatch() == 1 and steps.submit(job_id, 2) == "running"

    canceled = jobs.cancel(job_id, "wrong prompt")

    assert canceled.state is JobState.CANCELED
    assert canceled.error_code == "canceled"
    assert canceled.error_message == "canceled by ops: wrong prompt"
    detail = jobs.get(job_id)
    assert [a.outcome for a in detail.attempts] == ["failed", "canceled"]
    assert detail.attempts[-1].finished_at is not None
    assert steps.cancel_at_provider(job_id, 2) == "cancel_requested"
    assert fal_states(slow_fal)[-1] == "cancelled"


def test_a_job_canceled_while_its_submit_is_in_flight_is_canceled_at_the_provider(
    container: Container, slow_fal: RunningServer
) -> None:
    job, _ = container.jobs("test").create(job_request(providers=("fal",)))

    def cancel_on_submit(request: httpx.Request) -> None:
        # The operator's cancel lands while the submit is on its way to fal.
        if request.method == "POST" and "/requests/" not in request.url.path:
            container.jobs("ops").cancel(job.id, "changed my mind")

    with httpx.Client(timeout=10, event_hooks={"request": [cancel_on_submit]}) as http:
        fal = FalProvider(http, jwks=JwksCache(http), base_url=slow_fal.url, key="k")
        steps = steps_with(container, {"fal": fal})
        assert steps.dispatch() == 1

        assert steps.submit(job.id, 1) == "canceled"

    (attempt,) = container.jobs("test").get(job.id).attempts
    assert attempt.outcome == "canceled"
    assert attempt.request_id is not None  # what fal accepted is on the record
    assert fal_states(slow_fal)[-1] == "cancelled"


def test_a_retry_by_error_code_leaves_deliberate_cancels_alone(
    container: Container, steps: Pipeline
) -> None:
    failed = running_job(container, steps)
    kept = running_job(container, steps)
    jobs = container.jobs("ops")
    with container.database("test").transaction() as repo:
        for job_id in (failed, kept):
            (attempt,) = repo.detail(job_id).attempts  # type: ignore[union-attr]  # exists
            repo.fail(attempt, Fault(ErrorKind.TERMINAL, "provider_validation", "bad input"))
    jobs.retry(kept)
    assert steps.dispatch() == 1
    jobs.cancel(kept, "not wanted any more")
    assert jobs.get(kept).job.error_code == "canceled"

    where = JobFilter(error_code="provider_validation")
    dry = jobs.retry_matching(where, "fixed", dry_run=True)
    assert dry.matched == 1 and [j.id for j in dry.sample] == [failed]
    done = jobs.retry_matching(where, "fixed", dry_run=False)
    assert done.retried == 1
    assert [j.state for j in done.sample] == [JobState.QUEUED]  # the sample as it is now
    assert jobs.get(kept).job.state is JobState.CANCELED

    asked = jobs.retry_matching(
        JobFilter(states=(JobState.CANCELED,)), "bring it back", dry_run=False
    )
    assert asked.retried == 1 and jobs.get(kept).job.state is JobState.QUEUED


def test_batch_progress_counts_canceled_jobs_apart_from_failed_ones(container: Container) -> None:
    batch_id = submit(container, catalog(3))
    jobs = container.jobs("ops")
    page, _ = jobs.list(JobFilter(batch_id=batch_id))
    jobs.cancel(page[0].id, "not this one")

    status: BatchStatus = container.batches("test").status(batch_id)
    assert (status.canceled, status.failed) == (1, 0)


def test_a_chain_canceled_mid_step_stops_there_keeps_what_it_made_and_resumes_on_retry(
    container: Container,
) -> None:
    # One fal, quick for step 1, then slow, so step 2 is in flight when the cancel lands.
    config = FalEmulatorConfig(latency=0.05, jitter=0, concurrency=4, seed=11)
    with (
        run_in_thread(create_fal_app(config)) as server,
        httpx.Client(timeout=10) as http,
    ):
        fal = FalProvider(http, jwks=JwksCache(http), base_url=server.url, key="k")
        steps = steps_with(container, {"fal": fal})
        later = (StepIn(prompt="Put it on a beach"), StepIn(prompt="Warm colour grade"))
        job, _ = container.jobs("test").create(job_request(providers=("fal",), steps=later))
        assert steps.dispatch() == 1 and steps.submit(job.id, 1) == "running"
        wait_until(lambda: steps.poll(job.id, 1) == "finalizing", timeout=30, what="step 1")
        assert steps.finalize(job.id, 1) == "advanced"
        httpx.patch(f"{server.url}/_emulator/config", json={"latency": 30})
        assert steps.dispatch() == 1 and steps.submit(job.id, 2) == "running"

        canceled = container.jobs("ops").cancel(job.id, "wrong brief")

        assert (canceled.state, canceled.step) == (JobState.CANCELED, 2)
        assert steps.cancel_at_provider(job.id, 2) == "cancel_requested"
        assert fal_states(server) == ["succeeded", "cancelled"]
        assert steps.dispatch() == 0  # step 3 is never sent
        detail = container.jobs("test").get(job.id)
        assert [(a.step, a.outcome) for a in detail.attempts] == [(1, "succeeded"), (2, "canceled")]
        [kept] = detail.outputs
        assert kept.step == 1 and container.storage.head(kept.key) is not None

        # A retry resumes at the canceled step: step 1 is not sent again.
        httpx.patch(f"{server.url}/_emulator/config", json={"latency": 0.05})
        assert container.jobs("ops").retry(job.id, "brief fixed").step == 2
        assert steps.dispatch() == 1 and steps.submit(job.id, 3) == "running"
        asked = httpx.get(f"{server.url}/_emulator/requests").json()
        assert len(asked) == 3 and asked[-1]["source_sha256"] == kept.sha256
