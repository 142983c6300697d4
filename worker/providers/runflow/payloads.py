"""Reading Runflow's run objects and callbacks into the frozen values the core sees.

Runflow's docs name a run's state ``status_code`` (API reference) and ``status`` (older
pages, and every callback), and its failure stage ``failure_stage`` or
``failure_stage_code``; each pair is read in that order. A callback documents no
``failure_*`` fields: a failed run's ``output`` is an error envelope
(``{"code", "message", ...}``) instead. Top-level ``failure_*`` fields win when present.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from worker import faults
from worker.errors import WEBHOOK_MALFORMED as MALFORMED
from worker.errors import WebhookRejected
from worker.faults import ErrorKind, Fault
from worker.providers.base import Completed, Failed, Outcome, Pending, RemoteOutput
from worker.providers.common import flag_at
from worker.providers.runflow.errors import canceled_fault, classify_run_failure

#: The metadata key our attempt id travels under, signed inside the callback body.
ATTEMPT_KEY = "editq_attempt"

#: States of a run that has not finished yet.
PENDING_STATES = frozenset({"queued", "dispatching", "running"})
# Runflow's run records spell it "canceled"; some of its pages spell it "cancelled".
_CANCELED_STATES = frozenset({"canceled", "cancelled"})
# Callback events name the state the run ended in (UK spelling in event names).
_EVENT_STATES = {
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.partial_succeeded": "partial_succeeded",
}
_CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
}


def run_outcome(run: Mapping[str, Any]) -> Outcome | None:
    """What a run object (``GET /v1/runs/{id}``) says about its attempt; ``None`` if unknown."""
    state = _first_str(run, "status_code", "status")
    if state in PENDING_STATES:
        # Runflow reports no queue position.
        return Pending()
    if state == "succeeded":
        requested = run.get("input")
        wanted = requested.get("output_format") if isinstance(requested, dict) else None
        outputs = parse_outputs(run.get("output"), wanted if isinstance(wanted, str) else None)
        if outputs is None:
            output = run.get("output")
            return Failed(invalid_response(f"the succeeded run has no image_urls: {output!r}"))
        return Completed(outputs=outputs, cost_usd=run_cost(run))
    fault = _ended_badly(state, run)
    return None if fault is None else Failed(fault)


def callback_outcome(document: Mapping[str, Any]) -> Completed | Failed:
    """What a verified callback says about its attempt.

    Raises :class:`WebhookRejected` when the callback does not have Runflow's shape.
    """
    event = document.get("event")
    if event == "run.completed":
        outputs = parse_outputs(document.get("output"), None)
        if outputs is None:
            # Not a verdict on the attempt: leave it running so a poll reads the run itself.
            raise WebhookRejected(MALFORMED, "the run.completed callback has no image_urls")
        return Completed(outputs=outputs)
    fault = _ended_badly(_EVENT_STATES.get(str(event)), document)
    if fault is None:
        raise WebhookRejected(MALFORMED, f"unknown callback event {event!r}")
    return Failed(fault)


def _ended_badly(state: str | None, document: Mapping[str, Any]) -> Fault | None:
    """The fault of a run that ended without outputs in ``state``; ``None`` for other states."""
    if state == "failed":
        return failure_fault(document)
    if state in _CANCELED_STATES:
        return canceled_fault()
    if state == "partial_succeeded":
        # Runflow documents partial_succeeded for batches (and, in one version, multi-output
        # runs) when only some outputs landed. We never submit batches, and a job that asked
        # for n images must not quietly succeed with fewer, so the attempt is retried whole.
        return invalid_response("Runflow reports partial_succeeded for a single run")
    return None


def failure_fault(document: Mapping[str, Any]) -> Fault:
    """Classify a failed run from its ``failure_*`` fields, or a callback's error envelope."""
    envelope = document.get("output")
    error: Mapping[str, Any] = envelope if isinstance(envelope, dict) else {}
    return classify_run_failure(
        _first_str(document, "failure_code") or _first_str(error, "code", "failure_code"),
        _first_str(document, "failure_stage", "failure_stage_code")
        or _first_str(error, "stage", "failure_stage"),
        _first_str(document, "failure_message") or _first_str(error, "message"),
    )


def parse_outputs(output: object, requested_format: str | None) -> tuple[RemoteOutput, ...] | None:
    """The outputs of a finished run (``{"image_urls": [...]}``); ``None`` when there are none.

    :param output: the run's or callback's ``output``.
    :param requested_format: the ``output_format`` the run was asked for, when known; the
        content type comes from it, or else from each URL.
    """
    if not isinstance(output, dict):
        return None
    urls = output.get("image_urls")
    if not isinstance(urls, list) or not urls:
        return None
    if not all(isinstance(url, str) and url for url in urls):
        return None
    known = _CONTENT_TYPES.get((requested_format or "").lower())
    flags = output.get("has_nsfw_concepts")
    return tuple(
        RemoteOutput(url=url, content_type=known or content_type_of(url), flagged=flag_at(flags, i))
        for i, url in enumerate(urls)
    )


def content_type_of(url: str) -> str | None:
    """The image type a URL names: a data URI's media type, or the path's file extension."""
    if url.startswith("data:"):
        media_type = url[5:].partition(",")[0].partition(";")[0]
        return media_type or None
    suffix = urlsplit(url).path.rpartition(".")[2].lower()
    return _CONTENT_TYPES.get(suffix)


def run_cost(run: Mapping[str, Any]) -> Decimal | None:
    """What Runflow charged for the run (``cost``, a decimal string in USD), when it says."""
    value = run.get("cost")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and cost >= 0 else None


def attempt_from_metadata(metadata: object) -> uuid.UUID:
    """Our attempt id from a callback's ``metadata``; :class:`WebhookRejected` if absent or bad."""
    value = metadata.get(ATTEMPT_KEY) if isinstance(metadata, dict) else None
    if not isinstance(value, str):
        raise WebhookRejected(MALFORMED, f"the callback's metadata has no {ATTEMPT_KEY}")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise WebhookRejected(MALFORMED, f"{ATTEMPT_KEY} {value[:64]!r} is not a UUID") from exc


def invalid_response(message: str) -> Fault:
    """Runflow answered 2xx with something its protocol does not promise: retry the attempt."""
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_RESPONSE_INVALID, message)


def _first_str(mapping: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = mapping.get(name)
        if isinstance(value, str) and value:
            return value
    return None
