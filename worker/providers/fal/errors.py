"""How fal.ai's failures map onto editq's error kinds and stable codes, decided once.

fal answers errors in two documented shapes: model and validation
errors as ``{"detail": [{"loc", "msg", "type", ...}]}`` (usually 422), and request errors
as ``{"detail": "...", "error_type": "..."}`` (5xx such as ``runner_scheduling_failure``).

The table (first matching row wins):

- no HTTP answer: timeout -> retryable ``provider_timeout``; otherwise retryable
  ``provider_unreachable``
- 5xx -> retryable ``provider_unavailable`` (fal's ``error_type`` kept in the message)
- 408 -> retryable ``provider_timeout``
- 429 -> rate_limited ``rate_limited``, with ``retry_after`` from ``Retry-After``
- 400/422 with a detail of type ``content_policy_violation`` -> terminal ``content_moderated``
- 400/422 with a detail at ``image_url`` or of type ``image_load_error`` or
  ``file_download_error`` -> terminal ``source_image_unreadable``
- other 400/422 -> terminal ``provider_validation`` (the message names fal's loc and msg)
- 401/403 -> terminal ``provider_auth_failed``
- other 4xx -> terminal ``provider_rejected``
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.faults import (
    CONTENT_MODERATED,
    PROVIDER_AUTH_FAILED,
    PROVIDER_REJECTED,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    PROVIDER_VALIDATION,
    RATE_LIMITED,
    SOURCE_IMAGE_UNREADABLE,
    ErrorKind,
    Fault,
)
from worker.providers.common import decode_body, header, parse_retry_after, shorten

_IMAGE_ERROR_TYPES = frozenset({"image_load_error", "file_download_error"})
_MODERATION_TYPE = "content_policy_violation"


def classify_fal_error(
    status_code: int,
    headers: Mapping[str, str],
    body: object,
    *,
    now: float | None = None,
) -> Fault:
    """The :class:`Fault` for one error answer from fal.

    :param status_code: the HTTP status fal answered (a 4xx or 5xx).
    :param headers: the answer's headers (``Retry-After``, ``X-Fal-Error-Type``), any case.
    :param body: the raw body as bytes or text, or an already decoded JSON value (the
        ``payload`` of an error webhook).
    :param now: Unix time used to turn an HTTP-date ``Retry-After`` into seconds.
    """
    decoded = decode_body(body)
    detail = describe_detail(decoded)
    error_type = _error_type(decoded) or header(headers, "x-fal-error-type")
    if error_type:
        # fal's own name for the failure is what its docs and support speak of: keep it.
        detail = f"[{error_type}] {detail}"
    if status_code == 429:
        retry_after = parse_retry_after(header(headers, "retry-after"), now)
        return Fault(
            ErrorKind.RATE_LIMITED,
            RATE_LIMITED,
            f"fal is rate limiting this account: {detail}",
            retry_after=retry_after,
        )
    if status_code >= 500:
        return Fault(
            ErrorKind.RETRYABLE, PROVIDER_UNAVAILABLE, f"fal answered {status_code}: {detail}"
        )
    if status_code == 408:
        # The SDK retries 408 too: the request timed out on the way, it was not judged.
        return Fault(ErrorKind.RETRYABLE, PROVIDER_TIMEOUT, f"fal answered 408: {detail}")
    if status_code in (401, 403):
        return Fault(
            ErrorKind.TERMINAL,
            PROVIDER_AUTH_FAILED,
            f"fal refused our key ({status_code}): {detail}; check FAL_KEY",
        )
    if status_code in (400, 422):
        return _classify_input_error(status_code, decoded, detail)
    return Fault(
        ErrorKind.TERMINAL, PROVIDER_REJECTED, f"fal rejected the request ({status_code}): {detail}"
    )


def _classify_input_error(status_code: int, decoded: object, detail: str) -> Fault:
    items = _detail_items(decoded)
    if _error_type(decoded) == _MODERATION_TYPE or any(
        item.get("type") == _MODERATION_TYPE for item in items
    ):
        return Fault(
            ErrorKind.TERMINAL,
            CONTENT_MODERATED,
            f"fal's content checker refused the request: {detail}; change the prompt or"
            " image, or raise safety_tolerance",
        )
    if any(_points_at_image(item) for item in items):
        return Fault(
            ErrorKind.TERMINAL,
            SOURCE_IMAGE_UNREADABLE,
            f"fal could not use the source image: {detail}; check that image_url is a"
            " reachable, valid image",
        )
    return Fault(
        ErrorKind.TERMINAL,
        PROVIDER_VALIDATION,
        f"fal rejected the input ({status_code}): {detail}",
    )


def _points_at_image(item: Mapping[str, Any]) -> bool:
    loc = item.get("loc")
    at_image = isinstance(loc, list) and "image_url" in loc
    return at_image or item.get("type") in _IMAGE_ERROR_TYPES


def describe_detail(decoded: object) -> str:
    """fal's error detail as one short line: ``loc: msg`` for each item, or its text."""
    if isinstance(decoded, dict):
        detail = decoded.get("detail")
        if isinstance(detail, list):
            text = "; ".join(_describe_item(item) for item in detail if isinstance(item, dict))
        elif detail is not None:
            text = str(detail)
        else:
            text = json.dumps(decoded)
    else:
        text = str(decoded) if decoded not in (None, "") else "no detail given"
    return shorten(text)


def _describe_item(item: Mapping[str, Any]) -> str:
    loc = item.get("loc")
    where = ".".join(str(part) for part in loc) if isinstance(loc, list) else "input"
    kind = item.get("type")
    said = f"{where}: {item.get('msg', kind or 'invalid')}"
    return f"{said} ({kind})" if isinstance(kind, str) and kind and "msg" in item else said


def _detail_items(decoded: object) -> list[Mapping[str, Any]]:
    detail = decoded.get("detail") if isinstance(decoded, dict) else None
    if not isinstance(detail, list):
        return []
    return [item for item in detail if isinstance(item, dict)]


def has_detail_list(decoded: object) -> bool:
    """Whether a decoded body has fal's validation shape (``detail`` is a list)."""
    return bool(_detail_items(decoded))


def _error_type(decoded: object) -> str | None:
    value = decoded.get("error_type") if isinstance(decoded, dict) else None
    return value if isinstance(value, str) else None
