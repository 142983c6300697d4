"""Reading fal.ai's JSON answers and callbacks into the frozen values the core sees."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from worker import faults
from worker.errors import WEBHOOK_MALFORMED as MALFORMED
from worker.errors import WebhookRejected
from worker.faults import ErrorKind, Fault
from worker.providers.base import Completed, Failed, RemoteOutput
from worker.providers.common import flag_at
from worker.providers.fal.errors import classify_fal_error, has_detail_list

# fal reports a failed request's status as text: "Invalid status code: 422".
_STATUS_IN_ERROR = re.compile(r"status code:?\s*([1-5][0-9]{2})\b", re.IGNORECASE)
_T = TypeVar("_T")


def parse_images(payload: object) -> tuple[RemoteOutput, ...] | None:
    """The outputs of a Kontext result (``{"images": [{url, content_type, width, height}]}``).

    Each carries its ``has_nsfw_concepts`` entry as ``flagged``. Returns ``None`` when the
    payload has no images or an image has no URL.
    """
    if not isinstance(payload, dict):
        return None
    images = payload.get("images")
    if not isinstance(images, list) or not images:
        return None
    flags = payload.get("has_nsfw_concepts")
    outputs = []
    for index, image in enumerate(images):
        url = image.get("url") if isinstance(image, dict) else None
        if not isinstance(url, str) or not url:
            return None
        outputs.append(
            RemoteOutput(
                url=url,
                content_type=_optional(image, "content_type", str),
                width=_optional(image, "width", int),
                height=_optional(image, "height", int),
                flagged=flag_at(flags, index),
            )
        )
    return tuple(outputs)


def webhook_outcome(document: Mapping[str, Any]) -> Completed | Failed:
    """What a verified callback says about its attempt.

    Raises :class:`WebhookRejected` when the callback does not have fal's shape.
    """
    status = document.get("status")
    payload = document.get("payload")
    if status == "ERROR":
        return Failed(fault_from_error_text(document, payload))
    if status != "OK":
        raise WebhookRejected(MALFORMED, f"unknown callback status {status!r}")
    if payload is None:
        reason = document.get("payload_error") or "the callback carries no payload"
        return Failed(
            Fault(ErrorKind.RETRYABLE, faults.PROVIDER_OUTPUT_UNSERIALIZABLE, str(reason))
        )
    outputs = parse_images(payload)
    if outputs is None:
        # Not a verdict on the attempt: leave it running so a poll reads the stored result.
        raise WebhookRejected(MALFORMED, "the callback payload has no images")
    return Completed(outputs=outputs)


def fault_from_error_text(source: Mapping[str, Any], detail: object = None) -> Fault:
    """Classify a failure fal reports as text (``"Invalid status code: 422"``).

    :param source: a status body or webhook with ``error`` (and maybe ``error_type``).
    :param detail: the error body fal attached (a webhook's ``payload``), if any.
    """
    error = str(source.get("error") or "")
    if detail is None:
        detail = {
            "detail": error or source.get("payload_error"),
            "error_type": source.get("error_type"),
        }
    found = _STATUS_IN_ERROR.search(error)
    # Without a status, the body's shape tells: a detail list is fal's validation answer.
    status = int(found.group(1)) if found else 422 if has_detail_list(detail) else 500
    return classify_fal_error(status, {}, detail)


def attempt_id_from_query(query: Mapping[str, str]) -> uuid.UUID | None:
    """Our attempt id from the callback URL's ``attempt`` parameter (``None`` when absent).

    Raises :class:`WebhookRejected` when it is present but not a UUID.
    """
    value = query.get("attempt")
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise WebhookRejected(MALFORMED, f"attempt {value[:64]!r} is not a UUID") from exc


def _optional(mapping: Mapping[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = mapping.get(name)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None
