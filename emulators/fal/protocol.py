"""fal's wire format for FLUX.1 Kontext: the input it validates and the bodies it answers with.

Error bodies come in fal's two shapes: model and validation errors are
``{"detail": [{"loc", "msg", "type", ...}]}`` (usually 422), request errors are
``{"detail": "...", "error_type": "..."}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The same list as emulators.imaging.ASPECT_RATIOS (a unit test keeps them equal); pydantic
# needs it spelled as a Literal to name the allowed values in its error message.
AspectRatio = Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]

# Where fal's error pages live; model errors link to the entry for their type.
ERRORS_DOC_URL = "https://docs.fal.ai/errors"


class KontextInput(BaseModel):
    """The input of ``fal-ai/flux-pro/kontext``; fields fal does not know are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: str = Field(min_length=1)
    image_url: str = Field(min_length=1)
    seed: int | None = None
    guidance_scale: float = Field(default=3.5, ge=1, le=20)
    num_images: int = Field(default=1, ge=1, le=4)
    output_format: Literal["jpeg", "png"] = "jpeg"
    # A string on fal, unlike BFL and Replicate where it is an integer: 2 is refused.
    safety_tolerance: Literal["1", "2", "3", "4", "5", "6"] = "2"
    enhance_prompt: bool = False
    aspect_ratio: AspectRatio | None = None
    sync_mode: bool = False


class InvalidInputError(Exception):
    """The submitted body is not a valid input; ``body`` is fal's 422 answer naming the fields."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__(detail[0]["msg"] if detail else "invalid input")
        self.body: dict[str, Any] = {"detail": detail}


def parse_input(raw: bytes) -> KontextInput:
    """Parse and validate a submit body. Raises :class:`InvalidInputError` with fal's 422 body."""
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(
            [detail_item(["body"], f"JSON decode error: {exc}", "json_invalid")]
        ) from exc
    try:
        return KontextInput.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInputError(
            [
                {
                    "loc": ["body", *item["loc"]],
                    "msg": item["msg"],
                    "type": item["type"],
                    **_echoed_input(item.get("input")),
                }
                for item in exc.errors(include_url=False, include_context=False)
            ]
        ) from exc


def detail_item(loc: list[str | int], msg: str, error_type: str) -> dict[str, Any]:
    """One entry of a ``detail`` list, as fal's validation and model errors have them."""
    return {"loc": loc, "msg": msg, "type": error_type}


def request_error(detail: str, error_type: str) -> dict[str, Any]:
    """A request-level error body: ``{"detail": "...", "error_type": "..."}``."""
    return {"detail": detail, "error_type": error_type}


@dataclass(frozen=True, slots=True)
class ModelError:
    """How a request that ran ended badly: the status and body its result URL answers with."""

    status_code: int
    body: dict[str, Any]
    #: Short machine-readable kind, shown as ``error_type`` in the status.
    error_type: str
    #: One line for people, shown as ``error`` in the status.
    message: str


def model_error(field: str, msg: str, error_type: str, *, value: Any = None) -> ModelError:
    """A 422 model error about input ``field``, in fal's ``detail`` list shape."""
    item = detail_item(["body", field], msg, error_type)
    item["url"] = f"{ERRORS_DOC_URL}#{error_type}"
    if value is not None:
        item["input"] = value
    return ModelError(422, {"detail": [item]}, error_type, msg)


def moderated_error(prompt: str) -> ModelError:
    """The output was flagged by the content checker."""
    return model_error(
        "prompt",
        "The content could not be processed because it contained material flagged by a "
        "content checker.",
        "content_policy_violation",
        value=prompt,
    )


def image_load_error(image_url: str) -> ModelError:
    """The source image was downloaded but is not an image."""
    return model_error(
        "image_url",
        "Failed to load the image. Please ensure the image file is not corrupted and is in "
        "a supported format.",
        "image_load_error",
        value=_shorten(image_url),
    )


def download_error(image_url: str, reason: str) -> ModelError:
    """The source image could not be fetched."""
    return model_error(
        "image_url",
        f"Failed to download the file. Please check if the URL is accessible. ({reason})",
        "file_download_error",
        value=_shorten(image_url),
    )


def internal_error() -> ModelError:
    """The emulator itself failed while running the request."""
    message = "Internal error while processing the request"
    return ModelError(500, request_error(message, "internal_error"), "internal_error", message)


def _echoed_input(value: Any) -> dict[str, Any]:
    # A missing field's "input" is the whole body, which can hold a megabyte data URI; only
    # echo scalar inputs, shortened.
    if isinstance(value, dict | list):
        return {}
    return {"input": _shorten(value) if isinstance(value, str) else value}


def _shorten(value: str) -> str:
    # Data URIs can be megabytes long; an error body only needs to show which input it was.
    return value if len(value) <= 120 else value[:117] + "..."
