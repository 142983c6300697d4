"""Producer callbacks as pure values: payloads, signatures, and what each try's answer means."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from models.state import JobState
from worker.celery_app import CeleryQueue
from worker.config import Settings, check_callback_secret
from worker.values.callback_events import (
    CallbackPolicy,
    CallbackRecord,
    CallbackState,
    Verdict,
    encode,
    job_payload,
    judge,
    new_secret,
    signed_headers,
    with_output_urls,
)
from worker.values.records import JobRecord, OutputRecord
from worker.values.retry import RetryPolicy

POLICY = CallbackPolicy(timeout_seconds=5, max_attempts=8, retry=RetryPolicy(30.0, 3600.0))
CREATED = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
DONE = CREATED + timedelta(seconds=9, microseconds=250_000)
QUALITY = {
    "passed": True,
    "failed": None,
    "checks": {"blank": "pass", "unchanged": "pass"},
    "flags": ["subject_lost"],
    "scores": {"stddev": 41.2, "distance": 0.47},
}
OUTPUT = OutputRecord(0, "outputs/j/0.jpg", "image/jpeg", 1024, 768, 51234, "ab" * 32, QUALITY)


def job(state: JobState, **changes: object) -> JobRecord:
    """A finished job, consistent with ``state`` (outputs go with success, errors with failure)."""
    fields: dict[str, object] = {
        "id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "state": state,
        "model": "flux-kontext-pro",
        "input": {"prompt": "p", "image_url": "https://a/b.jpg"},
        "providers": ("fal",),
        "provider": "fal",
        "attempt": 1,
        "failed_attempts": 0,
        "max_attempts": 5,
        "priority": 0,
        "external_id": "SKU-1",
        "batch_id": None,
        "callback_url": "https://hooks.example.com/editq",
        "metadata": {"collection": "summer"},
        "excluded_providers": {},
        "idempotency_key": None,
        "request_hash": None,
        "run_after": CREATED,
        "error_code": None,
        "error_message": None,
        "cost_usd": Decimal("0.0400"),
        "created_at": CREATED,
        "updated_at": DONE,
        "completed_at": DONE,
    }
    fields.update(changes)
    return JobRecord(**fields)  # type: ignore[arg-type]


SHOWN = {
    "index": 0,
    "key": "outputs/j/0.jpg",
    "content_type": "image/jpeg",
    "width": 1024,
    "height": 768,
    "bytes": 51234,
    "sha256": "ab" * 32,
    "quality": QUALITY,
    "step": 1,
}


def test_a_succeeded_job_event_carries_its_outputs_their_quality_and_cost() -> None:
    payload = job_payload(job(JobState.SUCCEEDED), [OUTPUT])
    assert payload == {
        "type": "job.succeeded",
        "timestamp": "2026-05-01T12:00:09.250000Z",
        "data": {
            "id": "00000000-0000-4000-8000-000000000001",
            "external_id": "SKU-1",
            "batch_id": None,
            "state": "succeeded",
            "model": "flux-kontext-pro",
            "provider": "fal",
            "outputs": [SHOWN],
            "steps": [{"step": 1, "prompt": "p", "outputs": [SHOWN]}],
            "error": None,
            "cost_usd": "0.0400",
            "metadata": {"collection": "summer"},
            "created_at": "2026-05-01T12:00:00Z",
            "completed_at": "2026-05-01T12:00:09.250000Z",
        },
    }
    # What is stored must be JSON as it is (a JSONB column).
    assert json.loads(encode(payload)) == payload


def test_failed_and_canceled_jobs_name_their_event_and_error() -> None:
    batch = uuid.uuid4()
    failed = job_payload(
        job(JobState.FAILED, error_code="content_moderated", error_message="nope", batch_id=batch),
        [],
    )
    assert failed["type"] == "job.failed"
    assert failed["data"]["error"] == {"code": "content_moderated", "message": "nope", "step": 1}
    assert failed["data"]["outputs"] == [] and failed["data"]["batch_id"] == str(batch)
    canceled = job_payload(job(JobState.CANCELED), [])
    assert canceled["type"] == "job.canceled" and canceled["data"]["error"] is None


def test_a_job_that_has_not_ended_has_no_event() -> None:
    with pytest.raises(KeyError):
        job_payload(job(JobState.RUNNING), [])


def test_output_urls_are_added_at_send_time_without_touching_the_snapshot() -> None:
    stored = job_payload(job(JobState.SUCCEEDED), [OUTPUT])
    sent = with_output_urls(stored, lambda key: f"https://s3.example.com/{key}?X-Amz-Signature=s")
    assert sent["data"]["outputs"][0]["url"] == (
        "https://s3.example.com/outputs/j/0.jpg?X-Amz-Signature=s"
    )
    assert "url" not in stored["data"]["outputs"][0]
    # A payload without outputs (a batch's) goes as it is.
    batch = {"type": "batch.completed", "timestamp": "t", "data": {"id": "b"}}
    assert with_output_urls(batch, lambda key: key) == batch


def test_headers_are_standard_webhooks_and_verify_with_the_library() -> None:
    secret = new_secret()
    body = encode(job_payload(job(JobState.SUCCEEDED), [OUTPUT]))
    now = datetime.now(UTC)
    headers = signed_headers(Webhook(secret), "msg_abc", body, now)

    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(body, headers)["type"] == "job.succeeded"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("0.0400", "0.0000"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_the_webhook_id_is_the_callbacks_own_and_stable() -> None:
    callback_id = uuid.uuid4()
    record = CallbackRecord(
        callback_id, None, None, "https://h/x", "job.failed", {}, CallbackState.PENDING,
        0, CREATED, None, None, CREATED, None,
    )  # fmt: skip
    assert record.webhook_id == f"msg_{callback_id.hex}"
    assert replace(record, attempts=5, state=CallbackState.FAILED).webhook_id == record.webhook_id


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert judge(status, 1, POLICY, random.Random(0)).verdict is Verdict.DELIVERED


def test_410_gone_fails_at_once() -> None:
    assert judge(410, 1, POLICY, random.Random(0)).verdict is Verdict.FAILED


def test_a_refused_address_fails_at_once() -> None:
    decision = judge(None, 1, POLICY, random.Random(0), permanent=True)
    assert decision.verdict is Verdict.FAILED


@pytest.mark.parametrize("status", [None, 301, 400, 404, 429, 500, 503])
def test_other_answers_and_no_answer_are_tried_again_until_max_attempts(
    status: int | None,
) -> None:
    rng = random.Random(0)
    verdicts = [judge(status, n, POLICY, rng).verdict for n in range(1, 9)]
    assert verdicts == [Verdict.RETRY] * 7 + [Verdict.FAILED]


@pytest.mark.parametrize(
    ("attempts", "ceiling"), [(1, 30.0), (2, 60.0), (3, 120.0), (6, 960.0), (7, 1920.0)]
)
def test_the_backoff_is_full_jitter_under_an_exponential_ceiling(
    attempts: int, ceiling: float
) -> None:
    rng = random.Random(1)
    policy = CallbackPolicy(max_attempts=50, retry=RetryPolicy(30.0, 1800.0))
    delays = [judge(500, attempts, policy, rng).delay_seconds for _ in range(2000)]
    capped = min(ceiling, 1800.0)
    assert min(delays) >= 0 and max(delays) <= capped
    assert min(delays) < capped * 0.05 and max(delays) > capped * 0.95


def test_a_try_may_take_its_timeout_before_the_tick_sends_it_again() -> None:
    assert POLICY.lease_seconds > POLICY.timeout_seconds


def test_the_callback_secret_must_be_a_standard_webhooks_secret() -> None:
    check_callback_secret(new_secret())
    for bad in ("whsec_", "whsec_c2hvcnQ=", "c2VjcmV0" * 8, "whsec_not base64!!" * 3):
        with pytest.raises(ValueError, match="whsec_"):
            check_callback_secret(bad)


def test_a_bad_callback_secret_is_refused_without_being_echoed() -> None:
    leaked = "whsec_dG9vLXNob3J0LXRvLXVzZQ=="
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, callback_secret=leaked)
    assert "callback_secret" in str(refused.value)
    assert leaked not in str(refused.value) and "dG9v" not in str(refused.value)


def test_the_delivery_message_carries_ids_only() -> None:
    sent: list[tuple[str, list[object], str]] = []

    class Recorder:
        def send_task(self, name: str, args: list[object], queue: str, priority: int) -> None:
            sent.append((name, args, queue))

    callback_id = uuid.uuid4()
    CeleryQueue(Recorder(), "q1").deliver_callback(callback_id, 3)  # type: ignore[arg-type]
    assert sent == [("editq.deliver_callback", [str(callback_id), 3], "q1")]
