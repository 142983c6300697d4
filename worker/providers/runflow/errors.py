"""How Runflow's failures map onto editq's error kinds and stable codes, decided once.

Runflow answers every refused call with ``{"code", "message", "errors"}``; on a 422,
``errors`` lists the fields at fault (``[{"field", "message"}]``). A run it accepted and
later failed carries ``failure_code``, ``failure_stage`` and ``failure_message`` instead.

Refused calls (first matching row wins):

- no HTTP answer: timeout -> retryable ``provider_timeout``; otherwise retryable
  ``provider_unreachable`` (:func:`worker.providers.common.transport_fault`)
- 429 ``RATE_LIMITED`` -> rate_limited ``rate_limited``, ``retry_after`` from
  ``Retry-After`` when present: one version of Runflow's docs sends it, a newer one says a
  429 carries no rate-limit headers, so without it the core's own backoff applies
- 5xx, including 503 ``MODEL_UNAVAILABLE`` -> retryable ``provider_unavailable``
- 408 -> retryable ``provider_timeout``
- 401/403 (``UNAUTHORIZED``, ``PERMISSION_DENIED``, ...) -> terminal ``provider_auth_failed``
- 402 ``INSUFFICIENT_CREDIT`` -> terminal ``provider_rejected``
- 400/422 with an ``errors`` item at ``image_url`` -> terminal ``source_image_unreadable``
- other 400/422 -> terminal ``provider_validation`` (the message names the fields)
- 409 and any other 4xx -> terminal ``provider_rejected``

Failed runs, by ``failure_code``. Runflow documents only ``INPUT_VALIDATION_FAILED`` (stage
``preprocess``), so codes are matched by the words in them; first matching row wins:

- ``MODERAT``, ``NSFW``, ``CONTENT_POLICY``, ``SAFETY`` -> terminal ``content_moderated``
- ``DOWNLOAD``, ``FETCH``, ``IMAGE_DECODE``, ``IMAGE_LOAD``, ``UNREADABLE``, ``INVALID_IMAGE``
  -> terminal ``source_image_unreadable``
- ``VALIDATION``, ``INVALID`` -> terminal ``source_image_unreadable`` when the message names
  ``image_url``, else terminal ``provider_validation``
- ``CREDIT`` -> terminal ``provider_rejected``
- ``TIMEOUT``, ``TIMED_OUT`` -> retryable ``provider_timeout``
- ``UNAVAILABLE``, or failure stage ``dispatch`` -> retryable ``provider_unavailable``
- anything else, or no code -> retryable ``provider_failed`` (Runflow's side broke; another
  attempt, perhaps on another provider, may well succeed)

A run canceled at Runflow (only its admins can) is terminal ``provider_canceled``.
"""

from __future__ import annotations

from collections.abc import Mapping

from worker.faults import (
    CONTENT_MODERATED,
    PROVIDER_AUTH_FAILED,
    PROVIDER_CANCELED,
    PROVIDER_FAILED,
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

_IMAGE_FIELD = "image_url"

#: Refused calls answered by status alone -> (kind, stable code, message template).
_BY_STATUS: dict[int, tuple[ErrorKind, str, str]] = {
    408: (ErrorKind.RETRYABLE, PROVIDER_TIMEOUT, "Runflow answered 408: {detail}"),
    401: (
        ErrorKind.TERMINAL,
        PROVIDER_AUTH_FAILED,
        "Runflow refused our key ({status}): {detail}; check RUNFLOW_API_KEY",
    ),
    402: (
        ErrorKind.TERMINAL,
        PROVIDER_REJECTED,
        "Runflow wants payment (402): {detail}; top up the Runflow balance",
    ),
    403: (
        ErrorKind.TERMINAL,
        PROVIDER_AUTH_FAILED,
        "Runflow refused our key ({status}): {detail}; check RUNFLOW_API_KEY",
    ),
}

#: Words in a ``failure_code`` -> (kind, stable code, advice); the first row that matches wins.
_FAILURE_RULES: tuple[tuple[tuple[str, ...], ErrorKind, str, str], ...] = (
    (
        ("MODERAT", "NSFW", "CONTENT_POLICY", "SAFETY"),
        ErrorKind.TERMINAL,
        CONTENT_MODERATED,
        "change the prompt or image, or raise safety_tolerance",
    ),
    (
        ("DOWNLOAD", "FETCH", "IMAGE_DECODE", "IMAGE_LOAD", "UNREADABLE", "INVALID_IMAGE"),
        ErrorKind.TERMINAL,
        SOURCE_IMAGE_UNREADABLE,
        "check that image_url is a reachable, valid image",
    ),
    (("VALIDATION", "INVALID"), ErrorKind.TERMINAL, PROVIDER_VALIDATION, "fix the input"),
    (("CREDIT",), ErrorKind.TERMINAL, PROVIDER_REJECTED, "top up the Runflow balance"),
    (("TIMEOUT", "TIMED_OUT"), ErrorKind.RETRYABLE, PROVIDER_TIMEOUT, "it will be retried"),
    (("UNAVAILABLE",), ErrorKind.RETRYABLE, PROVIDER_UNAVAILABLE, "it will be retried"),
)


def classify_runflow_error(
    status_code: int,
    headers: Mapping[str, str],
    body: object,
    *,
    now: float | None = None,
) -> Fault:
    """The :class:`Fault` for one error answer from Runflow.

    :param status_code: the HTTP status Runflow answered (a 4xx or 5xx).
    :param headers: the answer's headers (``Retry-After``), in any letter case.
    :param body: the raw body as bytes or text, or an already decoded JSON value.
    :param now: Unix time used to turn an HTTP-date ``Retry-After`` into seconds.
    """
    decoded = decode_body(body)
    detail = describe_error(decoded)
    if status_code == 429:
        return Fault(
            ErrorKind.RATE_LIMITED,
            RATE_LIMITED,
            f"Runflow is rate limiting this account: {detail}",
            retry_after=parse_retry_after(header(headers, "retry-after"), now),
        )
    if status_code >= 500:
        return Fault(
            ErrorKind.RETRYABLE, PROVIDER_UNAVAILABLE, f"Runflow answered {status_code}: {detail}"
        )
    if status_code in (400, 422):
        return _input_fault(status_code, decoded, detail)
    kind, code, template = _BY_STATUS.get(
        status_code,
        (
            ErrorKind.TERMINAL,
            PROVIDER_REJECTED,
            "Runflow rejected the request ({status}): {detail}",
        ),
    )
    return Fault(kind, code, template.format(status=status_code, detail=detail))


def classify_run_failure(code: str | None, stage: str | None, message: str | None) -> Fault:
    """The :class:`Fault` for a run Runflow accepted and then failed (see the module table).

    :param code: the run's ``failure_code`` (``INPUT_VALIDATION_FAILED``), if any.
    :param stage: the run's ``failure_stage`` (``preprocess``, ``dispatch``), if any.
    :param message: the run's ``failure_message``, for people.
    """
    words = (code or "").upper()
    said = shorten(f"{code or 'no failure_code'} at {stage or 'an unknown stage'}: {message}")
    rule = next((rule for rule in _FAILURE_RULES if any(key in words for key in rule[0])), None)
    if rule is not None:
        _, kind, stable, advice = rule
        if stable == PROVIDER_VALIDATION and _IMAGE_FIELD in (message or ""):
            # A validation failure about the source image is the source's fault, as on a 422.
            stable, advice = SOURCE_IMAGE_UNREADABLE, "check that image_url is a valid image"
        return Fault(kind, stable, f"the Runflow run failed ({said}); {advice}")
    if (stage or "").lower() == "dispatch":
        return Fault(
            ErrorKind.RETRYABLE,
            PROVIDER_UNAVAILABLE,
            f"Runflow could not dispatch the run ({said}); it will be retried",
        )
    return Fault(ErrorKind.RETRYABLE, PROVIDER_FAILED, f"the Runflow run failed ({said})")


def canceled_fault() -> Fault:
    """The :class:`Fault` for a run Runflow canceled (there is no public cancel: its admins did)."""
    return Fault(
        ErrorKind.TERMINAL,
        PROVIDER_CANCELED,
        "Runflow canceled the run; resubmit the job if it is still wanted",
    )


def describe_error(decoded: object) -> str:
    """Runflow's error envelope as one short line: ``CODE: message (field: message; ...)``."""
    if isinstance(decoded, dict):
        text = f"{decoded.get('code') or 'no code'}: {decoded.get('message') or 'no message'}"
        fields = "; ".join(f"{name}: {msg}" for name, msg in field_errors(decoded))
        if fields:
            text = f"{text} ({fields})"
    else:
        text = str(decoded) if decoded not in (None, "") else "no detail given"
    return shorten(text)


def field_errors(decoded: object) -> list[tuple[str, str]]:
    """The ``(field, message)`` pairs of an envelope's ``errors`` list; others are skipped."""
    items = decoded.get("errors") if isinstance(decoded, dict) else None
    if not isinstance(items, list):
        return []
    return [
        (str(item.get("field") or "?"), str(item.get("message") or ""))
        for item in items
        if isinstance(item, dict)
    ]


def _input_fault(status_code: int, decoded: object, detail: str) -> Fault:
    fields = [name for name, _ in field_errors(decoded)]
    if any(name.rsplit(".", 1)[-1] == _IMAGE_FIELD for name in fields):
        return Fault(
            ErrorKind.TERMINAL,
            SOURCE_IMAGE_UNREADABLE,
            f"Runflow could not use the source image: {detail}; check that image_url is a"
            " reachable, valid image",
        )
    return Fault(
        ErrorKind.TERMINAL,
        PROVIDER_VALIDATION,
        f"Runflow rejected the input ({status_code}): {detail}",
    )
