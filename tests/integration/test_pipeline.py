"""The pipeline on real PostgreSQL, Valkey, S3, a real Celery worker and the fal emulator."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update

from emulators.server import RunningServer
from models.state import JobState
from models.tables import Attempt
from tests.factories import job_request
from tests.integration.conftest import RUNWARE_REPORTED_COST
from tests.waiting import wait_until
from worker.wiring import Container

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("celery_worker", "scheduler_loop")]


def _finished(container: Container, job_id):  # type: ignore[no-untyped-def]
    detail = container.jobs("test").get(job_id)
    return detail if detail.job.state in {JobState.SUCCEEDED, JobState.FAILED} else None


def test_a_job_succeeds_by_polling_and_its_output_is_in_s3(container: Container) -> None:
    job, created = container.jobs("test").create(job_request(input={"num_images": 2}))
    assert created and job.state is JobState.QUEUED

    detail = wait_until(lambda: _finished(container, job.id), timeout=30, what="job to finish")

    assert detail.job.state is JobState.SUCCEEDED, detail.job.error_message
    assert [a.outcome for a in detail.attempts] == ["succeeded"]
    assert len(detail.outputs) == 2
    results = detail.attempts[0].result
    assert results is not None
    for output, remote in zip(detail.outputs, results["outputs"], strict=True):
        stored = container.storage.get(output.key)
        assert hashlib.sha256(stored).hexdigest() == output.sha256
        # Byte for byte what the provider produced.
        assert stored == httpx.get(remote["url"]).content
        assert output.content_type == "image/jpeg" and output.width and output.height
    transitions = [e.transition for e in detail.events]
    assert transitions == ["create", "claim", "mark_running", "begin_finalize", "succeed"]
    assert detail.job.cost_usd == Decimal("0.08")


@pytest.mark.parametrize(
    ("provider", "cost"),
    [("runware", Decimal(str(RUNWARE_REPORTED_COST))), ("runflow", Decimal("0.04"))],
    ids=["reported-by-the-provider", "from-the-price-list"],
)
def test_each_attempt_records_its_cost(container: Container, provider: str, cost: Decimal) -> None:
    job, _ = container.jobs("test").create(job_request(providers=(provider,)))

    detail = wait_until(lambda: _finished(container, job.id), timeout=30, what="job to finish")

    assert detail.job.state is JobState.SUCCEEDED, detail.job.error_message
    [attempt] = detail.attempts
    assert attempt.provider == provider and attempt.cost_usd == cost
    assert detail.job.cost_usd == cost


def test_a_job_fails_for_good_after_max_attempts_of_retryable_errors(
    container: Container, fal_emulator: RunningServer
) -> None:
    httpx.patch(f"{fal_emulator.url}/_emulator/config", json={"rate_5xx": 1.0})
    try:
        job, _ = container.jobs("test").create(job_request())
        detail = wait_until(lambda: _finished(container, job.id), timeout=60, what="job to end")
    finally:
        httpx.patch(f"{fal_emulator.url}/_emulator/config", json={"rate_5xx": 0.0})

    assert detail.job.state is JobState.FAILED
    assert detail.job.error_code == "provider_unavailable"
    assert len(detail.attempts) == detail.job.max_attempts == container.settings.max_attempts
    assert detail.job.failed_attempts == detail.job.max_attempts


def test_a_provider_that_forgot_the_request_means_a_retry(
    container: Container, fal_emulator: RunningServer
) -> None:
    config = f"{fal_emulator.url}/_emulator/config"
    httpx.patch(config, json={"latency": 30})  # the first attempt stays running meanwhile
    try:
        job, _ = container.jobs("test").create(job_request())
        running = wait_until(
            lambda: (d := container.jobs("test").get(job.id)).job.state is JobState.RUNNING and d,
            timeout=20,
            what="job to run",
        )
        # The provider loses the request: its status URL now answers 404.
        lost = f"{container.settings.fal_url}/fal-ai/flux-pro/requests/{uuid.uuid4()}"
        with container.engine.begin() as conn:
            conn.execute(
                update(Attempt)
                .where(Attempt.id == running.attempts[0].id)
                .values(provider_data={"status_url": f"{lost}/status", "response_url": lost})
            )
    finally:
        httpx.patch(config, json={"latency": 0.15})  # the next attempt finishes quickly

    detail = wait_until(lambda: _finished(container, job.id), timeout=30, what="job to end")

    assert detail.job.state is JobState.SUCCEEDED
    assert [a.outcome for a in detail.attempts] == ["failed", "succeeded"]
    assert detail.attempts[0].error_code == "provider_request_lost"
