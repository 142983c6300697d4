"""Runware's wire format for Kontext: the task we send, and reading what comes back.

Runware takes ``width`` and ``height`` instead of an aspect ratio; :data:`SIZES` is the one
table from the ratios producers name to the sizes sent. Answers are read into the frozen
values the core sees here, once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from worker import faults
from worker.faults import ErrorKind, Fault
from worker.providers.base import AttemptRef, Completed, Failed, Outcome, Pending, RemoteOutput
from worker.providers.runware.errors import classify_runware_error
from worker.values.canonical import EditInput

#: Canonical aspect ratio -> the (width, height) sent to Runware for it, about a megapixel
#: each, as FLUX.1 Kontext generates them.
SIZES: Mapping[str, tuple[int, int]] = {
    "21:9": (1568, 672),
    "16:9": (1392, 752),
    "4:3": (1184, 880),
    "3:2": (1248, 832),
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:4": (880, 1184),
    "9:16": (752, 1392),
    "9:21": (672, 1568),
}

#: Canonical output format -> (Runware's ``outputFormat``, the content type it produces).
OUTPUT_FORMATS: Mapping[str, tuple[str, str]] = {
    "jpeg": ("JPG", "image/jpeg"),
    "png": ("PNG", "image/png"),
}

#: Statuses of a generation that has not finished; the older docs say ``pending``.
UNFINISHED = frozenset({"processing", "pending"})


def closest_size(width: int, height: int) -> tuple[int, int]:
    """The size in :data:`SIZES` whose shape is closest to a ``width`` x ``height`` image.

    Shapes are compared as log ratios, so 2:1 is as far from 1:1 as 1:2 is.
    """
    target = math.log(width / height)
    return min(SIZES.values(), key=lambda size: abs(math.log(size[0] / size[1]) - target))


def inference_task(
    model_id: str,
    edit: EditInput,
    task_uuid: str,
    size: tuple[int, int],
    *,
    webhook_url: str | None,
    upload_url: str | None,
) -> dict[str, Any]:
    """The ``imageInference`` task for one canonical edit, sent to be answered async.

    :param model_id: Runware's model id (``bfl:3@1``).
    :param task_uuid: our attempt id: Runware refuses a second task with it.
    :param size: ``(width, height)``, from :data:`SIZES` or :func:`closest_size`.
    :param webhook_url: where Runware posts each finished image, if anywhere.
    :param upload_url: a presigned PUT URL Runware uploads the output to, if any.
    """
    output_format, _ = OUTPUT_FORMATS[edit.output_format]
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "model": model_id,
        "positivePrompt": edit.prompt,
        "inputs": {"referenceImages": [edit.image_url]},
        "width": size[0],
        "height": size[1],
        "numberResults": edit.num_images,
        "outputType": "URL",
        "outputFormat": output_format,
        "deliveryMethod": "async",
        "includeCost": True,
    }
    if edit.seed is not None:
        task["seed"] = edit.seed
    bfl = _bfl_settings(edit)
    if bfl:
        task["providerSettings"] = {"bfl": bfl}
    if webhook_url:
        task["webhookURL"] = webhook_url
    if upload_url:
        task["uploadEndpoint"] = upload_url
    return task


def _bfl_settings(edit: EditInput) -> dict[str, object]:
    # An int on Runware (a string on fal); only what the producer set, so BFL's defaults hold.
    settings: dict[str, object] = {}
    if edit.safety_tolerance is not None:
        settings["safetyTolerance"] = int(edit.safety_tolerance)
    if edit.enhance_prompt is not None:
        settings["promptUpsampling"] = bool(edit.enhance_prompt)
    return settings


@dataclass(frozen=True, slots=True)
class Envelope:
    """A Runware answer taken apart: its ``data`` items and its ``errors``."""

    data: tuple[Mapping[str, Any], ...]
    errors: tuple[Mapping[str, Any], ...]


def envelope(content: bytes) -> Envelope | None:
    """The ``{"data": [...], "errors": [...]}`` in ``content``; ``None`` when it is not one."""
    try:
        document = json.loads(content)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    return Envelope(data=_objects(document.get("data")), errors=_objects(document.get("errors")))


def callback_items(document: object) -> tuple[Mapping[str, Any], ...]:
    """The result or error objects in a webhook body, in either of Runware's shapes.

    Runware's SDK documents ``{"data": [item]}``; its migration notes show the item flat.
    An error callback may come as ``{"errors": [error]}``.
    """
    if not isinstance(document, dict):
        return ()
    if "data" in document or "errors" in document:
        return _objects(document.get("data")) + _objects(document.get("errors"))
    return (document,)


def _objects(value: object) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, dict))


def generation_failure(answer: Envelope, status_code: int) -> Fault | None:
    """How a generation failed, when a poll reports one failed; ``None`` when none did.

    Runware reports a failed generation in ``errors`` (scoped to the ``imageInference``
    task) or, in its SDK's other shape, as a ``data`` item with ``status: "error"``.
    """
    for error in answer.errors:
        if error.get("taskType") == "imageInference" or error.get("status") == "error":
            return classify_runware_error(status_code, {}, {"errors": [error]})
    for item in answer.data:
        if item.get("status") == "error":
            nested = item.get("error")
            error = nested if isinstance(nested, dict) else item
            return classify_runware_error(status_code, {}, {"errors": [error]})
    return None


def progress(ref: AttemptRef, answer: Envelope) -> Outcome:
    """What a poll says about an attempt with no failed generation.

    :class:`Pending` until every image asked for (``ref.data["images"]``) has succeeded;
    then :class:`Completed` with the outputs and their summed ``cost``. Each output carries
    its ``NSFWContent`` flag, which the quality gate honours (as it does fal's).
    """
    items = [item for item in answer.data if item.get("taskUUID") in (None, ref.request_id)]
    done: dict[str, Mapping[str, Any]] = {}
    for index, item in enumerate(items):
        if item.get("status") not in UNFINISHED and item.get("imageURL") is not None:
            # A poll repeats the generations it reported before; the image id dedupes them.
            done.setdefault(str(item.get("imageUUID") or index), item)
    expected = ref.data.get("images", 1)
    if len(done) < (expected if isinstance(expected, int) else 1):
        return Pending()
    outputs = []
    for item in done.values():
        url = item["imageURL"]
        if not isinstance(url, str) or not url:
            return Failed(invalid_answer(f"a generation has no usable imageURL: {url!r}"))
        outputs.append(
            RemoteOutput(
                url=url,
                content_type=_content_type(ref, url),
                stored=bool(ref.data.get("uploaded")),
                flagged=nsfw if isinstance(nsfw := item.get("NSFWContent"), bool) else None,
            )
        )
    return Completed(outputs=tuple(outputs), cost_usd=_cost(done.values()))


def _content_type(ref: AttemptRef, url: str) -> str | None:
    recorded = ref.data.get("content_type")
    if isinstance(recorded, str):
        return recorded
    # An attempt recorded before the format was kept: Runware names files by their format.
    path = url.split("?", 1)[0].lower()
    if path.endswith(".png"):
        return "image/png"
    return "image/jpeg" if path.endswith((".jpg", ".jpeg")) else None


def _cost(items: Iterable[Mapping[str, Any]]) -> Decimal | None:
    total: Decimal | None = None
    for item in items:
        value = item.get("cost")
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                total = (total or Decimal(0)) + Decimal(str(value))
            except InvalidOperation:
                continue
    return total


def invalid_answer(message: str) -> Fault:
    """The fault of an answer that is not what Runware's protocol promises (retryable)."""
    return Fault(ErrorKind.RETRYABLE, faults.PROVIDER_RESPONSE_INVALID, message)
