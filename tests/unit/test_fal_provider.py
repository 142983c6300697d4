"""The fal adapter against fal's wire format: submit, status, result and cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.unit.fal_fakes import (
    BASE_URL,
    CANCEL_URL,
    GUIDANCE_TOO_HIGH,
    IMAGE_UNREADABLE,
    MODERATED,
    REQUEST_ID,
    REQUEST_URL,
    RESULT,
    RUNNER_DOWN,
    STATUS_URL,
    Clock,
    FakeFalQueue,
    FalSigner,
    queue_status,
)
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
)
from worker.providers.fal.adapter import FalProvider
from worker.values.canonical import EditInput

ATTEMPT = uuid.UUID("0b5c8e5e-3f4d-4d8a-9a53-7c1f4f0e2a11")
EDIT = EditInput(
    prompt="replace the background with a sunlit beach",
    image_url="https://shop.example.com/p/123.jpg",
)


@pytest.fixture
def fal() -> FakeFalQueue:
    return FakeFalQueue()


@pytest.fixture
def provider(fal: FakeFalQueue) -> Iterator[FalProvider]:
    with fal.client() as http:
        yield FalProvider(
            http, jwks=FalSigner().jwks(Clock()), base_url=BASE_URL, key="key-id:key-secret"
        )


def submitted(provider: FalProvider) -> AttemptRef:
    submission = provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)
    return AttemptRef(attempt_id=ATTEMPT, request_id=submission.request_id, data=submission.data)


def call_error(call: object) -> ProviderCallError:
    assert callable(call)
    with pytest.raises(ProviderCallError) as caught:
        call()
    return caught.value


def test_it_is_a_provider(provider: FalProvider) -> None:
    typed: Provider = provider
    assert typed.name == "fal"


# submit


def test_submit_sends_only_the_fields_that_were_set(
    provider: FalProvider, fal: FakeFalQueue
) -> None:
    provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)
    request = fal.requests[-1]
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/fal-ai/flux-pro/kontext")
    assert request.headers["Authorization"] == "Key key-id:key-secret"
    assert fal.last_json() == {
        "prompt": "replace the background with a sunlit beach",
        "image_url": "https://shop.example.com/p/123.jpg",
        "num_images": 1,
        "output_format": "jpeg",
    }


def test_submit_translates_every_canonical_field(provider: FalProvider, fal: FakeFalQueue) -> None:
    edit = EDIT.model_copy(
        update={
            "aspect_ratio": "16:9",
            "num_images": 2,
            "guidance_scale": 4.5,
            "seed": 42,
            "output_format": "png",
            "safety_tolerance": 5,
            "enhance_prompt": True,
        }
    )
    provider.submit("flux-kontext-max", edit, ATTEMPT, None)
    assert fal.requests[-1].url.path == "/fal-ai/flux-pro/kontext/max"
    sent = fal.last_json()
    assert sent["safety_tolerance"] == "5"  # a string on fal
    assert {k: sent[k] for k in ("aspect_ratio", "num_images", "seed", "enhance_prompt")} == {
        "aspect_ratio": "16:9",
        "num_images": 2,
        "seed": 42,
        "enhance_prompt": True,
    }
    assert (sent["guidance_scale"], sent["output_format"]) == (4.5, "png")


def test_submit_asks_for_a_webhook_carrying_the_attempt(
    provider: FalProvider, fal: FakeFalQueue
) -> None:
    hook = provider.webhook_url("https://editq.example.com/", ATTEMPT)
    assert hook == f"https://editq.example.com/v1/webhooks/fal?attempt={ATTEMPT}"
    provider.submit("flux-kontext-pro", EDIT, ATTEMPT, hook)
    assert fal.requests[-1].url.params["fal_webhook"] == hook


def test_submit_without_webhook_or_key_sends_neither(fal: FakeFalQueue) -> None:
    with fal.client() as http:
        FalProvider(http, jwks=FalSigner().jwks(Clock())).submit(
            "flux-kontext-pro", EDIT, ATTEMPT, None
        )
    assert "fal_webhook" not in fal.requests[-1].url.params
    assert "Authorization" not in fal.requests[-1].headers


def test_submit_keeps_the_urls_fal_returns(provider: FalProvider) -> None:
    submission = provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None)
    assert submission == Submission(
        request_id=REQUEST_ID,
        data={"status_url": STATUS_URL, "response_url": REQUEST_URL, "cancel_url": CANCEL_URL},
    )
    assert "/kontext" not in submission.data["status_url"]


def test_submit_refuses_a_model_fal_does_not_have(provider: FalProvider) -> None:
    error = call_error(lambda: provider.submit("flux-dev", EDIT, ATTEMPT, None))
    assert (error.fault.kind, error.fault.code) == (ErrorKind.TERMINAL, "model_unsupported")


def test_submit_errors_are_classified(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("POST", f"{BASE_URL}/fal-ai/flux-pro/kontext", 422, GUIDANCE_TOO_HIGH)
    error = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None))
    assert error.fault.code == "provider_validation"
    assert "body.guidance_scale" in error.fault.message


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (httpx.ConnectError("refused"), "provider_unreachable"),
        (httpx.ReadTimeout("slow"), "provider_timeout"),
    ],
)
def test_submit_without_an_answer_is_retryable(
    provider: FalProvider, fal: FakeFalQueue, failure: httpx.HTTPError, code: str
) -> None:
    fal.fail("POST", f"{BASE_URL}/fal-ai/flux-pro/kontext", failure)
    error = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None))
    assert (error.fault.kind, error.fault.code) == (ErrorKind.RETRYABLE, code)


def test_a_submit_answer_without_urls_is_not_trusted(
    provider: FalProvider, fal: FakeFalQueue
) -> None:
    fal.answer("POST", f"{BASE_URL}/fal-ai/flux-pro/kontext", 200, {"request_id": REQUEST_ID})
    error = call_error(lambda: provider.submit("flux-kontext-pro", EDIT, ATTEMPT, None))
    assert error.fault.code == "provider_response_invalid"


# status


def test_status_follows_the_url_fal_returned(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("GET", STATUS_URL, 202, queue_status("IN_QUEUE", queue_position=3))
    assert provider.status(submitted(provider)) == Pending(position=3)
    assert fal.requests[-1].url.path == f"/fal-ai/flux-pro/requests/{REQUEST_ID}/status"
    assert fal.requests[-1].headers["Authorization"] == "Key key-id:key-secret"


def test_status_follows_urls_on_another_host(provider: FalProvider, fal: FakeFalQueue) -> None:
    backup = f"https://queue.falrun.com/fal-ai/flux-pro/requests/{REQUEST_ID}/status"
    fal.answer("GET", backup, 202, queue_status("IN_PROGRESS"))
    ref = AttemptRef(ATTEMPT, REQUEST_ID, {"status_url": backup})
    assert provider.status(ref) == Pending(position=None)


def test_a_completed_request_yields_its_images(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("GET", STATUS_URL, 200, queue_status("COMPLETED", metrics={"inference_time": 3.5}))
    fal.answer("GET", REQUEST_URL, 200, RESULT)
    outcome = provider.status(submitted(provider))
    assert outcome == Completed(
        outputs=tuple(
            RemoteOutput(image["url"], "image/jpeg", 1024, 768, flagged=False)
            for image in RESULT["images"]
        )
    )


def test_each_image_carries_its_has_nsfw_concepts_flag(
    provider: FalProvider, fal: FakeFalQueue
) -> None:
    fal.answer("GET", STATUS_URL, 200, queue_status("COMPLETED"))
    fal.answer("GET", REQUEST_URL, 200, {**RESULT, "has_nsfw_concepts": [False, True]})
    outcome = provider.status(submitted(provider))
    assert isinstance(outcome, Completed)
    assert [o.flagged for o in outcome.outputs] == [False, True]
    fal.answer(
        "GET", REQUEST_URL, 200, {k: v for k, v in RESULT.items() if k != "has_nsfw_concepts"}
    )
    outcome = provider.status(submitted(provider))
    assert isinstance(outcome, Completed)
    assert [o.flagged for o in outcome.outputs] == [None, None]  # fal said nothing


@pytest.mark.parametrize(
    ("result_status", "result", "code"),
    [
        (422, MODERATED, "content_moderated"),
        (422, IMAGE_UNREADABLE, "source_image_unreadable"),
        (503, RUNNER_DOWN, "provider_unavailable"),
        (404, {"detail": "Not Found"}, "content_moderated"),  # read from the status's error
    ],
)
def test_a_completed_request_with_an_error_fails(
    provider: FalProvider, fal: FakeFalQueue, result_status: int, result: object, code: str
) -> None:
    failed = queue_status(
        "COMPLETED", error="Invalid status code: 422", error_type="content_policy_violation"
    )
    fal.answer("GET", STATUS_URL, 200, failed)
    fal.answer("GET", REQUEST_URL, result_status, result)
    outcome = provider.status(submitted(provider))
    assert isinstance(outcome, Failed)
    assert outcome.fault.code == code


@pytest.mark.parametrize(
    ("result_status", "result", "expected"),
    [
        (422, IMAGE_UNREADABLE, (ErrorKind.TERMINAL, "source_image_unreadable")),
        (404, {"detail": "Not Found"}, (ErrorKind.RETRYABLE, "provider_request_lost")),
        (200, {"images": []}, (ErrorKind.RETRYABLE, "provider_response_invalid")),
    ],
)
def test_a_result_fetch_that_fails_is_classified(
    provider: FalProvider,
    fal: FakeFalQueue,
    result_status: int,
    result: object,
    expected: tuple[ErrorKind, str],
) -> None:
    fal.answer("GET", STATUS_URL, 200, queue_status("COMPLETED"))
    fal.answer("GET", REQUEST_URL, result_status, result)
    outcome = provider.status(submitted(provider))
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == expected


@pytest.mark.parametrize(
    ("result_status", "code"), [(429, "rate_limited"), (502, "provider_unavailable")]
)
def test_a_throttled_or_broken_result_read_is_asked_again(
    provider: FalProvider, fal: FakeFalQueue, result_status: int, code: str
) -> None:
    fal.answer("GET", STATUS_URL, 200, queue_status("COMPLETED"))
    fal.answer("GET", REQUEST_URL, result_status, {"detail": "try later"}, **{"Retry-After": "2"})
    assert call_error(lambda: provider.status(submitted(provider))).fault.code == code


def test_a_request_fal_forgot_is_lost(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("GET", STATUS_URL, 404, {"detail": "Request not found"})
    outcome = provider.status(submitted(provider))
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == (
        ErrorKind.RETRYABLE,
        "provider_request_lost",
    )


def test_an_attempt_without_a_recorded_request_is_lost(provider: FalProvider) -> None:
    outcome = provider.status(AttemptRef(ATTEMPT, None, {}))
    assert isinstance(outcome, Failed)
    assert outcome.fault.code == "provider_request_lost"


def test_a_status_call_that_fails_raises(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("GET", STATUS_URL, 503, RUNNER_DOWN)
    error = call_error(lambda: provider.status(submitted(provider)))
    assert (error.fault.kind, error.fault.code) == (ErrorKind.RETRYABLE, "provider_unavailable")
    assert "runner_scheduling_failure" in error.fault.message


def test_an_unknown_status_is_not_guessed(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("GET", STATUS_URL, 200, queue_status("TELEPORTED"))
    error = call_error(lambda: provider.status(submitted(provider)))
    assert error.fault.code == "provider_response_invalid"


# cancel


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (202, {"status": "CANCELLATION_REQUESTED"}),
        (400, {"status": "ALREADY_COMPLETED"}),
        (404, {"status": "NOT_FOUND"}),
        (404, {"detail": "Not Found"}),
    ],
)
def test_cancel_puts_to_the_returned_url_and_tolerates_moot_answers(
    provider: FalProvider, fal: FakeFalQueue, status: int, answer: object
) -> None:
    fal.answer("PUT", CANCEL_URL, status, answer)
    provider.cancel(submitted(provider))
    assert (fal.requests[-1].method, str(fal.requests[-1].url)) == ("PUT", CANCEL_URL)


def test_cancel_reports_a_call_that_failed(provider: FalProvider, fal: FakeFalQueue) -> None:
    fal.answer("PUT", CANCEL_URL, 503, RUNNER_DOWN)
    assert call_error(lambda: provider.cancel(submitted(provider))).fault.code == (
        "provider_unavailable"
    )


def test_cancel_without_a_request_does_nothing(provider: FalProvider, fal: FakeFalQueue) -> None:
    provider.cancel(AttemptRef(ATTEMPT, None, {}))
    assert fal.requests == []
