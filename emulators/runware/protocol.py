"""Runware's wire format for FLUX.1 Kontext [pro]: the task it validates, the errors it answers.

Every failure is an object of ``{"errors": [...]}`` with ``code``, ``message``,
``parameter``, ``taskType``, ``taskUUID`` and a ``documentation`` link. Codes follow
Runware's own naming (``invalidWidth``, ``missingParameter``, ``conflictTaskUUID``, ...).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

#: The only model the emulator serves: FLUX.1 Kontext [pro].
MODEL_ID = "bfl:3@1"
#: Where Runware documents the model; error links point at its parameters.
DOCS_URL = "https://runware.ai/docs/models/bfl-flux-1-kontext-pro"
#: Where errors of the platform's own tasks point instead.
_PLATFORM_DOCS = {
    "authentication": "https://runware.ai/docs/platform/authentication",
    "getResponse": "https://runware.ai/docs/platform/task-polling",
}
#: The (width, height) pairs Kontext [pro] generates, one per aspect ratio it knows.
SIZES = frozenset(
    {(1568, 672), (1392, 752), (1184, 880), (1248, 832), (1024, 1024),
     (832, 1248), (880, 1184), (752, 1392), (672, 1568)}
)  # fmt: skip
OUTPUT_TYPES = ("URL", "base64Data", "dataURI")
#: Runware's ``outputFormat`` -> the format the emulator encodes it as.
OUTPUT_FORMATS = {"JPG": "jpeg", "JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
#: Runware's documented limits for ``numberResults`` and ``ttl`` (seconds).
MAX_RESULTS = 4
MIN_TTL = 60
_MAX_SEED = 2**63 - 1


class TaskError(Exception):
    """Runware refused or failed a task; ``wire()`` is its entry in ``errors``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        parameter: str | list[str] | None = None,
        task_type: str = "imageInference",
        task_uuid: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.parameter = parameter
        self.task_type = task_type
        self.task_uuid = task_uuid
        #: The HTTP status the answer carries when this is its first error.
        self.status = status

    def wire(self) -> dict[str, Any]:
        """The error object as Runware sends it."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "taskType": self.task_type,
        }
        if self.parameter is not None:
            body["parameter"] = self.parameter
            first = self.parameter if isinstance(self.parameter, str) else self.parameter[0]
            page = _PLATFORM_DOCS.get(self.task_type, DOCS_URL)
            body["documentation"] = f"{page}#request-{first.replace('.', '-').lower()}"
        if self.task_uuid is not None:
            body["taskUUID"] = self.task_uuid
        return body


@dataclass(frozen=True, slots=True)
class InferenceTask:
    """A validated ``imageInference`` task for ``bfl:3@1``."""

    task_uuid: str
    prompt: str
    reference_image: str
    width: int
    height: int
    number_results: int = 1
    seed: int | None = None
    output_type: str = "URL"
    #: A key of :data:`OUTPUT_FORMATS`' values: ``jpeg``, ``png`` or ``webp``.
    output_format: str = "jpeg"
    #: ``sync`` (Runware's default) answers when done; ``async`` acknowledges at once.
    delivery: str = "sync"
    webhook_url: str | None = None
    upload_endpoint: str | None = None
    include_cost: bool = False
    ttl: int | None = None
    safety_tolerance: int | None = None
    prompt_upsampling: bool | None = None


def task_uuid_of(task: Mapping[str, Any], task_type: str) -> str:
    """A task's ``taskUUID``, which must be a UUID. Raises :class:`TaskError`."""
    value = task.get("taskUUID")
    if value is None:
        raise TaskError(
            "missingParameter", _missing("taskUUID"), parameter="taskUUID", task_type=task_type
        )
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise TaskError(
            "invalidTaskUUID",
            "Invalid value for 'taskUUID' parameter. It must be a UUID v4 string.",
            parameter="taskUUID",
            task_type=task_type,
        ) from None


def parse_inference(task: Mapping[str, Any], task_uuid: str) -> InferenceTask:
    """Validate an ``imageInference`` task as Runware does. Raises :class:`TaskError` (400)."""
    check = _Checker(task, task_uuid)
    model = check.required("model", str)
    if model != MODEL_ID:
        check.fail(
            "invalidModel", "model", f"The model {model!r} is not served here; use {MODEL_ID}."
        )
    prompt = check.required("positivePrompt", str)
    if not prompt.strip():
        check.fail("invalidPositivePrompt", "positivePrompt", "The prompt must not be empty.")
    width, height = check.required("width", int), check.required("height", int)
    if (width, height) not in SIZES:
        allowed = ", ".join(f"{w}x{h}" for w, h in sorted(SIZES))
        check.fail(
            "invalidDimensions",
            ["width", "height"],
            f"{width}x{height} is not a size {MODEL_ID} generates; use one of {allowed}.",
        )
    return InferenceTask(
        task_uuid=task_uuid,
        prompt=prompt,
        reference_image=check.reference_image(),
        width=width,
        height=height,
        number_results=check.ranged("numberResults", 1, MAX_RESULTS) or 1,
        seed=check.ranged("seed", 0, _MAX_SEED),
        output_type=check.choice("outputType", OUTPUT_TYPES) or "URL",
        output_format=OUTPUT_FORMATS[check.choice("outputFormat", tuple(OUTPUT_FORMATS)) or "JPG"],
        delivery=check.choice("deliveryMethod", ("sync", "async")) or "sync",
        webhook_url=check.url("webhookURL"),
        upload_endpoint=check.url("uploadEndpoint"),
        include_cost=check.optional("includeCost", bool) or False,
        ttl=check.ranged("ttl", MIN_TTL, _MAX_SEED),
        safety_tolerance=check.ranged("providerSettings.bfl.safetyTolerance", 0, 6),
        prompt_upsampling=check.optional("providerSettings.bfl.promptUpsampling", bool),
    )


class _Checker:
    """Reads the fields of one task, raising Runware's error for the first bad one."""

    def __init__(self, task: Mapping[str, Any], task_uuid: str) -> None:
        self._task = task
        self._uuid = task_uuid

    def fail(self, code: str, parameter: str | list[str], message: str) -> NoReturn:
        raise TaskError(code, message, parameter=parameter, task_uuid=self._uuid)

    def optional(self, path: str, kind: type[Any]) -> Any:
        value = self._get(path)
        # bool is an int in Python, never in JSON Schema: 1 is not a bool, true is not an int.
        wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if value is not None and wrong:
            self.fail(
                _invalid_code(path),
                path,
                f"Invalid value for '{path}' parameter. It must be of type {_type_name(kind)}.",
            )
        return value

    def required(self, path: str, kind: type[Any]) -> Any:
        value = self.optional(path, kind)
        if value is None:
            raise TaskError(
                "missingParameter", _missing(path), parameter=path, task_uuid=self._uuid
            )
        return value

    def ranged(self, path: str, low: int, high: int) -> int | None:
        value: int | None = self.optional(path, int)
        if value is not None and not low <= value <= high:
            self.fail(
                _invalid_code(path),
                path,
                f"Invalid value for '{path}' parameter. "
                f"It must be an integer between {low} and {high}.",
            )
        return value

    def choice(self, path: str, allowed: tuple[str, ...]) -> str | None:
        value: str | None = self.optional(path, str)
        if value is None:
            return None
        matched = {option.lower(): option for option in allowed}.get(value.lower())
        if matched is None:
            self.fail(
                _invalid_code(path),
                path,
                f"Invalid value for '{path}' parameter. It must be one of {', '.join(allowed)}.",
            )
        return matched

    def url(self, path: str) -> str | None:
        value: str | None = self.optional(path, str)
        if value is not None and not value.startswith(("http://", "https://")):
            self.fail(_invalid_code(path), path, f"'{path}' must be an http:// or https:// URL.")
        return value

    def reference_image(self) -> str:
        # ``inputs.referenceImages`` is current; a top-level ``referenceImages`` is the old form.
        path = "inputs.referenceImages" if self._get("inputs") is not None else "referenceImages"
        images = self.required(path, list)
        if not images or not all(isinstance(image, str) and image for image in images):
            self.fail(
                "invalidReferenceImages",
                path,
                "Invalid value for 'referenceImages'. It "
                "must list images as URLs, data URIs, base64 strings or image UUIDs.",
            )
        return str(images[0])

    def _get(self, path: str) -> Any:
        value: Any = self._task
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


def _invalid_code(path: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    return f"invalid{leaf[0].upper()}{leaf[1:]}"


def _missing(path: str) -> str:
    return f"Missing required parameter '{path}'."


def _type_name(kind: type[Any]) -> str:
    return {str: "string", int: "integer", bool: "boolean", list: "array"}.get(kind, kind.__name__)


def authentication_error(message: str) -> TaskError:
    """The 401 answer to a call without a usable API key."""
    return TaskError(
        "invalidApiKey", message, parameter="apiKey", task_type="authentication", status=401
    )


def not_found(task_uuid: str) -> TaskError:
    """The answer to ``getResponse`` for a task the emulator never accepted."""
    return TaskError(
        "taskNotFound",
        f"No task found with taskUUID {task_uuid}. It was never accepted, or it has expired.",
        parameter="taskUUID",
        task_type="getResponse",
        task_uuid=task_uuid,
        status=404,
    )


def conflict(task_uuid: str) -> TaskError:
    """The answer to an ``imageInference`` task whose ``taskUUID`` was used before."""
    return TaskError(
        "conflictTaskUUID",
        f"A task with taskUUID {task_uuid} already exists; every task needs a new UUID v4.",
        parameter="taskUUID",
        task_uuid=task_uuid,
    )
