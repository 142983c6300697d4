"""What every provider adapter shares: stable error codes and HTTP helpers.

The codes are part of editq's interface: they appear as ``error.code`` on jobs and
attempts, ops filter by them, and they mean the same whichever provider produced them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from worker.canonical import EditInput
from worker.providers.base import ErrorKind, Fault

PROVIDER_UNREACHABLE = "provider_unreachable"
PROVIDER_TIMEOUT = "provider_timeout"
PROVIDER_UNAVAILABLE = "provider_unavailable"
RATE_LIMITED = "rate_limited"
CONTENT_MODERATED = "content_moderated"
SOURCE_IMAGE_UNREADABLE = "source_image_unreadable"
#: The source image's host did not answer; worth trying again later.
SOURCE_IMAGE_UNREACHABLE = "source_image_unreachable"
PROVIDER_VALIDATION = "provider_validation"
PROVIDER_AUTH_FAILED = "provider_auth_failed"
PROVIDER_REJECTED = "provider_rejected"
#: the provider no longer knows the request, or no longer keeps its result.
PROVIDER_REQUEST_LOST = "provider_request_lost"
#: the provider finished, but could not serialise the output into the webhook.
PROVIDER_OUTPUT_UNSERIALIZABLE = "provider_output_unserializable"
#: the provider answered 2xx with a body that is not what its protocol promises.
PROVIDER_RESPONSE_INVALID = "provider_response_invalid"
#: The canonical model is not offered by the provider.
MODEL_UNSUPPORTED = "model_unsupported"

#: The provider's run failed for a reason it does not name; worth another attempt.
PROVIDER_FAILED = "provider_failed"
#: The provider canceled the attempt itself.
PROVIDER_CANCELED = "provider_canceled"
#: A callback whose signature (or URL token) does not verify.
WEBHOOK_SIGNATURE_INVALID = "webhook_signature_invalid"
#: A verified callback whose body is not the provider's shape.
WEBHOOK_MALFORMED = "webhook_malformed"

_DELAY_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def transport_fault(exc: httpx.HTTPError, provider: str = "fal") -> Fault:
    """The :class:`Fault` for a call that got no HTTP answer from ``provider``."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return Fault(
            ErrorKind.RETRYABLE, PROVIDER_TIMEOUT, f"{provider} did not answer in time ({reason})"
        )
    return Fault(
        ErrorKind.RETRYABLE, PROVIDER_UNREACHABLE, f"could not reach {provider} ({reason})"
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds or an HTTP date.

    :param value: the header's value, or ``None`` when absent.
    :param now: Unix time an HTTP date is measured from (the current time by default).
    :returns: a non-negative number of seconds, or ``None`` when absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


#: The canonical fields fal and Runflow both take, under the same names, for Kontext.
KONTEXT_FIELDS = (
    "prompt",
    "image_url",
    "aspect_ratio",
    "num_images",
    "guidance_scale",
    "seed",
    "output_format",
    "safety_tolerance",
    "enhance_prompt",
)


def kontext_arguments(edit: EditInput) -> dict[str, object]:
    """The Kontext input fal and Runflow take for one canonical edit.

    Fields left unset are omitted so the provider's own defaults apply; ``safety_tolerance``
    is a string (``"1"`` to ``"6"``) on both.
    """
    fields = edit.provider_fields()
    arguments = {name: fields[name] for name in KONTEXT_FIELDS if name in fields}
    if "safety_tolerance" in arguments:
        arguments["safety_tolerance"] = str(arguments["safety_tolerance"])
    return arguments


def decode_body(body: object) -> Any:
    """A response body as JSON when it is JSON, else as stripped text (or as given)."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", errors="replace")
    if not isinstance(body, str):
        return body
    try:
        return json.loads(body)
    except ValueError:
        return body.strip()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header ``name`` (lower case), looked up case-insensitively."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def json_object(content: bytes) -> dict[str, Any] | None:
    """The JSON object in ``content``, or ``None`` when it is not one."""
    try:
        value = json.loads(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
