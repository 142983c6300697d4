"""The Runflow adapter against Runflow's wire format: submit, status, errors and callbacks.

Every body here has the shape Runflow documents (its run object, error envelope and callback
envelope), so the adapter is tested against Runflow's wire format, not our own types.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from worker.errors import WebhookRejected
from worker.faults import ErrorKind
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Pending,
    Provider,
    ProviderCallError,
    RemoteOutput,
    Submission,
    Unsupported,
    WebhookEvent,
)
from worker.providers.runflow.adapter import RunflowProvider
from worker.values.canonical import EditInput

BASE_URL = "https://api.runflow.io"
CREATE_URL = f"{BASE_URL}/v1/models/black-forest-labs/flux-pro/kontext/runs"
RUN_ID = "0196a3c2-5e8f-7b1d-9c4e-2f6a8b0d1e3f"
RUN_URL = f"{BASE_URL}/v1/runs/{RUN_ID}"
ATTEMPT = uuid.UUID("0b5c8e5e-3f4d-4d8a-9a53-7c1f4f0e2a11")
SECRET = b"whsec_9xKq2mZ4pR7tV1wY3bN6cF8hJ0lS5dG"
TERMINAL, RETRYABLE = ErrorKind.TERMINAL, ErrorKind.RETRYABLE
EDIT = EditInput(
    prompt="replace the background with a sunlit beach",
    image_url="https://shop.example.com/p/123.jpg",
)
IMAGE_URLS = [
    "https://outputs.runflow.io/runs/0196a3c2/0.jpeg?X-Amz-Expires=3600&X-Amz-Signature=ab12",
    "https://outputs.runflow.io/runs/0196a3c2/1.jpeg?X-Amz-Expires=3600&X-Amz-Signature=cd34",
]


def run_object(state: str, **extra: Any) -> dict[str, Any]:
    """A run object as ``GET /v1/runs/{id}`` answers it (state under ``status_code``)."""
    return {
        "id": RUN_ID,
        "target_type": "model",
        "status_code": state,
        "input": {"prompt": EDIT.prompt, "image_url": EDIT.image_url},
        "output": None,
        "cost": None,
        "duration_ms": None,
        "client_ref": str(ATTEMPT),
        "metadata": {"editq_attempt": str(ATTEMPT)},
        "created_at": "2026-05-06T10:00:00.000000+00:00",
        "started_at": None,
        "completed_at": None,
        "failure_code": None,
        "failure_message": None,
        "failure_stage_code": None,
        **extra,
    }


def error(code: str, message: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Runflow's error envelope."""
    return {"code": code, "message": message, "errors": errors}


Answer = tuple[int, Any, dict[str, str]] | httpx.HTTPError


@dataclass
class FakeRunflow:
    """Runflow's API: creates queued runs itself; other answers are set per test."""

    requests: list[httpx.Request] = field(default_factory=list)
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def answer(self, method: str, url: str, status: int, body: Any, **headers: str) -> None:
        self.answers[(method, url)] = (status, body, headers)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.get((request.method, str(request.url)))
        if isinstance(answer, httpx.HTTPError):
            raise answer
        if answer is not None:
            status, body, headers = answer
            return httpx.Response(status, json=body, headers=headers)
        if (request.method, str(request.url)) == ("POST", CREATE_URL):
            return httpx.Response(201, json=run_object("queued"))
        return httpx.Response(404, json=error("RUN_NOT_FOUND", "Run not found"))

    def last_json(self) -> Any:
        return json.loads(self.requests[-1].content)


@pytest.fixture
def runflow() -> FakeRunflow:
    return FakeRunflow()


@pytest.fixture
def provider(runflow: FakeRunflow) -> Iterator[RunflowProvider]:
    with httpx.Client(transport=httpx.MockTransport(runflow.handler)) as http:
        yield RunflowProvider(
            http, base_url=BASE_URL, api_key="rf_live_test", callback_secret=SECRET
        )


REF = AttemptRef(attempt_id=ATTEMPT, request_id=RUN_ID, data={})


def call_error(call: object) -> ProviderCallError:
    assert callable(call)
    with pytest.raises(ProviderCallError) as caught:
        call()
    return caught.value


def polled(provider: RunflowProvider, runflow: FakeRunflow, run: dict[str, Any]) -> Any:
    runflow.answer("GET", RUN_URL, 200, run)
    return provider.status(REF)


def test_it_is_a_provider(provider: RunflowProvider) -> None:
    typed: Provider = provider
    assert (typed.name, typed.uploads_directly) == ("runflow", False)


def test_only_kontext_pro_is_offered(provider: RunflowProvider) -> None:
    everything = EDIT.model_copy(update={"aspect_ratio": "4:3", "safety_tolerance": 6, "seed": 1})
    assert provider.unsupported("flux-kontext-pro", everything) == []
    assert provider.unsupported("flux-kontext-max", EDIT) == [
        Unsupported("model", "Runflow offers Kontext [pro] only")
    ]
    error = call_error(lambda: provider.submit("flux-kontext-max", EDIT, ATTEMPT, None))
    assert (error.fault.kind, error.fault.code) == (TERMINAL, "model_unsupported")


# submit


def test_submit_sends_the_attempt_and_only_the_fields_that_were_set(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    submission = provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)

    assert submission == Submission(request_id=RUN_ID, data={})
    request = runflow.requests[-1]
    assert (request.method, str(request.url)) == ("POST", CREATE_URL)
    assert request.headers["Authorization"] == "Bearer rf_live_test"
    assert runflow.last_json() == {
        "input": {
            "prompt": EDIT.prompt,
            "image_url": EDIT.image_url,
            "num_images": 1,
            "output_format": "jpeg",
        },
        "client_ref": str(ATTEMPT),
        "metadata": {"editq_attempt": str(ATTEMPT)},
    }


def test_submit_translates_every_field_and_asks_for_a_callback(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    changes = {
        "aspect_ratio": "16:9",
        "num_images": 2,
        "guidance_scale": 4.5,
        "seed": 42,
        "output_format": "png",
        "safety_tolerance": 5,
        "enhance_prompt": True,
    }
    hook = provider.webhook_url("https://editq.example.com/", ATTEMPT)

    provider.submit("flux-kontext-pro", EDIT.model_copy(update=changes), ATTEMPT, hook)

    sent = runflow.last_json()
    assert hook == "https://editq.example.com/v1/webhooks/runflow"
    assert sent["callback_url"] == hook
    assert sent["input"]["safety_tolerance"] == "5"  # a string on Runflow
    assert {k: v for k, v in sent["input"].items() if k != "safety_tolerance"} == {
        "prompt": EDIT.prompt,
        "image_url": EDIT.image_url,
        **{k: v for k, v in changes.items() if k != "safety_tolerance"},
    }


def test_submit_without_a_key_sends_no_authorization(runflow: FakeRunflow) -> None:
    with httpx.Client(transport=httpx.MockTransport(runflow.handler)) as http:
        RunflowProvider(http).submit("flux-kontext-pro", EDIT, ATTEMPT, None)
    assert "Authorization" not in runflow.requests[-1].headers


def test_a_created_run_without_an_id_is_not_trusted(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    runflow.answer("POST", CREATE_URL, 201, {"status_code": "queued"})
    error = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None))
    assert (error.fault.kind, error.fault.code) == (RETRYABLE, "provider_response_invalid")


GUIDANCE = [{"field": "input.guidance_scale", "message": "Input should be <= 20"}]
NO_IMAGE = [{"field": "input.image_url", "message": "Field required"}]
REFUSALS = [
    (503, "MODEL_UNAVAILABLE", None, (RETRYABLE, "provider_unavailable"), "MODEL_UNAVAILABLE"),
    (500, "INTERNAL_ERROR", None, (RETRYABLE, "provider_unavailable"), "500"),
    (401, "UNAUTHORIZED", None, (TERMINAL, "provider_auth_failed"), "RUNFLOW_API_KEY"),
    (403, "PERMISSION_DENIED", None, (TERMINAL, "provider_auth_failed"), "PERMISSION_DENIED"),
    (402, "INSUFFICIENT_CREDIT", None, (TERMINAL, "provider_rejected"), "INSUFFICIENT_CREDIT"),
    (422, "VALIDATION_ERROR", GUIDANCE, (TERMINAL, "provider_validation"), "input.guidance_scale"),
    (422, "VALIDATION_ERROR", NO_IMAGE, (TERMINAL, "source_image_unreadable"), "input.image_url"),
    (400, "BAD_REQUEST", None, (TERMINAL, "provider_validation"), "BAD_REQUEST"),
    (409, "CONFLICT", None, (TERMINAL, "provider_rejected"), "CONFLICT"),
    (404, "MODEL_NOT_FOUND", None, (TERMINAL, "provider_rejected"), "MODEL_NOT_FOUND"),
    (408, "TIMEOUT", None, (RETRYABLE, "provider_timeout"), "408"),
]


@pytest.mark.parametrize(("status", "code", "fields", "expected", "in_message"), REFUSALS)
def test_refused_submits_are_classified(
    provider: RunflowProvider,
    runflow: FakeRunflow,
    status: int,
    code: str,
    fields: list[dict[str, str]] | None,
    expected: tuple[ErrorKind, str],
    in_message: str,
) -> None:
    runflow.answer("POST", CREATE_URL, status, error(code, "refused", fields))
    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault
    assert (fault.kind, fault.code) == expected
    assert in_message in fault.message


@pytest.mark.parametrize(("headers", "retry_after"), [({"Retry-After": "7"}, 7.0), ({}, None)])
def test_rate_limits_honour_retry_after_when_runflow_sends_it(
    provider: RunflowProvider,
    runflow: FakeRunflow,
    headers: dict[str, str],
    retry_after: float | None,
) -> None:
    runflow.answer(
        "POST", CREATE_URL, 429, error("RATE_LIMITED", "Rate limit exceeded: 60/min"), **headers
    )
    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault
    assert (fault.kind, fault.code, fault.retry_after) == (
        ErrorKind.RATE_LIMITED,
        "rate_limited",
        retry_after,
    )


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ConnectError("refused"), "provider_unreachable"),
        (httpx.ReadTimeout("slow"), "provider_timeout"),
    ],
)
def test_calls_without_an_answer_are_retryable(
    provider: RunflowProvider, runflow: FakeRunflow, failure: httpx.HTTPError, code: str
) -> None:
    runflow.answers[("POST", CREATE_URL)] = failure
    fault = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)).fault
    assert (fault.kind, fault.code) == (RETRYABLE, code)
    assert "Runflow" in fault.message


# status


@pytest.mark.parametrize("state", ["queued", "dispatching", "running"])
def test_unfinished_runs_are_pending(
    provider: RunflowProvider, runflow: FakeRunflow, state: str
) -> None:
    assert polled(provider, runflow, run_object(state)) == Pending()
    assert runflow.requests[-1].headers["Authorization"] == "Bearer rf_live_test"


def test_a_succeeded_run_yields_its_images_and_cost(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    run = run_object(
        "succeeded",
        input={"prompt": "p", "image_url": EDIT.image_url, "output_format": "png"},
        output={"image_urls": IMAGE_URLS},
        cost="0.08",
    )
    assert polled(provider, runflow, run) == Completed(
        outputs=tuple(RemoteOutput(url, "image/png") for url in IMAGE_URLS),
        cost_usd=Decimal("0.08"),
    )


def test_the_older_status_field_and_a_missing_cost_are_read_too(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    run = run_object("x", input=None, output={"image_urls": IMAGE_URLS[:1]})
    del run["status_code"]
    run["status"] = "succeeded"
    assert polled(provider, runflow, run) == Completed(
        outputs=(RemoteOutput(IMAGE_URLS[0], "image/jpeg"),), cost_usd=None
    )


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (run_object("canceled"), (TERMINAL, "provider_canceled")),
        (run_object("cancelled"), (TERMINAL, "provider_canceled")),
        (run_object("partial_succeeded"), (RETRYABLE, "provider_response_invalid")),
        (run_object("succeeded", output={}), (RETRYABLE, "provider_response_invalid")),
    ],
)
def test_runs_that_ended_without_usable_outputs_fail(
    provider: RunflowProvider, runflow: FakeRunflow, run: Any, expected: tuple[ErrorKind, str]
) -> None:
    outcome = polled(provider, runflow, run)
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == expected


TOO_BIG = "image dimensions exceed 4096x4096"
FAILURES = [
    ("CONTENT_MODERATED", "postprocess", "flagged", (TERMINAL, "content_moderated")),
    ("NSFW_CONTENT_DETECTED", "inference", "nsfw", (TERMINAL, "content_moderated")),
    ("INPUT_DOWNLOAD_FAILED", "preprocess", "HTTP 404", (TERMINAL, "source_image_unreadable")),
    ("IMAGE_DECODE_FAILED", "preprocess", "not an image", (TERMINAL, "source_image_unreadable")),
    ("INPUT_VALIDATION_FAILED", "preprocess", TOO_BIG, (TERMINAL, "provider_validation")),
    (
        "INPUT_VALIDATION_FAILED",
        "preprocess",
        "bad image_url",
        (TERMINAL, "source_image_unreadable"),
    ),
    ("INSUFFICIENT_CREDIT", "dispatch", "balance too low", (TERMINAL, "provider_rejected")),
    ("INFERENCE_TIMEOUT", "inference", "took too long", (RETRYABLE, "provider_timeout")),
    ("MODEL_UNAVAILABLE", "inference", "provider down", (RETRYABLE, "provider_unavailable")),
    (None, "dispatch", "no worker", (RETRYABLE, "provider_unavailable")),
    ("INTERNAL_ERROR", "inference", "boom", (RETRYABLE, "provider_failed")),
    (None, None, None, (RETRYABLE, "provider_failed")),
]


@pytest.mark.parametrize(("code", "stage", "message", "expected"), FAILURES)
def test_failed_runs_are_classified_by_failure_code(
    provider: RunflowProvider,
    runflow: FakeRunflow,
    code: str | None,
    stage: str | None,
    message: str | None,
    expected: tuple[ErrorKind, str],
) -> None:
    run = run_object("failed", failure_code=code, failure_stage_code=stage, failure_message=message)
    outcome = polled(provider, runflow, run)
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == expected


def test_a_run_runflow_does_not_know_is_lost(
    provider: RunflowProvider, runflow: FakeRunflow
) -> None:
    outcome = provider.status(REF)  # the fake answers 404 RUN_NOT_FOUND
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == (RETRYABLE, "provider_request_lost")
    assert "RUN_NOT_FOUND" in outcome.fault.message
    assert str(runflow.requests[-1].url) == RUN_URL
    lost = provider.status(AttemptRef(ATTEMPT, None, {}))
    assert isinstance(lost, Failed)
    assert lost.fault.code == "provider_request_lost"


def test_a_status_call_that_fails_raises(provider: RunflowProvider, runflow: FakeRunflow) -> None:
    runflow.answer("GET", RUN_URL, 503, error("MODEL_UNAVAILABLE", "Provider downtime"))
    assert call_error(lambda: provider.status(REF)).fault.code == "provider_unavailable"
    runflow.answer("GET", RUN_URL, 200, run_object("teleported"))
    assert call_error(lambda: provider.status(REF)).fault.code == "provider_response_invalid"


def test_cancel_calls_nothing(provider: RunflowProvider, runflow: FakeRunflow) -> None:
    provider.cancel(REF)
    assert runflow.requests == []


# callbacks


def envelope(event: str, status: str, output: Any, **changes: Any) -> bytes:
    """A callback body as Runflow posts it."""
    document = {
        "event": event,
        "run_id": RUN_ID,
        "status": status,
        "output": output,
        "duration_ms": 102345,
        "created_at": "2026-05-06T10:00:00.000000+00:00",
        "completed_at": "2026-05-06T10:01:42.000000+00:00",
        "metadata": {"editq_attempt": str(ATTEMPT)},
        **changes,
    }
    return json.dumps(document).encode()


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    """The headers Runflow sends with ``body`` (lower case, as a server hands them over)."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"runflow-signature": digest, "runflow-request-id": "req_1", "content-type": "x"}


def rejection(provider: RunflowProvider, headers: dict[str, str], body: bytes) -> str:
    with pytest.raises(WebhookRejected) as caught:
        provider.parse_webhook(headers, body, {})
    return caught.value.code


COMPLETED = envelope("run.completed", "succeeded", {"image_urls": IMAGE_URLS})


def test_a_signed_completion_completes_the_attempt_named_in_metadata(
    provider: RunflowProvider,
) -> None:
    event = provider.parse_webhook(signed(COMPLETED), COMPLETED, {})
    assert event == WebhookEvent(
        attempt_id=ATTEMPT,
        request_id=RUN_ID,
        outcome=Completed(outputs=tuple(RemoteOutput(url, "image/jpeg") for url in IMAGE_URLS)),
    )


def test_a_signature_in_upper_case_hex_under_any_header_case_verifies(
    provider: RunflowProvider,
) -> None:
    digest = signed(COMPLETED)["runflow-signature"].upper()
    event = provider.parse_webhook({"Runflow-Signature": digest}, COMPLETED, {})
    assert event.attempt_id == ATTEMPT


def test_signatures_are_checked_on_the_raw_body(provider: RunflowProvider) -> None:
    headers = signed(COMPLETED)
    tampered = COMPLETED.replace(b"0.jpeg", b"9.jpeg")
    reserialized = json.dumps(json.loads(COMPLETED), indent=2).encode()
    assert rejection(provider, headers, tampered) == "webhook_signature_invalid"
    assert rejection(provider, headers, reserialized) == "webhook_signature_invalid"
    assert rejection(provider, {}, COMPLETED) == "webhook_signature_invalid"
    assert rejection(provider, signed(COMPLETED, b"whsec_other"), COMPLETED) == (
        "webhook_signature_invalid"
    )


def test_without_a_secret_every_callback_is_refused(runflow: FakeRunflow) -> None:
    with httpx.Client(transport=httpx.MockTransport(runflow.handler)) as http:
        unverifiable = RunflowProvider(http, callback_secret=None)
        assert rejection(unverifiable, signed(COMPLETED), COMPLETED) == (
            "webhook_signature_invalid"
        )


@pytest.mark.parametrize(
    "body",
    [
        envelope("run.completed", "succeeded", {"image_urls": IMAGE_URLS}, metadata=None),
        envelope("run.completed", "succeeded", {}, metadata={"editq_attempt": "not-a-uuid"}),
        envelope("run.completed", "succeeded", {"image_urls": IMAGE_URLS}, run_id=None),
        envelope("run.completed", "succeeded", {"image_urls": []}),
        envelope("run.teleported", "succeeded", None),
        b"[1, 2, 3]",
    ],
    ids=["no metadata", "bad attempt", "no run_id", "no images", "unknown event", "not object"],
)
def test_authentic_but_malformed_callbacks_are_refused(
    provider: RunflowProvider, body: bytes
) -> None:
    assert rejection(provider, signed(body), body) == "webhook_malformed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            envelope("run.failed", "failed", {**error("CONTENT_MODERATED", "x"), "stage": "post"}),
            (TERMINAL, "content_moderated"),
        ),
        (
            envelope("run.failed", "failed", None, failure_code="INPUT_DOWNLOAD_FAILED"),
            (TERMINAL, "source_image_unreadable"),
        ),
        (envelope("run.failed", "failed", None), (RETRYABLE, "provider_failed")),
        (envelope("run.cancelled", "cancelled", None), (TERMINAL, "provider_canceled")),
        (
            envelope("run.partial_succeeded", "partial_succeeded", {"image_urls": IMAGE_URLS}),
            (RETRYABLE, "provider_response_invalid"),
        ),
    ],
    ids=["moderated", "download", "no detail", "cancelled", "partial"],
)
def test_callbacks_for_runs_without_outputs_fail_the_attempt(
    provider: RunflowProvider, body: bytes, expected: tuple[ErrorKind, str]
) -> None:
    event = provider.parse_webhook(signed(body), body, {})
    assert (event.attempt_id, event.request_id) == (ATTEMPT, RUN_ID)
    assert isinstance(event.outcome, Failed)
    assert (event.outcome.fault.kind, event.outcome.fault.code) == expected
