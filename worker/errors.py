"""Errors a user can meet, each with a stable ``code`` (API body, CLI exit) and an HTTP status."""

from __future__ import annotations

from typing import Any, ClassVar


class EditqError(Exception):
    """Something went wrong."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    #: CLI exit code for this error (2 is reserved for usage errors).
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str | None = None, **details: Any) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip())
        self.message = str(self.args[0])
        self.details = details


class JobNotFound(EditqError):
    """No job has that id."""

    code = "job_not_found"
    status = 404
    exit_code = 3


class IdempotencyConflict(EditqError):
    """This Idempotency-Key was used before with a different request body; use a new key."""

    code = "idempotency_conflict"
    status = 409
    exit_code = 4


class InvalidTransition(EditqError):
    """The job's state does not allow that action."""

    code = "invalid_transition"
    status = 409
    exit_code = 5


class NoProviderCanRun(EditqError):
    """None of the job's providers can honour every field of it; drop a field or add a provider."""

    code = "unsupported_by_providers"
    status = 422
    exit_code = 2


class Unauthorized(EditqError):
    """Missing or unknown API key: send `Authorization: Bearer <key>` (keys: EDITQ_API_KEYS)."""

    code = "unauthorized"
    status = 401


class WebhookInvalid(EditqError):
    """The webhook could not be verified; it was ignored."""

    code = "webhook_signature_invalid"
    status = 401


class UnknownProvider(EditqError):
    """No provider by that name is configured."""

    code = "unknown_provider"
    status = 404


class CallbacksNotConfigured(EditqError):
    """callback_url: this server cannot sign callbacks (no EDITQ_CALLBACK_SECRET); leave it out."""

    code = "callbacks_not_configured"
    status = 422
    exit_code = 2


class CallbackUrlRefused(EditqError):
    """callback_url: it points at a loopback, private or reserved address; callbacks go out only."""

    code = "callback_url_refused"
    status = 422
    exit_code = 2


class CallbackNotFound(EditqError):
    """No callback has that id."""

    code = "callback_not_found"
    status = 404
    exit_code = 3
