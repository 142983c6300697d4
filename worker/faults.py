"""The core's vocabulary of failure: how it reacts (:class:`ErrorKind`), and every code.

A :class:`Fault` is a failure classified once, where it happened (a provider adapter, the
finalize step, the reconcile tick), with a stable ``code`` from the catalogue below. The
codes are part of editq's interface: they appear as ``error.code`` on jobs and attempts,
ops filter by them (``editq jobs retry --error-code ...``), and each means the same
whichever provider produced it. :data:`CATALOGUE` lists them all with their kind, so a
filter naming a code that does not exist is refused rather than matching nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    """How the core reacts to a failure."""

    #: Network, timeout, 5xx: back to queued with backoff, on the next healthy provider.
    RETRYABLE = "retryable"
    #: 429: back to queued after Retry-After, without using up an attempt.
    RATE_LIMITED = "rate_limited"
    #: Validation, moderation, unreadable source: failed at once, no further spend.
    TERMINAL = "terminal"


@dataclass(frozen=True, slots=True)
class Fault:
    """A classified failure with a stable ``code`` and, in ``message``, what to do about it."""

    kind: ErrorKind
    code: str
    message: str
    retry_after: float | None = None


#: Every job error code -> the kind of failure it is (None: not a failure of the attempt).
CATALOGUE: dict[str, ErrorKind | None] = {}


def _code(name: str, kind: ErrorKind | None) -> str:
    CATALOGUE[name] = kind
    return name


_RETRY, _STOP, _WAIT = ErrorKind.RETRYABLE, ErrorKind.TERMINAL, ErrorKind.RATE_LIMITED

# -- the provider did not answer, or answered that it cannot now -------------------------
#: The provider could not be reached (connection refused, DNS, TLS).
PROVIDER_UNREACHABLE = _code("provider_unreachable", _RETRY)
#: The provider did not answer in time, or answered 408/504.
PROVIDER_TIMEOUT = _code("provider_timeout", _RETRY)
#: The provider answered 5xx, or said it cannot run the model now.
PROVIDER_UNAVAILABLE = _code("provider_unavailable", _RETRY)
#: The provider's run failed for a reason it does not name; worth another attempt.
PROVIDER_FAILED = _code("provider_failed", _RETRY)
#: The provider no longer knows the request, or no longer keeps its result.
PROVIDER_REQUEST_LOST = _code("provider_request_lost", _RETRY)
#: The provider answered 2xx with a body that is not what its protocol promises.
PROVIDER_RESPONSE_INVALID = _code("provider_response_invalid", _RETRY)
#: The provider finished, but could not serialise the output into its callback.
PROVIDER_OUTPUT_UNSERIALIZABLE = _code("provider_output_unserializable", _RETRY)
#: The provider is rate limiting this account (429); the attempt does not count.
RATE_LIMITED = _code("rate_limited", _WAIT)

# -- the provider judged the request --------------------------------------------------
#: A content checker refused the prompt, the source or the output.
CONTENT_MODERATED = _code("content_moderated", _STOP)
#: The provider could not use the source image (unreadable, not an image, too large).
SOURCE_IMAGE_UNREADABLE = _code("source_image_unreadable", _STOP)
#: The source image's host did not answer; worth trying again later.
SOURCE_IMAGE_UNREACHABLE = _code("source_image_unreachable", _RETRY)
#: The provider refused the input (a 400/422 naming a field).
PROVIDER_VALIDATION = _code("provider_validation", _STOP)
#: The provider refused our API key.
PROVIDER_AUTH_FAILED = _code("provider_auth_failed", _STOP)
#: The provider refused the request for another reason (credit, a 4xx it does not explain).
PROVIDER_REJECTED = _code("provider_rejected", _STOP)
#: The provider canceled the attempt itself.
PROVIDER_CANCELED = _code("provider_canceled", _STOP)
#: The canonical model is not offered by the provider.
MODEL_UNSUPPORTED = _code("model_unsupported", _STOP)

# -- editq's own steps ----------------------------------------------------------------
#: The provider finished, but its output could not be downloaded (gone; with the quality gate
#: off, also not an image).
OUTPUT_UNAVAILABLE = _code("output_unavailable", _RETRY)
#: The worker sending an attempt stopped before it recorded the provider's answer.
WORKER_LOST = _code("worker_lost", _RETRY)
#: A later step of a chain could not be sent: the output of the step before, which it edits,
#: is no longer in the bucket (deleted by hand or by a lifecycle rule).
STEP_SOURCE_MISSING = _code("step_source_missing", _STOP)

# -- the quality gate (the kind shown is the default's; a job's quality policy decides) ---
#: The output does not decode (truncated, corrupt, not an image).
QUALITY_UNDECODABLE = _code("quality_undecodable", _RETRY)
#: The output is not the format asked for (a PNG for a JPEG request).
QUALITY_WRONG_FORMAT = _code("quality_wrong_format", _RETRY)
#: The output is near-uniform: what a safety checker puts in place of a flagged image.
QUALITY_BLANK = _code("quality_blank", _STOP)
#: The output is the source handed back untouched.
QUALITY_UNCHANGED = _code("quality_unchanged", _RETRY)
#: The output is not the aspect ratio (or exact size) asked for.
QUALITY_WRONG_SIZE = _code("quality_wrong_size", _RETRY)
#: The codes the quality gate fails a job with (and ``content_moderated``, the providers').
QUALITY_CODES = frozenset(
    {
        QUALITY_UNDECODABLE,
        QUALITY_WRONG_FORMAT,
        QUALITY_BLANK,
        QUALITY_UNCHANGED,
        QUALITY_WRONG_SIZE,
        CONTENT_MODERATED,
    }
)

#: Dispatch stopped the job's batch at its budget; the job was never sent.
BUDGET_EXHAUSTED = _code("budget_exhausted", None)
#: A producer or an operator canceled the job; the message says who, and why.
CANCELED = _code("canceled", None)


def canceled_message(actor: str, reason: str | None) -> str:
    """The error message of a job ``actor`` canceled, with their ``reason`` if they gave one."""
    return f"canceled by {actor}: {reason}" if reason else f"canceled by {actor}"
