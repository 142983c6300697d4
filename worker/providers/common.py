"""What every provider adapter shares: stable error codes and HTTP helpers.

The codes are part of editq's interface: they appear as ``error.code`` on jobs and
attempts, ops filter by them, and they mean the same whichever provider produced them.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

import httpx

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
