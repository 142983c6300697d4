"""The HTTP API over real PostgreSQL, Valkey and S3: contracts, errors and nothing half-written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from emulators.server import run_in_thread
from models.tables import Job, JobEvent
from tests.factories import job_body
from tests.integration.conftest import API_KEY
from worker.api.app import create_app
from worker.wiring import Container

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(container: Container) -> Iterator[httpx.Client]:
    """The API served over real HTTP, and a client for it."""
    with run_in_thread(create_app(container)) as server, httpx.Client(base_url=server.url) as c:
        yield c


def _rows(container: Container) -> tuple[int, int]:
    with container.engine.connect() as conn:
        jobs = conn.scalar(select(func.count()).select_from(Job))
        events = conn.scalar(select(func.count()).select_from(JobEvent))
    return int(jobs or 0), int(events or 0)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}],
    ids=["missing", "unknown-key", "wrong-scheme"],
)
def test_jobs_need_a_producer_key(client: httpx.Client, headers: dict[str, str]) -> None:
    answer = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert client.get("/v1/jobs", headers=headers).status_code == 401


def test_create_then_read_a_job(client: httpx.Client) -> None:
    created = client.post(
        "/v1/jobs", json=job_body(external_id="SKU-1", priority=5, metadata={"a": 1}), headers=AUTH
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "queued"
    assert job["providers"] == ["fal"] and job["provider"] == "fal"
    assert job["external_id"] == "SKU-1" and job["priority"] == 5 and job["metadata"] == {"a": 1}

    read = client.get(f"/v1/jobs/{job['id']}", params={"events": "true"}, headers=AUTH).json()
    assert read["id"] == job["id"]
    assert read["input"]["prompt"] == "Put the mug on a marble counter"
    assert read["attempts"] == [] and read["outputs"] == []
    assert [e["transition"] for e in read["events"]] == ["create"]
    assert read["events"][0]["actor"] == "api"


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"input": {"prompt": "x", "image_url": "ftp://a/b.jpg"}}, "input.image_url", "value_error"),
    ({"input": {"prompt": "  ", "image_url": "https://a/b.jpg"}}, "input.prompt", "value_error"),
    ({"input": {"image_url": "https://a/b.jpg"}}, "input.prompt", "missing"),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "num_images": 5}},
        "input.num_images",
        "less_than_equal",
    ),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "aspect_ratio": "5:4"}},
        "input.aspect_ratio",
        "literal_error",
    ),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "guidance_scale": 0}},
        "input.guidance_scale",
        "greater_than_equal",
    ),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "safety_tolerance": 7}},
        "input.safety_tolerance",
        "less_than_equal",
    ),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "output_format": "webp"}},
        "input.output_format",
        "literal_error",
    ),
    (
        {"input": {"prompt": "x", "image_url": "https://a", "steps": 4}},
        "input.steps",
        "extra_forbidden",
    ),
    ({"model": "flux-dev"}, "model", "literal_error"),
    ({"providers": ["nobody"]}, "providers.0", "literal_error"),
    ({"providers": ["fal", "fal"]}, "providers", "value_error"),
    ({"priority": 1000}, "priority", "less_than_equal"),
    ({"callback_url": "not a url"}, "callback_url", "string_pattern_mismatch"),
    (
        {"steps": [{"prompt": "x", "image_url": "https://a/b.jpg"}]},
        "steps.0.image_url",
        "extra_forbidden",
    ),
    ({"steps": [{"prompt": f"s{i}"} for i in range(10)]}, "steps", "too_long"),
    ({"callback_events": ["job.started"]}, "callback_events.0", "literal_error"),
]


@pytest.mark.parametrize(
    ("change", "field", "rule"), INVALID, ids=[i[1] + ":" + i[2] for i in INVALID]
)
def test_invalid_fields_get_a_422_that_names_them_and_write_nothing(
    client: httpx.Client, container: Container, change: dict[str, Any], field: str, rule: str
) -> None:
    body = {**job_body(), **change}
    answer = client.post("/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert {"field": field, "rule": rule} in [
        {"field": f["field"], "rule": f["rule"]} for f in error["fields"]
    ], error
    assert field in error["message"]
    assert _rows(container) == (0, 0)


def test_a_step_editing_an_output_not_made_is_a_422_that_names_it_and_writes_nothing(
    client: httpx.Client, container: Container
) -> None:
    body = {**job_body(input={"num_images": 2}), "steps": [{"prompt": "beach", "use_output": 2}]}
    answer = client.post("/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "chain_invalid"
    assert error["fields"][0]["field"] == "steps.0.use_output"
    assert error["fields"][0]["rule"] == "output_not_made"
    assert "makes 2 output(s)" in error["message"]
    assert _rows(container) == (0, 0)


def test_malformed_json_is_a_422_on_the_body(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/jobs", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["rule"] == "json_invalid"


def test_an_oversized_body_is_refused_before_it_is_read(
    client: httpx.Client, container: Container
) -> None:
    limit = container.settings.max_request_bytes
    huge = job_body(input={"image_url": "data:image/png;base64," + "A" * limit})
    answer = client.post("/v1/jobs", json=huge, headers=AUTH)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"
    assert _rows(container) == (0, 0)


def test_a_batch_file_is_bounded_by_its_own_limit_not_the_request_limit(
    container: Container,
) -> None:
    # A request limit of 1 KiB and a batch limit of 4 KiB: a 2 KiB batch file is taken
    # although it is over the request limit, and a 5 KiB one is refused by its own.
    bounded = dataclasses.replace(
        container,
        settings=container.settings.model_copy(
            update={"max_request_bytes": 1024, "batch_max_bytes": 4096}
        ),
    )
    row = json.dumps({"external_id": "SKU-1", "image_url": "https://example.com/a.png",
                      "prompt": "p"})  # fmt: skip
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    with run_in_thread(create_app(bounded)) as server, httpx.Client(base_url=server.url) as c:
        fits = "\n".join([row] * (2048 // len(row))).encode()
        assert c.post("/v1/batches", content=fits, headers=headers).status_code == 201
        queued = _rows(container)
        too_big = b" " * (5 * 1024 - len(row)) + row.encode()
        answer = c.post("/v1/batches", content=too_big, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"
    assert "EDITQ_BATCH_MAX_BYTES" in answer.json()["error"]["message"]
    assert _rows(container) == queued


def test_idempotency_key_gives_back_the_same_job(
    client: httpx.Client, container: Container
) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-77"}
    first = client.post("/v1/jobs", json=job_body(), headers=headers)
    again = client.post("/v1/jobs", json=job_body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]

    other = client.post("/v1/jobs", json=job_body(priority=9), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert _rows(container) == (1, 1)


def test_listing_pages_with_a_cursor_and_filters(client: httpx.Client) -> None:
    ids = [client.post("/v1/jobs", json=job_body(), headers=AUTH).json()["id"] for _ in range(5)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=AUTH)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params, headers=AUTH).json()
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    canceled = client.get("/v1/jobs", params={"state": "canceled"}, headers=AUTH).json()["jobs"]
    assert [j["id"] for j in canceled] == [ids[0]]
    queued = client.get("/v1/jobs", params={"state": ["queued"], "provider": "fal"}, headers=AUTH)
    assert len(queued.json()["jobs"]) == 4

    bad = client.get("/v1/jobs", params={"cursor": "garbage"}, headers=AUTH)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"
    bad_state = client.get("/v1/jobs", params={"state": "lost"}, headers=AUTH)
    assert (
        bad_state.status_code == 422
        and bad_state.json()["error"]["fields"][0]["field"] == "state.0"
    )


def test_cancel_and_retry_follow_the_transition_table(client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json=job_body(), headers=AUTH).json()["id"]

    retry_queued = client.post(f"/v1/jobs/{job_id}/retry", headers=AUTH)
    assert retry_queued.status_code == 409
    assert retry_queued.json()["error"]["code"] == "invalid_transition"

    canceled = client.post(
        f"/v1/jobs/{job_id}/cancel", json={"reason": "wrong photo"}, headers=AUTH
    )
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    assert canceled.json()["completed_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH)
    assert again.status_code == 409

    retried = client.post(f"/v1/jobs/{job_id}/retry", json={"reason": "photo fixed"}, headers=AUTH)
    assert retried.status_code == 200 and retried.json()["state"] == "queued"
    events = client.get(f"/v1/jobs/{job_id}", params={"events": 1}, headers=AUTH).json()["events"]
    assert [(e["transition"], e["reason"]) for e in events] == [
        ("create", None),
        ("cancel", "wrong photo"),
        ("retry", "photo fixed"),
    ]


def test_unknown_job_is_a_404(client: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for answer in (
        client.get(f"/v1/jobs/{missing}", headers=AUTH),
        client.post(f"/v1/jobs/{missing}/cancel", headers=AUTH),
        client.post(f"/v1/jobs/{missing}/retry", headers=AUTH),
    ):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "job_not_found"
    bad_id = client.get("/v1/jobs/not-a-uuid", headers=AUTH)
    assert bad_id.status_code == 422 and bad_id.json()["error"]["fields"][0]["field"] == "job_id"


def test_health_readiness_metrics_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok"}
    client.post("/v1/jobs", json=job_body(), headers=AUTH)
    metrics = client.get("/metrics").text
    assert 'editq_jobs{state="queued"} 1.0' in metrics
    spec = client.get("/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/webhooks/{provider}"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_a_forged_webhook_is_refused_and_changes_nothing(
    client: httpx.Client, container: Container
) -> None:
    job_id = client.post("/v1/jobs", json=job_body(), headers=AUTH).json()["id"]
    before = _rows(container)
    forged = client.post(
        "/v1/webhooks/fal",
        params={"attempt": "00000000-0000-4000-8000-000000000001"},
        json={
            "request_id": "r1",
            "status": "OK",
            "payload": {"images": [{"url": "https://x/y.png"}]},
        },
        headers={
            "X-Fal-Webhook-Request-Id": "r1",
            "X-Fal-Webhook-User-Id": "u",
            "X-Fal-Webhook-Timestamp": "1700000000",
            "X-Fal-Webhook-Signature": "00" * 64,
        },
    )
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "webhook_signature_invalid"
    assert _rows(container) == before
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()["state"] == "queued"


def test_a_provider_that_cannot_honour_a_field_is_left_out_and_named(
    client: httpx.Client,
) -> None:
    body = job_body(input={"guidance_scale": 4.5}, providers=["fal", "runware"])
    answer = client.post("/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["providers"] == ["fal"]
    assert set(job["excluded_providers"]) == {"runware"}
    assert job["excluded_providers"]["runware"].startswith("guidance_scale:")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input": {"guidance_scale": 4.5}, "providers": ["runware"]}, "input.guidance_scale"),
        ({"model": "flux-kontext-max", "providers": ["runflow", "runware"]}, "model"),
    ],
)
def test_a_job_no_listed_provider_can_run_is_a_422_naming_the_field(
    client: httpx.Client, container: Container, change: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/jobs", json=job_body(**change), headers=AUTH)
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "unsupported_by_providers"
    assert {f["field"] for f in error["fields"]} == {field}
    assert {f["rule"] for f in error["fields"]} == {"unsupported_by_provider"}
    assert _rows(container) == (0, 0)


def test_providers_report_their_breakers_and_limits(client: httpx.Client) -> None:
    answer = client.get("/v1/providers", headers=AUTH)
    assert answer.status_code == 200
    health = {p["name"]: p for p in answer.json()}
    assert set(health) == {"fal", "runware", "runflow"}
    assert health["fal"]["breaker"] == "closed" and health["fal"]["capacity"] >= 1
    assert client.get("/v1/providers").status_code == 401


def _fail(container: Container, job_ids: list[str], code: str) -> None:
    with container.engine.begin() as conn:
        conn.execute(
            update(Job)
            .where(Job.id.in_(job_ids))
            .values(state="failed", error_code=code, completed_at=func.now())
        )


def test_retry_by_filter_with_a_dry_run_first(client: httpx.Client, container: Container) -> None:
    ids = [client.post("/v1/jobs", json=job_body(), headers=AUTH).json()["id"] for _ in range(5)]
    _fail(container, ids[:3], "provider_unavailable")
    _fail(container, ids[3:4], "content_moderated")
    body = {"error_code": "provider_unavailable", "reason": "fal outage 02:00-02:40"}

    dry = client.post("/v1/jobs/retry", json={**body, "dry_run": True}, headers=AUTH)

    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == 3 and dry.json()["retried"] == 0
    assert {j["id"] for j in dry.json()["sample"]} == set(ids[:3])
    assert all(j["state"] == "failed" for j in dry.json()["sample"])
    states = [client.get(f"/v1/jobs/{i}", headers=AUTH).json()["state"] for i in ids]
    assert states == ["failed"] * 4 + ["queued"]  # a dry run changes nothing

    done = client.post("/v1/jobs/retry", json=body, headers=AUTH).json()

    assert (done["matched"], done["retried"]) == (3, 3)
    for job_id in ids[:3]:
        job = client.get(f"/v1/jobs/{job_id}", params={"events": 1}, headers=AUTH).json()
        assert job["state"] == "queued" and job["error"] is None
        assert job["events"][-1]["transition"] == "retry"
        assert job["events"][-1]["reason"] == "fal outage 02:00-02:40"
    moderated = client.get(f"/v1/jobs/{ids[3]}", headers=AUTH).json()
    assert moderated["state"] == "failed"  # another error code: left alone


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"error_code": "x"}, "reason"),
        ({"state": ["succeeded"], "reason": "r"}, "state.0"),
        ({"reason": "r", "dry_run": "maybe"}, "dry_run"),
    ],
)
def test_retry_by_filter_refuses_bad_filters(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/jobs/retry", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["field"] == field
