"""fal callbacks through the adapter: verified on the raw body, then read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx
import pytest

from tests.unit.fal_fakes import (
    GUIDANCE_TOO_HIGH,
    IMAGE_UNREADABLE,
    MODERATED,
    REQUEST_ID,
    RESULT,
    Clock,
    FakeFalQueue,
    FalSigner,
)
from worker.errors import WebhookRejected
from worker.faults import ErrorKind
from worker.providers.base import Completed, Failed, WebhookEvent
from worker.providers.fal.adapter import FalProvider

ATTEMPT = uuid.UUID("0b5c8e5e-3f4d-4d8a-9a53-7c1f4f0e2a11")
QUERY = {"attempt": str(ATTEMPT)}
TERMINAL, RETRYABLE = ErrorKind.TERMINAL, ErrorKind.RETRYABLE
TIMED_OUT = {"detail": "Request timed out", "error_type": "request_timeout"}
UNSERIALIZABLE = (
    "Response payload is not JSON serializable. Either return a JSON serializable object"
    " or use the queue endpoint to retrieve the response."
)


@dataclass
class Hook:
    """The adapter, fal's signer and a clock: what a delivered callback needs."""

    provider: FalProvider
    signer: FalSigner
    clock: Clock

    def deliver(self, body: bytes, query: Mapping[str, str] = QUERY) -> WebhookEvent:
        """Post ``body`` signed by fal, now."""
        headers = self.signer.headers(body, int(self.clock()))
        return self.provider.parse_webhook(headers, body, query)


@pytest.fixture
def hook() -> Iterator[Hook]:
    signer, clock = FalSigner(), Clock()
    with FakeFalQueue().client() as http:
        yield Hook(FalProvider(http, jwks=signer.jwks(clock), clock=clock), signer, clock)


def callback(status: str, payload: object, **extra: object) -> bytes:
    """A callback body as fal posts it."""
    document = {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": status,
        "payload": payload,
        **extra,
    }
    return json.dumps(document).encode()


def rejection(call: object) -> str:
    assert callable(call)
    with pytest.raises(WebhookRejected) as caught:
        call()
    return caught.value.code


def test_a_success_callback_completes_the_attempt(hook: Hook) -> None:
    event = hook.deliver(callback("OK", RESULT))
    assert (event.attempt_id, event.request_id) == (ATTEMPT, REQUEST_ID)
    assert isinstance(event.outcome, Completed)
    assert [o.url for o in event.outcome.outputs] == [i["url"] for i in RESULT["images"]]
    assert event.outcome.outputs[0].width == 1024


@pytest.mark.parametrize(
    ("error", "payload", "expected"),
    [
        ("Invalid status code: 422", MODERATED, (TERMINAL, "content_moderated")),
        ("Invalid status code: 422", IMAGE_UNREADABLE, (TERMINAL, "source_image_unreadable")),
        ("Invalid status code: 422", GUIDANCE_TOO_HIGH, (TERMINAL, "provider_validation")),
        ("Invalid status code: 504", TIMED_OUT, (RETRYABLE, "provider_unavailable")),
        ("Invalid status code: 503", None, (RETRYABLE, "provider_unavailable")),
        # No status in the text: fal's validation shape (a detail list) tells it was a 422.
        ("Model failed", MODERATED, (TERMINAL, "content_moderated")),
    ],
)
def test_an_error_callback_fails_the_attempt_as_classified(
    hook: Hook, error: str, payload: object, expected: tuple[ErrorKind, str]
) -> None:
    event = hook.deliver(callback("ERROR", payload, error=error))
    assert isinstance(event.outcome, Failed)
    assert (event.outcome.fault.kind, event.outcome.fault.code) == expected


def test_an_unserialisable_output_is_retryable(hook: Hook) -> None:
    body = callback("OK", None, payload_error=UNSERIALIZABLE)
    outcome = hook.deliver(body).outcome
    assert isinstance(outcome, Failed)
    assert (outcome.fault.kind, outcome.fault.code) == (
        ErrorKind.RETRYABLE,
        "provider_output_unserializable",
    )
    assert outcome.fault.message == UNSERIALIZABLE


def test_the_signature_is_checked_before_the_body_is_read(hook: Hook) -> None:
    headers = hook.signer.headers(callback("OK", RESULT), int(hook.clock()))
    garbage = b"{not json"
    code = rejection(lambda: hook.provider.parse_webhook(headers, garbage, QUERY))
    assert code == "webhook_signature_invalid"


def test_a_callback_signed_long_ago_is_rejected(hook: Hook) -> None:
    body = callback("OK", RESULT)
    headers = hook.signer.headers(body, int(hook.clock()) - 301)
    assert rejection(lambda: hook.provider.parse_webhook(headers, body, QUERY)) == (
        "webhook_signature_invalid"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        json.dumps({"status": "OK", "payload": RESULT}).encode(),
        callback("MAYBE", RESULT),
        callback("OK", {"images": []}),
    ],
)
def test_an_authentic_but_malformed_callback_is_rejected(hook: Hook, body: bytes) -> None:
    assert rejection(lambda: hook.deliver(body)) == "webhook_malformed"


def test_a_bad_attempt_id_is_rejected(hook: Hook) -> None:
    body = callback("OK", RESULT)
    code = rejection(lambda: hook.deliver(body, {"attempt": "42"}))
    assert code == "webhook_malformed"


def test_a_callback_without_an_attempt_is_matched_by_request_id(hook: Hook) -> None:
    event = hook.deliver(callback("OK", RESULT), {})
    assert (event.attempt_id, event.request_id) == (None, REQUEST_ID)


def test_the_webhook_url_round_trips_the_attempt(hook: Hook) -> None:
    url = httpx.URL(hook.provider.webhook_url("https://editq.example.com", ATTEMPT))
    assert url.path == "/v1/webhooks/fal"
    event = hook.deliver(callback("OK", RESULT), dict(url.params))
    assert event.attempt_id == ATTEMPT
