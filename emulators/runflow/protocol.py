"""Runflow's wire format for FLUX.1 Kontext [pro]: the create-run body it validates, its error
envelope, and the ways a run fails.

Every refusal is ``{"code", "message", "errors"}``; a 422 lists the fields at fault as
``errors: [{"field", "message"}]``, with dotted paths (``input.guidance_scale``). A run that
was accepted and then failed carries ``failure_code``, ``failure_stage`` and
``failure_message``; its callback carries the same as an error envelope in ``output``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: The one model the emulator serves, by its Runflow id.
MODEL_ID = "black-forest-labs/flux-pro/kontext"
#: Runflow's list price for Kontext [pro], charged per output image.
PRICE_PER_IMAGE = Decimal("0.04")

# The same list as emulators.imaging.ASPECT_RATIOS (a unit test keeps them equal); pydantic
# needs it spelled as a Literal to name the allowed values in its error message.
AspectRatio = Literal["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]


class KontextInput(BaseModel):
    """The ``input`` of ``black-forest-labs/flux-pro/kontext``; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: str = Field(min_length=1)
    image_url: str = Field(min_length=1)
    aspect_ratio: AspectRatio | None = None
    num_images: int = Field(default=1, ge=1, le=4)
    guidance_scale: float = Field(default=3.5, ge=1, le=20)
    output_format: Literal["jpeg", "png"] = "jpeg"
    # A string on Runflow, as on fal: the integer 2 is refused.
    safety_tolerance: Literal["1", "2", "3", "4", "5", "6"] = "2"
    enhance_prompt: bool = False
    seed: int | None = None
    sync_mode: bool = False


class RunRequest(BaseModel):
    """The body of ``POST /v1/models/{model}/runs``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    input: KontextInput
    callback_url: str | None = None
    metadata: dict[str, Any] | None = None
    client_ref: str | None = Field(default=None, max_length=255)

    @field_validator("callback_url")
    @classmethod
    def _callback_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class InvalidRequestError(Exception):
    """The create-run body was refused; ``status_code`` and ``body`` are Runflow's answer."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        super().__init__(body["message"])
        self.status_code = status_code
        self.body = body


def error_body(
    code: str, message: str, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """Runflow's error envelope."""
    return {"code": code, "message": message, "errors": errors}


def field_error(field: str, message: str) -> dict[str, str]:
    """One entry of a 422's ``errors`` list."""
    return {"field": field, "message": message}


def parse_run_request(raw: bytes) -> RunRequest:
    """Parse and validate a create-run body.

    Raises :class:`InvalidRequestError`: 400 ``BAD_REQUEST`` when the body is not JSON, 422
    ``VALIDATION_ERROR`` naming every field at fault otherwise.
    """
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequestError(
            400, error_body("BAD_REQUEST", f"The request body is not valid JSON: {exc}")
        ) from exc
    try:
        return RunRequest.model_validate(payload)
    except ValidationError as exc:
        errors = [
            field_error(".".join(str(part) for part in item["loc"]) or "body", item["msg"])
            for item in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidRequestError(
            422, error_body("VALIDATION_ERROR", "Request validation failed", errors)
        ) from exc


@dataclass(frozen=True, slots=True)
class RunFailure:
    """How a run that was accepted ended badly: Runflow's ``failure_*`` fields."""

    code: str
    stage: str
    message: str

    def envelope(self) -> dict[str, Any]:
        """The error envelope a failed run's callback carries as its ``output``."""
        return {"code": self.code, "message": self.message, "stage": self.stage, "errors": None}


def moderated_failure() -> RunFailure:
    """The output was flagged by the content checker."""
    return RunFailure(
        "CONTENT_MODERATED",
        "postprocess",
        "The output was flagged by the content moderation filter; change the prompt or"
        " raise safety_tolerance",
    )


def download_failure(reason: str) -> RunFailure:
    """The source image could not be fetched."""
    return RunFailure(
        "INPUT_DOWNLOAD_FAILED", "preprocess", f"Could not download image_url ({reason})"
    )


def decode_failure() -> RunFailure:
    """The source image was fetched but is not an image."""
    return RunFailure(
        "IMAGE_DECODE_FAILED",
        "preprocess",
        "image_url is not a readable image; send a JPEG, PNG or WebP file",
    )


def internal_failure() -> RunFailure:
    """The emulator itself failed while running the model."""
    return RunFailure("INTERNAL_ERROR", "inference", "Internal error while running the model")
