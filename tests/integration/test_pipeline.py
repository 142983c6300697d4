"""The pipeline on real PostgreSQL, Valkey, S3, a real Celery worker and the fal emulator."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import httpx
import pytest

from models.state import JobState
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
