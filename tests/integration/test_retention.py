"""Retention on real PostgreSQL and S3: what a prune deletes, what it keeps, its archive.

Jobs run through the real pipeline, then are aged by moving their completion back.
"""

from __future__ import annotations

import gzip
import json
import uuid

import pytest
from sqlalchemy import func, insert, select, text
from typer.testing import CliRunner

from models.state import JobState
from models.tables import Attempt, Batch, Callback, Job, JobEvent, JobOutput
from tests.factories import job_request
from tests.integration.test_batches import catalog, submit
from tests.waiting import wait_until
from worker.cli.main import app
from worker.pipeline.scheduler import Pruning
from worker.usecases.retention import Retention
from worker.values.records import JobFilter
from worker.wiring import Container

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("celery_worker", "scheduler_loop")]

DAYS = 30


def retention(container: Container, *, archive: bool = False) -> Retention:
    return Retention(container.database("test"), container.storage, DAYS, archive=archive)


def finished(container: Container, job_id: uuid.UUID) -> JobState:
    def ended() -> JobState | None:
        state = container.jobs("test").get(job_id).job.state
        return state if state in {JobState.SUCCEEDED, JobState.FAILED} else None

    return wait_until(ended, timeout=30, what=f"job {job_id} to finish")


def age(container: Container, days: float, *ids: uuid.UUID) -> None:
    """Move the jobs' completion (and their batches') ``days`` into the past."""
    with container.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET completed_at = now() - make_interval(days => CAST(:d AS int))"
                " WHERE id = ANY(:ids)"
            ),
            {"d": days, "ids": list(ids)},
        )
        conn.execute(
            text(
                "UPDATE batches SET completed_at = now() - make_interval(days => CAST(:d AS int))"
                " WHERE id IN (SELECT batch_id FROM jobs WHERE id = ANY(:ids))"
            ),
            {"d": days, "ids": list(ids)},
        )


def rows(container: Container, table: type, job_id: uuid.UUID) -> int:
    with container.engine.connect() as conn:
        column = table.id if table is Job else table.job_id  # type: ignore[attr-defined]
        return int(
            conn.scalar(select(func.count()).select_from(table).where(column == job_id)) or 0
        )


@pytest.fixture
def ran(container: Container) -> dict[str, uuid.UUID]:
    """An old success, a young success, and an old job still waiting on its callback."""
    jobs = container.jobs("test")
    old = jobs.create(job_request(metadata={"keep": "no"}))[0].id
    young = jobs.create(job_request())[0].id
    waiting = jobs.create(job_request())[0].id
    for job_id in (old, young, waiting):
        assert finished(container, job_id) is JobState.SUCCEEDED
    age(container, DAYS + 1, old, waiting)
    with container.engine.begin() as conn:
        conn.execute(
            insert(Callback).values(
                id=uuid.uuid4(), job_id=waiting, url="https://producer.example/hook",
                event="job.succeeded", payload={}, state="pending",
            )
        )  # fmt: skip
    return {"old": old, "young": young, "waiting": waiting}


def test_an_old_finished_job_goes_with_everything_that_hangs_off_it(
    container: Container, ran: dict[str, uuid.UUID]
) -> None:
    old = ran["old"]
    assert rows(container, Attempt, old) == 1 and rows(container, JobOutput, old) == 1
    assert rows(container, JobEvent, old) >= 5

    report = retention(container).prune()

    assert report.jobs == 1
    for table in (Job, Attempt, JobOutput, JobEvent):
        assert rows(container, table, old) == 0, table
    # A young job, and an old one whose callback is still pending, are kept.
    assert rows(container, Job, ran["young"]) == 1
    assert rows(container, Job, ran["waiting"]) == 1
    assert retention(container).prune().jobs == 0


def test_a_dry_run_counts_table_by_table_and_deletes_nothing(
    container: Container, ran: dict[str, uuid.UUID]
) -> None:
    counts = retention(container).preview()

    assert counts is not None
    assert (counts.jobs, counts.attempts, counts.outputs) == (1, 1, 1)
    assert counts.events == rows(container, JobEvent, ran["old"])
    assert rows(container, Job, ran["old"]) == 1


def test_an_archive_holds_each_job_with_its_attempts_outputs_and_events(
    container: Container, ran: dict[str, uuid.UUID]
) -> None:
    events = rows(container, JobEvent, ran["old"])

    report = retention(container, archive=True).prune()

    [key] = report.archived
    assert key.startswith("archive/jobs/") and key.endswith(".jsonl.gz")
    [line] = gzip.decompress(container.storage.get(key)).decode().splitlines()
    kept = json.loads(line)
    assert kept["job"]["id"] == str(ran["old"]) and kept["job"]["state"] == "succeeded"
    assert kept["job"]["metadata"] == {"keep": "no"}
    assert [a["outcome"] for a in kept["attempts"]] == ["succeeded"]
    assert len(kept["outputs"]) == 1 and kept["outputs"][0]["sha256"]
    assert len(kept["events"]) == events
    assert key.split("/")[2] == kept["job"]["completed_at"][:10]


def test_a_batch_goes_once_finished_old_and_empty(container: Container) -> None:
    batch_id = submit(container, catalog(2))

    def completed() -> bool:
        return container.batches("test").get(batch_id).state.value == "completed"

    wait_until(completed, timeout=60, what="the batch to complete")
    page, _ = container.jobs("test").list(JobFilter(batch_id=batch_id), 10, None)
    ids = [job.id for job in page]
    age(container, DAYS + 1, ids[0])  # one job old, the other young: the batch stays
    assert retention(container).prune().batches == 0
    age(container, DAYS + 1, *ids)
    report = retention(container).prune()
    assert (report.jobs, report.batches) == (1, 1)
    with container.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Batch).where(Batch.id == batch_id)) == 0


def test_the_scheduler_prunes_at_most_every_interval(
    container: Container, ran: dict[str, uuid.UUID]
) -> None:
    pruning = Pruning(retention(container), every=3600)
    pruning.when_due()
    assert rows(container, Job, ran["old"]) == 0
    age(container, DAYS + 1, ran["young"])
    pruning.when_due()  # within the hour: nothing
    assert rows(container, Job, ran["young"]) == 1


def test_without_a_retention_nothing_is_pruned(
    container: Container, ran: dict[str, uuid.UUID]
) -> None:
    off = Retention(container.database("test"), container.storage, None, archive=False)
    assert off.preview() is None and off.prune().jobs == 0
    assert rows(container, Job, ran["old"]) == 1


def test_db_prune_counts_on_a_dry_run_then_prunes_and_says_what(
    container: Container, ran: dict[str, uuid.UUID], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.delenv("EDITQ_RETAIN_DAYS", raising=False)
    off = runner.invoke(app, ["db", "prune", "--dry-run"])
    assert off.exit_code == 2 and "set EDITQ_RETAIN_DAYS" in off.output

    monkeypatch.setenv("EDITQ_RETAIN_DAYS", str(DAYS))
    dry = runner.invoke(app, ["db", "prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert [line.split() for line in dry.output.splitlines()[1:4]] == [
        ["jobs", "1"], ["attempts", "1"], ["outputs", "1"],
    ]  # fmt: skip
    assert rows(container, Job, ran["old"]) == 1

    done = runner.invoke(app, ["db", "prune"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 job(s) and 0 batch(es)" in done.output
    assert rows(container, Job, ran["old"]) == 0
