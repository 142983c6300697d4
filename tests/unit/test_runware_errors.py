"""Runware's error answers, classified once into kinds and stable codes (no HTTP involved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.unit.runware_fakes import (
    BAD_REFERENCE,
    CONFLICT,
    INVALID_API_KEY,
    INVALID_WIDTH,
    MODERATED,
    TASK_NOT_FOUND,
    error,
    errors,
)
from worker.faults import ErrorKind
from worker.providers.runware.errors import classify_runware_error

NOW = datetime(2025, 10, 9, 12, 0, tzinfo=UTC)
RETRY, RATE, STOP = ErrorKind.RETRYABLE, ErrorKind.RATE_LIMITED, ErrorKind.TERMINAL


def one(code: str, parameter: str | list[str] | None = None) -> dict[str, object]:
    return errors(error(code, f"{code} happened", parameter))


@pytest.mark.parametrize(
    ("status", "answer", "kind", "code"),
    [
        (429, one("rateLimitExceeded"), RATE, "rate_limited"),
        (400, one("concurrentRateLimitReached"), RATE, "rate_limited"),
        (500, one("internalServerError"), RETRY, "provider_unavailable"),
        (503, "<html>Service Unavailable</html>", RETRY, "provider_unavailable"),
        (401, INVALID_API_KEY, STOP, "provider_auth_failed"),
        (403, one("forbidden"), STOP, "provider_auth_failed"),
        (400, one("accountSuspended"), STOP, "provider_auth_failed"),
        (402, one("insufficientCredits"), STOP, "provider_rejected"),
        (400, one("notEnoughBalance"), STOP, "provider_rejected"),
        (402, "", STOP, "provider_rejected"),
        (400, errors(MODERATED), STOP, "content_moderated"),
        (200, one("nsfwContentDetected"), STOP, "content_moderated"),
        (200, one("timeoutProvider"), RETRY, "provider_timeout"),
        (504, "gateway timeout", RETRY, "provider_unavailable"),
        (408, "", RETRY, "provider_timeout"),
        (200, one("inferenceError"), RETRY, "provider_unavailable"),
        (200, one("uploadFailed", "uploadEndpoint"), RETRY, "provider_unavailable"),
        (200, one("providerInternalError"), RETRY, "provider_unavailable"),
        (404, TASK_NOT_FOUND, RETRY, "provider_request_lost"),
        (200, one("taskFailedOrNotFound"), RETRY, "provider_request_lost"),
        (200, errors(BAD_REFERENCE), STOP, "source_image_unreadable"),
        (400, one("invalidValue", "inputs.referenceImages[0]"), STOP, "source_image_unreadable"),
        (200, one("downloadFailed"), STOP, "source_image_unreadable"),
        (400, one("invalidSeedImage", "seedImage"), STOP, "source_image_unreadable"),
        (400, INVALID_WIDTH, STOP, "provider_validation"),
        (400, one("invalidDimensions", ["width", "height"]), STOP, "provider_validation"),
        (400, one("missingParameter", "positivePrompt"), STOP, "provider_validation"),
        (400, CONFLICT, STOP, "provider_validation"),
        (400, "Bad Request", STOP, "provider_validation"),
        (200, one("unsupportedOutputFormat", "outputFormat"), STOP, "provider_validation"),
        (404, "Not Found", STOP, "provider_rejected"),
        (413, one("somethingNew"), STOP, "provider_rejected"),
        (200, one("somethingNew"), RETRY, "provider_unavailable"),
    ],
)
def test_each_row_of_the_table(status: int, answer: object, kind: ErrorKind, code: str) -> None:
    body = answer if isinstance(answer, str) else json.dumps(answer)

    fault = classify_runware_error(status, {}, body.encode())

    assert (fault.kind, fault.code) == (kind, code)
    assert fault.message


def test_validation_messages_name_runwares_parameter_and_message() -> None:
    fault = classify_runware_error(400, {}, INVALID_WIDTH)

    assert fault.message.startswith("Runware rejected the input (400): invalidWidth at width:")
    assert "between 256 and 16383" in fault.message


def test_a_cross_field_error_names_every_parameter() -> None:
    fault = classify_runware_error(400, {}, one("invalidDimensions", ["width", "height"]))

    assert "invalidDimensions at width, height" in fault.message


def test_a_single_error_object_is_read_like_the_envelope() -> None:
    fault = classify_runware_error(200, {}, MODERATED)

    assert fault.code == "content_moderated"
    assert "providerContentPolicyViolation" in fault.message


def test_messages_stay_short_when_runware_echoes_a_data_uri() -> None:
    huge = errors(error("invalidPositivePrompt", "x" * 100_000, "positivePrompt"))

    assert len(classify_runware_error(400, {}, huge).message) < 700


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=30), usegmt=True)}, 30.0),
        ({}, None),
    ],
)
def test_rate_limits_keep_retry_after(header: dict[str, str], expected: float | None) -> None:
    fault = classify_runware_error(429, header, one("rateLimitExceeded"), now=NOW.timestamp())

    assert fault.kind is ErrorKind.RATE_LIMITED
    assert fault.retry_after == expected
