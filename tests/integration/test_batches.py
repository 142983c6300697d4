"""Batches on real PostgreSQL, Valkey and S3: ingest, results, cancel, budget and fairness."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from emulators.server import run_in_thread
from models.state import BatchState, JobState
from models.tables import Batch, BatchReject, Job, JobEvent
from tests.factories import data_uri, job_request
from tests.integration.conftest import API_KEY
from tests.waiting import wait_until
from worker.api.app import create_app
from worker.errors import BatchTooLarge, EditqError
from worker.fetch import Fetcher
from worker.pipeline.steps import Pipeline
from worker.usecases.batch_ingest import BatchOptions
from worker.values.records import JobFilter
from worker.wiring import Container

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CSV = {**AUTH, "Content-Type": "text/csv"}
HEADER = "external_id,image_url,prompt,num_images\n"


@pytest.fixture
def client(container: Container) -> Iterator[httpx.Client]:
    """The API served over real HTTP, and a client for it."""
    with run_in_thread(create_app(container)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def catalog(count: int, *, bad: dict[int, list[str]] | None = None) -> str:
    """A CSV of ``count`` rows; ``bad`` replaces row i's cells (1-based) with a broken row."""
    image = data_uri()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER.strip().split(","))
    for i in range(1, count + 1):
        writer.writerow((bad or {}).get(i, [f"SKU-{i:04d}", image, "Put it on marble", "1"]))
    return out.getvalue()


def table_counts(container: Container) -> tuple[int, int, int, int]:
    with container.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.scalar(select(func.count()).select_from(t)) or 0)
            for t in (Batch, Job, JobEvent, BatchReject)
        )


def pipeline_with_capacity(container: Container, capacity: int) -> Pipeline:
    policy = container.policy()
    limits = dataclasses.replace(policy.limits, capacity={"fal": capacity})
    return container.pipeline("test", dataclasses.replace(policy, limits=limits))


def submit(container: Container, text: str, **options: Any) -> uuid.UUID:
    source = io.BytesIO(text.encode())
    submitted = container.batches("test").submit(source, "csv", BatchOptions(**options))
    return submitted.batch.id


def test_good_rows_are_queued_and_bad_rows_reported_by_line_field_and_rule(
    client: httpx.Client, container: Container
) -> None:
    body = catalog(
        6,
        bad={
            2: ["SKU-0002", data_uri(), "Put it on marble", "7"],
            4: ["SKU-0004", "not-a-url", "Put it on marble", "1"],
            5: ["SKU-0001", data_uri(), "Put it on marble", "1"],
        },
    )
    answer = client.post("/v1/batches", content=body, headers=CSV)
    assert answer.status_code == 201, answer.text
    batch = answer.json()
    assert batch["state"] == "running"
    assert batch["rows"] == {"total": 6, "accepted": 3, "rejected": 3}
    assert batch["counts"]["queued"] == 3
    assert [
        (r["line"], r["external_id"], r["field"], r["rule"]) for r in batch["rejected_rows"]
    ] == [
        (3, "SKU-0002", "num_images", "less_than_equal"),
        (5, "SKU-0004", "image_url", "value_error"),
        (6, "SKU-0001", "external_id", "duplicate"),
    ]
    listed = client.get("/v1/jobs", params={"batch_id": batch["id"]}, headers=AUTH).json()
    assert sorted(j["external_id"] for j in listed["jobs"]) == ["SKU-0001", "SKU-0003", "SKU-0006"]
    assert {j["batch_id"] for j in listed["jobs"]} == {batch["id"]}
    assert client.get(f"/v1/batches/{batch['id']}", headers=AUTH).json()["rows"]["rejected"] == 3


def test_a_batch_pages_through_its_index_from_where_the_cursor_left_off(
    client: httpx.Client, container: Container
) -> None:
    # A batch's rows share their creation time, so only the id tells pages apart: the
    # cursor must start the next page inside the batch index, not filter every row before.
    batch_id = str(submit(container, catalog(11)))
    pages: list[tuple[str, Any]] = []  # each list query's SQL and parameters

    def record(conn: object, cursor: object, statement: str, params: Any, *_: object) -> None:
        if "FROM jobs" in statement and "ORDER BY" in statement:
            pages.append((statement, params))

    seen: list[dict[str, Any]] = []
    cursor = None
    event.listen(container.engine, "before_cursor_execute", record)
    try:
        while True:
            params: dict[str, Any] = {"batch_id": batch_id, "limit": 3}
            page = client.get(
                "/v1/jobs", params=params | ({"cursor": cursor} if cursor else {}), headers=AUTH
            ).json()
            seen += page["jobs"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    finally:
        event.remove(container.engine, "before_cursor_execute", record)

    assert len(seen) == 11 and len({j["id"] for j in seen}) == 11
    order = [(j["created_at"], j["id"]) for j in seen]
    assert order == sorted(order, reverse=True)
    with container.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        plan = "\n".join(
            row[0] for row in conn.exec_driver_sql("EXPLAIN " + pages[-1][0], pages[-1][1])
        )
    starts = [line for line in plan.splitlines() if "Index Cond" in line]
    assert any("ROW(created_at, id) <" in line for line in starts), plan
    assert "Sort" not in plan, plan


def test_strict_mode_refuses_the_whole_file_and_writes_nothing(
    client: httpx.Client, container: Container
) -> None:
    body = catalog(5, bad={3: ["SKU-0003", "", "Put it on marble", "1"]})
    answer = client.post("/v1/batches", params={"strict": "true"}, content=body, headers=CSV)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "batch_rows_invalid" and error["rejected"] == 1
    assert error["rows"][0] | {"message": ""} == {
        "line": 4, "external_id": "SKU-0003", "field": "image_url", "rule": "missing",
        "message": "",
    }  # fmt: skip
    assert table_counts(container) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ("external_id,image_url,prompt,colour\n", CSV, 422, "batch_file_invalid"),
        (HEADER, CSV, 422, "batch_empty"),
        (HEADER + "A,not-a-url,x,1\n", CSV, 422, "batch_empty"),
        ('{"external_id": "A"}\n', {**AUTH, "Content-Type": "application/json"}, 415,
         "batch_format_unknown"),
        (catalog(2), {**AUTH, "Content-Type": "text/csv"} | {}, 201, None),
    ],
    ids=["unknown-column", "no-rows", "no-good-row", "not-csv-or-jsonl", "control"],
)  # fmt: skip
def test_a_file_that_cannot_be_a_batch_leaves_nothing_behind(
    client: httpx.Client,
    container: Container,
    body: str,
    headers: dict[str, str],
    status: int,
    code: str | None,
) -> None:
    answer = client.post("/v1/batches", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if code is None:
        assert table_counts(container)[:2] == (1, 2)
        return
    assert answer.json()["error"]["code"] == code
    assert table_counts(container) == (0, 0, 0, 0)


def test_more_rows_than_a_batch_may_hold_writes_nothing(container: Container) -> None:
    settings = container.settings.model_copy(update={"batch_max_rows": 3})
    batches = dataclasses.replace(container, settings=settings).batches("test")
    with pytest.raises(BatchTooLarge):
        batches.submit(io.BytesIO(catalog(4).encode()), "csv", BatchOptions())
    assert table_counts(container) == (0, 0, 0, 0)


def test_the_same_idempotency_key_and_file_give_back_the_same_batch(
    client: httpx.Client, container: Container
) -> None:
    key = {"Idempotency-Key": f"catalog-{uuid.uuid4()}"}
    first = client.post("/v1/batches", content=catalog(3), headers=CSV | key)
    again = client.post("/v1/batches", content=catalog(3), headers=CSV | key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/batches", content=catalog(4), headers=CSV | key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    assert table_counts(container)[:2] == (1, 3)


def test_jsonl_rows_carry_their_own_model_priority_and_parameters(
    client: httpx.Client,
) -> None:
    rows = [
        {"external_id": "A", "image_url": data_uri(), "prompt": "x", "priority": 7, "seed": 3},
        {"external_id": "B", "image_url": data_uri(), "prompt": "y", "aspect_ratio": "16:9"},
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows)
    answer = client.post(
        "/v1/batches",
        params={"priority": "2"},
        content=body,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 201, answer.text
    jobs = client.get("/v1/jobs", params={"batch_id": answer.json()["id"]}, headers=AUTH).json()
    by_id = {j["external_id"]: j for j in jobs["jobs"]}
    assert by_id["A"]["priority"] == 7 and by_id["A"]["input"]["seed"] == 3
    assert by_id["B"]["priority"] == 2 and by_id["B"]["input"]["aspect_ratio"] == "16:9"


def test_a_batch_runs_to_completion_and_writes_its_result_files(
    client: httpx.Client, container: Container, celery_worker: None, scheduler_loop: None
) -> None:
    body = catalog(12, bad={5: ["SKU-0005", "", "Put it on marble", "1"]})
    batch_id = client.post("/v1/batches", content=body, headers=CSV).json()["id"]
    finished = wait_until(
        lambda: (
            (b := client.get(f"/v1/batches/{batch_id}", headers=AUTH).json())["state"]
            == "completed"
            and b
        ),
        timeout=60,
        what="the batch to complete",
    )
    assert finished["done"] == 11 and finished["failed"] == 0 and finished["in_flight"] == 0
    assert finished["cost_usd"] == pytest.approx(11 * 0.04)
    assert finished["eta_seconds"] == 0
    files = client.get(f"/v1/batches/{batch_id}/results", headers=AUTH).json()
    results = [json.loads(line) for line in httpx.get(files["results"]["url"]).text.splitlines()]
    errors = [json.loads(line) for line in httpx.get(files["errors"]["url"]).text.splitlines()]
    assert [r["external_id"] for r in results] == [f"SKU-{i:04d}" for i in range(1, 13) if i != 5]
    for result in results:
        assert result["state"] == "succeeded"
        [output] = result["outputs"]
        image = httpx.get(output["url"])
        assert image.status_code == 200 and len(image.content) == output["bytes"]
    assert errors == [
        {
            "external_id": "SKU-0005",
            "line": 6,
            "code": "invalid_row",
            "field": "image_url",
            "rule": "missing",
            "message": "image_url: Field required",
        }
    ]


def test_results_are_refused_until_the_batch_has_finished(
    client: httpx.Client, container: Container
) -> None:
    batch_id = client.post("/v1/batches", content=catalog(2), headers=CSV).json()["id"]
    answer = client.get(f"/v1/batches/{batch_id}/results", headers=AUTH)
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "batch_not_finished"
    missing = client.get(f"/v1/batches/{uuid.uuid4()}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "batch_not_found"


def test_cancel_stops_every_unfinished_job_and_the_batch_ends_canceled(
    client: httpx.Client, container: Container
) -> None:
    batch_id = client.post("/v1/batches", content=catalog(6), headers=CSV).json()["id"]
    assert pipeline_with_capacity(container, 2).dispatch() == 2  # two are at the provider
    answer = client.post(
        f"/v1/batches/{batch_id}/cancel", json={"reason": "wrong prompt"}, headers=AUTH
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["counts"]["canceled"] == 6 and answer.json()["cancel_requested_at"]
    batches = container.batches("test")
    assert batches.tick() == 1
    assert batches.finish(uuid.UUID(batch_id)) == "canceled"
    again = client.post(f"/v1/batches/{batch_id}/cancel", headers=AUTH)
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    files = batches.results(uuid.UUID(batch_id))
    errors = [json.loads(line) for line in httpx.get(files.errors_url).text.splitlines()]
    assert len(errors) == 6 and {e["code"] for e in errors} == {"canceled"}
    events = container.jobs("test").get(uuid.UUID(errors[0]["job_id"])).events
    assert events[-1].transition == "cancel" and events[-1].reason == "wrong prompt"


def test_a_budget_stops_dispatch_before_the_estimated_spend_would_pass_it(
    container: Container,
) -> None:
    batch_id = submit(container, catalog(10), budget_usd=Decimal("0.10"))
    pipeline = pipeline_with_capacity(container, 10)
    assert pipeline.dispatch() == 2  # 2 x $0.04 fits in $0.10; a third would pass it
    status = container.batches("test").status(batch_id)
    assert status.batch.budget_exhausted_at is not None
    assert status.progress.counts == {JobState.SUBMITTING: 2, JobState.CANCELED: 8}
    page, _ = container.jobs("test").list(
        JobFilter(states=(JobState.CANCELED,), batch_id=batch_id), limit=20
    )
    assert {j.error_code for j in page} == {"budget_exhausted"}
    assert pipeline.dispatch() == 0


def test_an_interactive_job_is_dispatched_ahead_of_a_batch_backlog(
    container: Container,
) -> None:
    batch_id = submit(container, catalog(50))
    interactive = container.jobs("test").create(job_request())[0].id
    pipeline = pipeline_with_capacity(container, 2)
    assert pipeline.dispatch() == 2
    assert container.jobs("test").get(interactive).job.state is JobState.SUBMITTING
    counts = container.batches("test").status(batch_id).progress.counts
    assert counts == {JobState.SUBMITTING: 1, JobState.QUEUED: 49}


def test_dispatch_takes_turns_across_batches_within_a_priority(container: Container) -> None:
    first = submit(container, catalog(20))
    second = submit(container, catalog(20))
    urgent = submit(container, catalog(3), priority=5)
    assert pipeline_with_capacity(container, 9).dispatch() == 9
    batches = container.batches("test")
    claimed = {
        b: batches.status(b).progress.counts.get(JobState.SUBMITTING, 0)
        for b in (first, second, urgent)
    }
    assert claimed == {urgent: 3, first: 3, second: 3}


def test_retrying_a_finished_batchs_jobs_runs_the_batch_again(container: Container) -> None:
    batch_id = submit(container, catalog(3))
    batches = container.batches("test")
    batches.cancel(batch_id, "paused for the night")
    assert batches.tick() == 1 and batches.finish(batch_id) == "canceled"
    report = container.jobs("test").retry_matching(
        JobFilter(states=(JobState.CANCELED,), batch_id=batch_id), "resume", dry_run=False
    )
    assert report.retried == 3
    assert batches.get(batch_id).state is BatchState.RUNNING
    assert pipeline_with_capacity(container, 5).dispatch() == 3


def test_callback_urls_to_private_addresses_are_refused_for_the_batch_and_per_row(
    container: Container,
) -> None:
    strict = dataclasses.replace(
        container, fetcher=Fetcher(container.http, max_bytes=1024, allow_private=False)
    )
    batches = strict.batches("test")
    with pytest.raises(EditqError) as caught:
        batches.submit(
            io.BytesIO(catalog(2).encode()),
            "csv",
            BatchOptions(callback_url="http://10.0.0.7/hook"),
        )
    assert caught.value.code == "callback_url_refused"
    assert table_counts(container) == (0, 0, 0, 0)

    rows = catalog(3).splitlines()
    rows[0] += ",callback_url"
    rows[1] += ",http://192.168.1.5/hook"
    rows[2] += ",https://93.184.215.14/hook"
    rows[3] += ","
    submitted = batches.submit(io.BytesIO("\n".join(rows).encode()), "csv", BatchOptions())
    [reject] = submitted.rejects
    assert (reject.line, reject.field, reject.rule) == (2, "callback_url", "callback_url_refused")
    assert submitted.batch.rows_accepted == 2


def test_ops_retry_a_batchs_canceled_jobs_by_filter_with_a_dry_run_first(
    client: httpx.Client, container: Container
) -> None:
    batch_id = client.post("/v1/batches", content=catalog(4), headers=CSV).json()["id"]
    other = client.post("/v1/batches", content=catalog(2), headers=CSV).json()["id"]
    for batch in (batch_id, other):
        client.post(f"/v1/batches/{batch}/cancel", json={"reason": "night"}, headers=AUTH)
    looked = client.post(
        "/v1/jobs/retry",
        json={"batch_id": batch_id, "state": ["canceled"], "reason": "morning", "dry_run": True},
        headers=AUTH,
    ).json()
    assert (looked["matched"], looked["retried"]) == (4, 0)
    assert {j["batch_id"] for j in looked["sample"]} == {batch_id}
    done = client.post(
        "/v1/jobs/retry",
        json={"batch_id": batch_id, "state": ["canceled"], "reason": "morning"},
        headers=AUTH,
    ).json()
    assert done["retried"] == 4
    assert client.get(f"/v1/batches/{batch_id}", headers=AUTH).json()["counts"]["queued"] == 4
    assert client.get(f"/v1/batches/{other}", headers=AUTH).json()["counts"]["canceled"] == 2
