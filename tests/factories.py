"""Factories that make valid, consistent requests and source images for tests."""

from __future__ import annotations

import base64
from typing import Any

from worker.dev.samples import product_photo
from worker.usecases.job_request import JobRequest
from worker.values.canonical import EditInput


def data_uri(seed: int = 1) -> str:
    """A small product photo as a data URI, so the emulator needs no image server."""
    photo = product_photo("mug", seed, size=(256, 256))
    return "data:image/jpeg;base64," + base64.b64encode(photo).decode()


def edit_input(**changes: Any) -> EditInput:
    """A valid canonical edit request."""
    fields: dict[str, Any] = {
        "prompt": "Replace the background with a sunlit beach",
        "image_url": data_uri(),
    }
    fields.update(changes)
    return EditInput.model_validate(fields)


def job_request(**changes: Any) -> JobRequest:
    """A valid job request on fal."""
    edit_changes = changes.pop("input", {})
    fields: dict[str, Any] = {"model": "flux-kontext-pro", "input": edit_input(**edit_changes)}
    fields.update(changes)
    return JobRequest(**fields)


def job_body(*, input: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A valid ``POST /v1/jobs`` body; ``input`` changes are merged into a valid input."""
    edit = {"prompt": "Put the mug on a marble counter", "image_url": data_uri()}
    body: dict[str, Any] = {"model": "flux-kontext-pro", "input": {**edit, **(input or {})}}
    body.update(changes)
    return body
