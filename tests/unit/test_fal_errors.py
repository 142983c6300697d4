"""fal's error answers, classified once into kinds and stable codes (no HTTP involved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.unit.fal_fakes import GUIDANCE_TOO_HIGH, IMAGE_UNREADABLE, MODERATED, RUNNER_DOWN
from worker.faults import ErrorKind
from worker.providers.common import parse_retry_after, transport_fault
from worker.providers.fal.errors import classify_fal_error

NOW = datetime(2025, 10, 9, 12, 0, tzinfo=UTC)
DOWNLOAD_FAILED = {
    "detail": [
        {
            "loc": ["body"],
            "msg": "Failed to download the file. Please check if the URL is accessible.",
            "type": "file_download_error",
        }
    ]
}
BAD_URL = {
    "detail": [
        {"loc": ["body", "image_url"], "msg": "Input should be a valid URL", "type": "url_parsing"}
    ]
}


def body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("status", "answer", "kind", "code"),
    [
        (500, {"detail": "Internal Server Error"}, ErrorKind.RETRYABLE, "provider_unavailable"),
        (503, RUNNER_DOWN, ErrorKind.RETRYABLE, "provider_unavailable"),
        (504, {"detail": "Request timed out", "error_type": "request_timeout"},
         ErrorKind.RETRYABLE, "provider_unavailable"),
        (408, {"detail": "Request Timeout"}, ErrorKind.RETRYABLE, "provider_timeout"),
        (429, {"detail": "Too many requests"}, ErrorKind.RATE_LIMITED, "rate_limited"),
        (422, MODERATED, ErrorKind.TERMINAL, "content_moderated"),
        (422, IMAGE_UNREADABLE, ErrorKind.TERMINAL, "source_image_unreadable"),
        (422, DOWNLOAD_FAILED, ErrorKind.TERMINAL, "source_image_unreadable"),
        (422, BAD_URL, ErrorKind.TERMINAL, "source_image_unreadable"),
        (422, GUIDANCE_TOO_HIGH, ErrorKind.TERMINAL, "provider_validation"),
        (400, {"detail": "Invalid JSON body"}, ErrorKind.TERMINAL, "provider_validation"),
        (401, {"detail": "Invalid Key Authorization header format"},
         ErrorKind.TERMINAL, "provider_auth_failed"),
        (403, {"detail": "Cannot access application 'fal-ai/flux-pro'"},
         ErrorKind.TERMINAL, "provider_auth_failed"),
        (404, {"detail": "Application 'flux-pro/nope' not found"},
         ErrorKind.TERMINAL, "provider_rejected"),
        (413, {"detail": "Request Entity Too Large"}, ErrorKind.TERMINAL, "provider_rejected"),
    ],
)  # fmt: skip
def test_each_answer_is_classified_once(
    status: int, answer: object, kind: ErrorKind, code: str
) -> None:
    fault = classify_fal_error(status, {}, body(answer))
    assert (fault.kind, fault.code) == (kind, code)


def test_moderation_wins_over_an_image_location() -> None:
    # fal's checker may flag the source image itself: that is moderation, not a bad file.
    flagged_image = {"detail": [{**MODERATED["detail"][0], "loc": ["body", "image_url"]}]}
    assert classify_fal_error(422, {}, body(flagged_image)).code == "content_moderated"


def test_a_validation_message_names_fals_location_and_words() -> None:
    fault = classify_fal_error(422, {}, body(GUIDANCE_TOO_HIGH))
    assert "body.guidance_scale: Input should be less than or equal to 20" in fault.message


def test_a_5xx_message_keeps_fals_error_type() -> None:
    assert "runner_scheduling_failure" in classify_fal_error(503, {}, body(RUNNER_DOWN)).message
    from_header = classify_fal_error(
        504, {"X-Fal-Error-Type": "startup_timeout"}, b"<html>504 Gateway Time-out</html>"
    )
    assert "startup_timeout" in from_header.message
    assert "504 Gateway Time-out" in from_header.message


def test_an_echoed_data_uri_does_not_bloat_the_message() -> None:
    huge = {"detail": [{**IMAGE_UNREADABLE["detail"][0], "msg": "x" * 10_000}]}
    assert len(classify_fal_error(422, {}, body(huge)).message) < 1_000


def test_an_already_decoded_payload_is_classified_too() -> None:
    assert classify_fal_error(422, {}, MODERATED).code == "content_moderated"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "17"}, 17.0),
        ({"retry-after": "17"}, 17.0),
        ({"Retry-After": format_datetime(NOW + timedelta(seconds=90), usegmt=True)}, 90.0),
        ({"Retry-After": format_datetime(NOW - timedelta(seconds=90), usegmt=True)}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_rate_limits_carry_retry_after_in_either_form(
    headers: dict[str, str], expected: float | None
) -> None:
    fault = classify_fal_error(429, headers, b'{"detail":"Too many requests"}', now=NOW.timestamp())
    assert fault.kind is ErrorKind.RATE_LIMITED
    assert fault.retry_after == expected


def test_retry_after_reads_an_httpx_answer_headers() -> None:
    answer = httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": "slow down"})
    fault = classify_fal_error(answer.status_code, answer.headers, answer.content)
    assert fault.retry_after == 3.0


def test_parse_retry_after_without_a_value() -> None:
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ConnectError("connection refused"), "provider_unreachable"),
        (httpx.RemoteProtocolError("server disconnected"), "provider_unreachable"),
        (httpx.ReadTimeout("timed out"), "provider_timeout"),
        (httpx.ConnectTimeout("timed out"), "provider_timeout"),
    ],
)
def test_no_answer_at_all_is_retryable(error: httpx.HTTPError, code: str) -> None:
    fault = transport_fault(error)
    assert (fault.kind, fault.code) == (ErrorKind.RETRYABLE, code)
