"""Multi-turn chains on real PostgreSQL, Valkey, S3, a Celery worker and the emulators.

Each step's source must be the step before's output as stored in our bucket (checked by
hash against what the emulator downloaded), each step its own attempt history, a failure
at a step must keep the steps before, and a retry must resume at the failed step.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest

from emulators.server import RunningServer
from models.state import JobState
from tests.factories import data_uri, job_request
from tests.waiting import wait_until
from worker.errors import ChainInvalid, NoProviderCanRun
from worker.pipeline.steps import Pipeline
from worker.usecases.batch_ingest import BatchOptions
from worker.values.chain import StepIn
from worker.values.records import JobDetail
from worker.wiring import Container

pytestmark = pytest.mark.integration

THREE = (
    StepIn(prompt="Put it on a beach"),
    StepIn(prompt="Warm colour grade", output_format="png"),
)


def _finished(container: Container, job_id: uuid.UUID) -> JobDetail | None:
    detail = container.jobs("test").get(job_id)
    return detail if detail.job.state in {JobState.SUCCEEDED, JobState.FAILED} else None


def _requests(emulator: RunningServer) -> dict[str, dict[str, Any]]:
    """What the emulator was asked, by its request id."""
    listed = httpx.get(f"{emulator.url}/_emulator/requests").json()
    return {r.get("request_id") or r.get("taskUUID") or r["id"]: r for r in listed}


@pytest.mark.usefixtures("celery_worker", "scheduler_loop")
def test_each_step_edits_the_stored_output_of_the_step_before(
    container: Container, fal_emulator: RunningServer
) -> None:
    first = data_uri(3)
    job, _ = container.jobs("test").create(
        job_request(input={"image_url": first, "num_images": 2}, steps=THREE)
    )

    detail = wait_until(lambda: _finished(container, job.id), timeout=60, what="chain to finish")

    assert detail.job.state is JobState.SUCCEEDED, detail.job.error_message
    assert detail.job.step == 3
    assert [(a.step, a.outcome) for a in detail.attempts] == [
        (1, "succeeded"),
        (2, "succeeded"),
        (3, "succeeded"),
    ]
    # Every step's outputs stay in the bucket, under their own keys.
    assert [(o.step, o.index) for o in detail.outputs] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
        (3, 1),
    ]
    for o in detail.outputs:
        assert hashlib.sha256(container.storage.get(o.key)).hexdigest() == o.sha256
    assert {o.content_type for o in detail.outputs if o.step == 3} == {"image/png"}
    asked = _requests(fal_emulator)
    sources = [asked[str(a.request_id)]["source_sha256"] for a in detail.attempts]
    source_of_first = hashlib.sha256(base64.b64decode(first.split(",", 1)[1])).hexdigest()
    by_step = {o.step: o.sha256 for o in detail.outputs if o.index == 0}
    assert sources == [source_of_first, by_step[1], by_step[2]]
    transitions = [e.transition for e in detail.events]
    assert transitions.count("advance") == 2 and transitions[-1] == "succeed"
    # Two images a step, three steps, at fal's list price.
    assert detail.job.cost_usd == Decimal("0.24")


def test_a_step_may_edit_another_output_and_run_on_its_own_providers(
    container: Container,
) -> None:
    steps = (StepIn(prompt="beach", use_output=1, providers=["runflow"]),)
    job, _ = container.jobs("test").create(job_request(input={"num_images": 2}, steps=steps))
    assert job.steps[0]["use_output"] == 1 and job.steps[0]["providers"] == ["runflow"]
    assert job.providers == ("fal",) and job.step == 1


@pytest.mark.parametrize(
    ("steps", "error", "field"),
    [
        ((StepIn(prompt="beach", use_output=1),), ChainInvalid, "steps.0.use_output"),
        (
            (StepIn(prompt="beach", providers=["runware"], guidance_scale=3.5),),
            NoProviderCanRun,
            "steps.0.guidance_scale",
        ),
    ],
    ids=["an-output-not-made", "a-step-no-provider-can-run"],
)
def test_a_chain_that_cannot_run_is_refused_whole_and_nothing_is_written(
    container: Container, steps: tuple[StepIn, ...], error: type[Exception], field: str
) -> None:
    before = container.jobs("test").counts()
    with pytest.raises(error) as caught:
        container.jobs("test").create(job_request(steps=steps))
    assert caught.value.details["fields"][0]["field"] == field  # type: ignore[attr-defined]
    assert container.jobs("test").counts() == before


def _pipeline(container: Container, capacity: int) -> Pipeline:
    policy = container.policy()
    limits = dataclasses.replace(policy.limits, capacity={"fal": capacity})
    return container.pipeline("test", dataclasses.replace(policy, limits=limits))


def _jsonl(rows: int, steps: int) -> bytes:
    image = data_uri()
    lines = [
        {
            "external_id": f"SKU-{i:03d}",
            "image_url": image,
            "prompt": "remove the background",
            "steps": [{"prompt": f"step {k}"} for k in range(2, steps + 1)],
        }
        for i in range(rows)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _at_step(container: Container, job_id: uuid.UUID, step: int) -> None:
    """Put a batch's chain on ``step`` as if the steps before had run (for dispatch only)."""
    with container.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE jobs SET step = %s WHERE id = %s", (step, job_id))


def test_a_chain_s_next_step_goes_ahead_of_new_chains_of_its_batch(container: Container) -> None:

    submitted = container.batches("test").submit(
        io.BytesIO(_jsonl(20, 3)), "jsonl", BatchOptions(providers=("fal",))
    )
    batch_id = submitted.batch.id
    jobs = [j for j, _ in _batch_jobs(container, batch_id)]
    # Two chains are on their second step, one on its third; the rest have not started.
    _at_step(container, jobs[17].id, 2)
    _at_step(container, jobs[18].id, 3)
    _at_step(container, jobs[19].id, 2)

    assert _pipeline(container, 3).dispatch() == 3

    claimed = {j.id for j, _ in _batch_jobs(container, batch_id) if j.state is JobState.SUBMITTING}
    assert claimed == {jobs[17].id, jobs[18].id, jobs[19].id}
    status = container.batches("test").status(batch_id)
    assert (status.progress.steps_total, status.progress.steps_done) == (60, 1 + 2 + 1)


def _batch_jobs(container: Container, batch_id: uuid.UUID) -> list[tuple[Any, Any]]:
    with container.database("test").transaction() as repo:
        return list(repo.batch_jobs(batch_id))


def test_the_budget_counts_each_step_at_its_own_size_before_it_is_sent(
    container: Container,
) -> None:
    # Step 3 makes two images: $0.08 on top of the $0.08 steps 1 and 2 cost passes $0.15
    # (counted at step 1's one image, $0.04, it would fit).
    line = {
        "external_id": "SKU-1",
        "image_url": data_uri(),
        "prompt": "remove the background",
        "steps": [{"prompt": "on a beach"}, {"prompt": "two takes", "num_images": 2}],
    }
    submitted = container.batches("test").submit(
        io.BytesIO((json.dumps(line) + "\n").encode()),
        "jsonl",
        BatchOptions(providers=("fal",), budget_usd=Decimal("0.15")),
    )
    ((job, _),) = _batch_jobs(container, submitted.batch.id)
    with container.engine.begin() as conn:
        # Steps 1 and 2 were paid; the chain waits on its third step.
        conn.exec_driver_sql("UPDATE jobs SET step = 3, cost_usd = 0.08 WHERE id = %s", (job.id,))

    assert _pipeline(container, 5).dispatch() == 0

    after = container.jobs("test").get(job.id).job
    assert (after.state, after.error_code, after.step) == (JobState.CANCELED, "budget_exhausted", 3)


@pytest.mark.usefixtures("celery_worker", "scheduler_loop")
def test_a_chain_failed_at_a_step_keeps_the_steps_before_and_a_retry_resumes_there(
    container: Container, fal_emulator: RunningServer
) -> None:
    config = f"{fal_emulator.url}/_emulator/config"
    steps = (StepIn(prompt="Put it in a lagoon"), StepIn(prompt="Warm colour grade"))
    httpx.patch(config, json={"moderated_words": ["lagoon"]})
    try:
        job, _ = container.jobs("test").create(job_request(steps=steps))
        failed = wait_until(lambda: _finished(container, job.id), timeout=60, what="chain to fail")
    finally:
        httpx.patch(config, json={"moderated_words": []})

    assert (failed.job.state, failed.job.error_code, failed.job.step) == (
        JobState.FAILED,
        "content_moderated",
        2,
    )
    [kept] = failed.outputs
    assert kept.step == 1 and container.storage.head(kept.key) is not None
    assert failed.job.cost_usd == Decimal("0.04")  # step 1; a moderated attempt is not charged

    container.jobs("test").retry(job.id, "moderation fixed")
    done = wait_until(lambda: _finished(container, job.id), timeout=60, what="chain to finish")

    assert done.job.state is JobState.SUCCEEDED, done.job.error_message
    assert [(a.step, a.outcome) for a in done.attempts] == [
        (1, "succeeded"),
        (2, "failed"),
        (2, "succeeded"),
        (3, "succeeded"),
    ]
    # The provider was asked for step 1 once: one request edited the original image.
    asked = _requests(fal_emulator)
    sources = [asked[str(a.request_id)]["source_sha256"] for a in done.attempts]
    assert sources.count(sources[0]) == 1
    assert sources[1] == sources[2] == kept.sha256
    assert done.outputs[0].step == 1 and done.outputs[0].sha256 == kept.sha256
    assert done.job.cost_usd == Decimal("0.12")
