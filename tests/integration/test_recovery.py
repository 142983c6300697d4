"""Repairing a job whose worker vanished mid-submit, without paying for it twice."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from emulators.server import RunningServer
from models.state import JobState
from models.tables import Job
from tests.factories import edit_input, job_request
from tests.waiting import wait_until
from worker.database import Database
from worker.pipeline.outputs import upload_key
from worker.pipeline.steps import Pipeline
from worker.providers.fal.adapter import FalProvider
from worker.providers.fal.signature import JwksCache
from worker.repository import Repository
from worker.wiring import Container

pytestmark = pytest.mark.integration


def pipeline(container: Container, **changes: Any) -> Pipeline:
    return container.pipeline("test", dataclasses.replace(container.policy(), **changes))


def expire_lease(container: Container, job_id: uuid.UUID) -> None:
    with container.engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=Job.created_at))


def claimed_job(container: Container, provider: str, steps: Pipeline) -> uuid.UUID:
    job, _ = container.jobs("test").create(job_request(providers=(provider,)))
    assert steps.dispatch() == 1
    return job.id


def vanish_mid_call(container: Container, job_id: uuid.UUID) -> None:
    """What a worker killed right after the provider accepted its call leaves behind."""
    detail = container.jobs("test").get(job_id)
    attempt = detail.attempts[0]
    provider = container.providers[attempt.provider]
    edit = edit_input()
    # The call the worker made, as the pipeline makes it (a direct upload URL included).
    upload = None
    if provider.uploads_directly:
        upload = container.storage.presign_put(upload_key(job_id, 1, edit), None, 3600)
    with container.sessions.begin() as session:
        assert Repository(session, "test").start_sending(attempt.id)
    provider.submit(detail.job.model, edit, attempt.id, None, upload)
    expire_lease(container, job_id)


def accepted(emulator: RunningServer) -> int:
    count: int = httpx.get(f"{emulator.url}/_emulator/stats").json()["accepted"]
    return count


def test_runware_gets_the_same_attempt_again_and_is_paid_once(
    container: Container, runware_emulator: RunningServer
) -> None:
    steps = pipeline(container)
    job_id = claimed_job(container, "runware", steps)
    before = accepted(runware_emulator)
    vanish_mid_call(container, job_id)
    assert accepted(runware_emulator) == before + 1

    assert steps.reconcile() == 1
    assert steps.submit(job_id, 1) == "running"  # Runware answered conflictTaskUUID

    assert accepted(runware_emulator) == before + 1  # no second paid request
    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.RUNNING
    assert detail.attempts[0].request_id == str(detail.attempts[0].id)
    wait_until(lambda: steps.poll(job_id, 1) == "finalizing", timeout=20, what="the result")
    assert steps.finalize(job_id, 1) == "succeeded"


def test_with_webhooks_a_vanished_fal_attempt_waits_for_its_callback(
    container: Container,
) -> None:
    steps = pipeline(container, public_url="http://127.0.0.1:9", submit_grace_seconds=600)
    job_id = claimed_job(container, "fal", steps)
    vanish_mid_call(container, job_id)

    assert steps.reconcile() == 1

    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.SUBMITTING  # still waiting, not paid again
    assert [e.transition for e in detail.events] == ["create", "claim"]


def test_past_the_grace_period_the_attempt_is_given_up_without_using_one(
    container: Container, fal_emulator: RunningServer
) -> None:
    steps = pipeline(container, public_url="http://127.0.0.1:9", submit_grace_seconds=0)
    job_id = claimed_job(container, "fal", steps)
    vanish_mid_call(container, job_id)

    assert steps.reconcile() == 1

    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.QUEUED
    assert detail.job.failed_attempts == 0
    assert detail.attempts[0].outcome == "abandoned"
    assert detail.attempts[0].error_code == "worker_lost"


def test_an_attempt_whose_message_was_lost_is_sent_again(container: Container) -> None:
    steps = pipeline(container)
    job_id = claimed_job(container, "fal", steps)
    expire_lease(container, job_id)  # no worker ever took the submit message

    assert steps.reconcile() == 1
    assert steps.submit(job_id, 1) == "running"
    assert container.jobs("test").get(job_id).attempts[0].outcome == "running"


def test_a_submit_that_timed_out_is_not_sent_again_at_once(container: Container) -> None:
    # fal answers the submit, but too late for us: the request may well have been accepted.
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer in time", request=request)

    http = httpx.Client(transport=httpx.MockTransport(too_slow))
    slow_fal = FalProvider(http, jwks=JwksCache(http), base_url="https://queue.fal.run")
    steps = Pipeline(
        Database(container.sessions, "test"),
        {"fal": slow_fal},
        container.storage,
        container.fetcher,
        container.queue,
        container.policy(),
        container.leases,
    )
    job_id = claimed_job(container, "fal", steps)

    assert steps.submit(job_id, 1) == "unanswered"

    detail = container.jobs("test").get(job_id)
    assert detail.job.state is JobState.SUBMITTING  # no new attempt, nothing paid twice
    assert [a.outcome for a in detail.attempts] == ["sending"]
    assert detail.job.failed_attempts == 0
