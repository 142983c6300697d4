"""How Runware's failures map onto editq's error kinds and stable codes, decided once.

Runware answers every failure as ``{"errors": [{code, message, parameter, taskType,
taskUUID, documentation}]}`` (REST and WebSocket alike), with an HTTP status on REST; a
poll (``getResponse``) reports a generation that failed the same way. Runware's own list
of codes is large and still changing, so codes are matched by the families its official
SDK groups them into (``runware/errors.py``: auth, quota, rate limit, safety, timeout,
provider, not found, validation), and the HTTP status decides when the code says nothing.

The table (first matching row wins):

- no HTTP answer: timeout -> retryable ``provider_timeout``; otherwise retryable
  ``provider_unreachable`` (see :func:`worker.providers.common.transport_fault`)
- 429, or a rate-limit code (``rateLimitExceeded``, ``*RateLimit*``) -> rate_limited
  ``rate_limited``, with ``retry_after`` from ``Retry-After``
- 5xx -> retryable ``provider_unavailable``
- 401/403, or an auth code (``invalidApiKey`` and any ``*ApiKey*``, ``unauthorized``,
  ``forbidden``, ``authenticationFailed``, ``tokenExpired``, ``accountSuspended``, ...)
  -> terminal ``provider_auth_failed``
- 402, or a credits code (``*Credits*``, ``*Balance*``, ``*Quota*``, ``paymentRequired``,
  ``environmentPaused``) -> terminal ``provider_rejected``
- a safety code (``contentPolicyViolation``, ``providerContentPolicyViolation``,
  ``nsfwContentDetected``, ``promptBlocked``, ``imageBlocked``, ...) -> terminal
  ``content_moderated``
- 408/504, or a timeout code (``timeoutProvider``, ``timeout*``, ``*Timeout*``) -> retryable
  ``provider_timeout``
- a provider or server code (``inferenceError``, ``taskFailed``, ``uploadFailed``,
  ``noAvailableServer``, ``modelUnavailable``, ``provider*``, ``internalServerError``, ...)
  -> retryable ``provider_unavailable``; ``uploadFailed`` is here because it means Runware
  could not PUT the output to our presigned URL, which a new attempt (and URL) can fix
- a not-found code (``taskNotFound``, ``taskFailedOrNotFound``, ``*NotFound``,
  ``*Expired``) -> retryable ``provider_request_lost``
- an error whose ``parameter`` is the reference image (``inputs.referenceImages``,
  ``referenceImages``, ``seedImage``, ``inputImage``), or a code about reading or
  downloading it (``downloadFailed``, ``*Download*``, ``invalidReferenceImages``,
  ``invalidSeedImage``, ``invalidImage``) -> terminal ``source_image_unreadable``
- a validation code (``invalid*``, ``missing*``, ``unsupported*``, ``conflict*``,
  ``unknownParameter``, ...), or 400/422 -> terminal ``provider_validation``; the message
  names Runware's ``parameter`` and its message
- any other 4xx -> terminal ``provider_rejected``
- an unrecognised code on a 2xx (a generation a poll reports failed) -> retryable
  ``provider_unavailable``: Runware does not charge for failed generations, and a code it
  does not classify says nothing about the input
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from worker.faults import (
    CONTENT_MODERATED,
    PROVIDER_AUTH_FAILED,
    PROVIDER_REJECTED,
    PROVIDER_REQUEST_LOST,
    PROVIDER_TIMEOUT,
    PROVIDER_UNAVAILABLE,
    PROVIDER_VALIDATION,
    RATE_LIMITED,
    SOURCE_IMAGE_UNREADABLE,
    ErrorKind,
    Fault,
)
from worker.providers.common import decode_body, header, parse_retry_after, shorten

#: Runware's answer when a taskUUID was used before: on submit, the attempt is already there.
CONFLICT_TASK_UUID = "conflictTaskUUID"

_AUTH_CODES = frozenset(
    {
        "unauthorized", "forbidden", "permissionDenied", "insufficientPermissions",
        "authenticationFailed", "authFailed", "authTimeout", "invalidAuthentication",
        "invalidCredentials", "missingAuthentication", "tokenExpired", "tokenInvalid",
        "tokenMissing", "tokenRevoked", "accountSuspended", "accountDisabled",
        "organizationSuspended", "organizationDisabled", "workspaceSuspended",
        "workspaceDisabled",
    }
)  # fmt: skip
_SAFETY_CODES = frozenset(
    {
        "contentPolicyViolation", "providerContentPolicyViolation",
        "sensitiveContentDetected", "unsafeContentDetected", "nsfwContentDetected",
        "promptBlocked", "imageBlocked", "moderationFailed", "invalidProviderContent",
    }
)  # fmt: skip
_PROVIDER_CODES = frozenset(
    {
        "inferenceError", "processingFailed", "taskFailed", "uploadFailed",
        "noAvailableServer", "modelUnavailable", "modelDisabled", "modelNotReady",
        "mediaStorageFileCouldNotBeMoved", "internalServerError", "serviceUnavailable",
        "serverUnavailable", "standardError", "unknownError", "undefinedError",
        "defaultError", "unrecognizedResponse",
    }
)  # fmt: skip
_NOT_FOUND_CODES = frozenset({"taskNotFound", "taskFailedOrNotFound", "taskCancelled"})
_IMAGE_PARAMETERS = ("inputs.referenceImages", "referenceImages", "seedImage", "inputImage")
_IMAGE_CODES = frozenset(
    {"downloadFailed", "invalidReferenceImages", "invalidReferenceImage", "invalidSeedImage",
     "invalidImage", "invalidInputImage"}
)  # fmt: skip
_VALIDATION_PREFIXES = ("invalid", "missing", "unsupported", "conflict", "duplicate", "max")
_VALIDATION_CODES = frozenset(
    {
        "unknownParameter",
        "incompatibleParameters",
        "validationFailed",
        "mismatchProviderSettingsProvider",
        "unknownProviderSettingsProvider",
    }
)


def classify_runware_error(
    status_code: int,
    headers: Mapping[str, str],
    body: object,
    *,
    now: float | None = None,
) -> Fault:
    """The :class:`Fault` for one error answer from Runware.

    :param status_code: the HTTP status Runware answered; 200 for a generation that a poll
        reports failed.
    :param headers: the answer's headers (``Retry-After``), any case.
    :param body: the raw body as bytes or text, or an already decoded JSON value: the
        ``{"errors": [...]}`` envelope, or one error object.
    :param now: Unix time used to turn an HTTP-date ``Retry-After`` into seconds.
    """
    errors = error_objects(decode_body(body))
    code = _first(errors, "code") or ""
    detail = describe_errors(errors) if errors else _text(body)
    if _is_rate_limit(status_code, code):
        retry_after = parse_retry_after(header(headers, "retry-after"), now)
        message = f"Runware is rate limiting this account: {detail}"
        return Fault(ErrorKind.RATE_LIMITED, RATE_LIMITED, message, retry_after=retry_after)
    for matches, kind, stable_code, template in _RULES:
        if matches(status_code, code, errors):
            return Fault(kind, stable_code, template.format(status=status_code, detail=detail))
    if status_code >= 400:
        message = f"Runware rejected the request ({status_code}): {detail}"
        return Fault(ErrorKind.TERMINAL, PROVIDER_REJECTED, message)
    message = f"Runware reported a failure: {detail}"
    return Fault(ErrorKind.RETRYABLE, PROVIDER_UNAVAILABLE, message)


def error_objects(decoded: object) -> list[Mapping[str, Any]]:
    """The error objects in a decoded answer: its ``errors`` list, or the object itself."""
    if isinstance(decoded, dict):
        errors = decoded.get("errors")
        if isinstance(errors, list):
            return [item for item in errors if isinstance(item, dict)]
        return [decoded] if "code" in decoded else []
    if isinstance(decoded, list):
        return [item for item in decoded if isinstance(item, dict)]
    return []


def describe_errors(errors: list[Mapping[str, Any]]) -> str:
    """Runware's errors as one short line: ``code at parameter: message`` for each."""
    text = "; ".join(_describe(error) for error in errors) or "no detail given"
    return shorten(text)


def parameter_of(error: Mapping[str, Any]) -> str | None:
    """An error's ``parameter``; a cross-field rule's list of parameters is joined with commas."""
    value = error.get("parameter")
    if isinstance(value, list) and value and isinstance(value[0], str):
        return ", ".join(str(part) for part in value)
    return value if isinstance(value, str) and value else None


def is_not_found(code: str) -> bool:
    """Whether ``code`` says Runware does not know (or no longer keeps) the task."""
    return code in _NOT_FOUND_CODES or code.endswith(("NotFound", "Expired"))


def _describe(error: Mapping[str, Any]) -> str:
    code = error.get("code") or "unknown"
    parameter = parameter_of(error)
    where = f" at {parameter}" if parameter else ""
    return f"{code}{where}: {error.get('message') or 'no message'}"


# -- the table's rows after the rate limit: (does it match?, kind, code, message) -----------

Matcher = Callable[[int, str, list[Mapping[str, Any]]], bool]


def _is_rate_limit(status: int, code: str) -> bool:
    return status == 429 or code == "rateLimitExceeded" or "RateLimit" in code


def _is_server(status: int, _: str, __: list[Mapping[str, Any]]) -> bool:
    return status >= 500


def _is_auth(status: int, code: str, _: list[Mapping[str, Any]]) -> bool:
    return status in (401, 403) or code in _AUTH_CODES or "ApiKey" in code


def _is_credits(status: int, code: str, _: list[Mapping[str, Any]]) -> bool:
    money = any(word in code for word in ("Credits", "Balance", "Quota"))
    return status == 402 or money or code in {"paymentRequired", "environmentPaused"}


def _is_safety(_: int, code: str, __: list[Mapping[str, Any]]) -> bool:
    return code in _SAFETY_CODES


def _is_timeout(status: int, code: str, _: list[Mapping[str, Any]]) -> bool:
    # "timeoutProvider" is Runware's own example; the SDK's check ("Timeout" in it) misses it.
    return status in (408, 504) or "Timeout" in code or code.startswith("timeout")


def _is_provider(_: int, code: str, __: list[Mapping[str, Any]]) -> bool:
    return code in _PROVIDER_CODES or code.startswith("provider")


def _is_lost(_: int, code: str, __: list[Mapping[str, Any]]) -> bool:
    return is_not_found(code)


def _is_image(_: int, code: str, errors: list[Mapping[str, Any]]) -> bool:
    if code in _IMAGE_CODES or "Download" in code:
        return True
    parameters = (parameter_of(error) or "" for error in errors)
    return any(parameter.startswith(_IMAGE_PARAMETERS) for parameter in parameters)


def _is_validation(status: int, code: str, _: list[Mapping[str, Any]]) -> bool:
    prefixed = code.startswith(_VALIDATION_PREFIXES)
    return status in (400, 422) or prefixed or code in _VALIDATION_CODES


_RETRY, _STOP = ErrorKind.RETRYABLE, ErrorKind.TERMINAL
_RULES: tuple[tuple[Matcher, ErrorKind, str, str], ...] = (
    (_is_server, _RETRY, PROVIDER_UNAVAILABLE, "Runware answered {status}: {detail}"),
    (
        _is_auth,
        _STOP,
        PROVIDER_AUTH_FAILED,
        "Runware refused our key ({status}): {detail}; check RUNWARE_API_KEY",
    ),
    (
        _is_credits,
        _STOP,
        PROVIDER_REJECTED,
        "Runware refused to run it for lack of credit ({status}): {detail}; top up the account",
    ),
    (
        _is_safety,
        _STOP,
        CONTENT_MODERATED,
        "Runware's content checker refused the request: {detail}; change the prompt or image,"
        " or raise safety_tolerance",
    ),
    (_is_timeout, _RETRY, PROVIDER_TIMEOUT, "Runware timed out ({status}): {detail}"),
    (_is_provider, _RETRY, PROVIDER_UNAVAILABLE, "Runware failed to run it: {detail}"),
    (
        _is_lost,
        _RETRY,
        PROVIDER_REQUEST_LOST,
        "Runware does not know the task (any more): {detail}",
    ),
    (
        _is_image,
        _STOP,
        SOURCE_IMAGE_UNREADABLE,
        "Runware could not use the source image: {detail}; check that image_url is a reachable,"
        " valid image",
    ),
    (_is_validation, _STOP, PROVIDER_VALIDATION, "Runware rejected the input ({status}): {detail}"),
)


def _first(errors: list[Mapping[str, Any]], name: str) -> str | None:
    for error in errors:
        value = error.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _text(body: object) -> str:
    decoded = decode_body(body)
    text = decoded if isinstance(decoded, str) else json.dumps(decoded)
    text = text or "no detail given"
    return shorten(text)
