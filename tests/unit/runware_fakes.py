"""A wire-level stand-in for Runware's task API in unit tests, and the bodies Runware sends.

Every body here has the shape Runware really sends (its task-polling, webhook and error
documentation, and its SDK's models), so the adapter is tested against Runware's wire
format, not against our own types.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any

import httpx

BASE_URL = "https://api.runware.ai/v1"
TASK_UUID = "0b5c8e5e-3f4d-4d8a-9a53-7c1f4f0e2a11"
IMAGE_UUIDS = ("5cbeb6c3-5d3b-4b0c-9d7e-0a1f44e0b8c1", "a1f0e2d3-9c8b-4a7f-8e6d-5c4b3a2f1e0d")


def ack(task_uuid: str = TASK_UUID) -> dict[str, Any]:
    """Runware's acknowledgement of an async ``imageInference`` task."""
    return {"data": [{"taskType": "imageInference", "taskUUID": task_uuid}]}


def success(index: int = 0, task_uuid: str = TASK_UUID, **changes: Any) -> dict[str, Any]:
    """One finished generation as ``getResponse`` (and a webhook) reports it."""
    image_uuid = IMAGE_UUIDS[index]
    return {
        "taskType": "imageInference",
        "taskUUID": task_uuid,
        "status": "success",
        "imageUUID": image_uuid,
        "imageURL": f"https://im.runware.ai/image/ws/2/ii/{image_uuid}.jpg",
        "seed": 1_837_415_002 + index,
        "NSFWContent": False,
        "cost": 0.04,
        **changes,
    }


def processing(task_uuid: str = TASK_UUID) -> dict[str, Any]:
    """A generation still being made."""
    return {"taskType": "imageInference", "taskUUID": task_uuid, "status": "processing"}


def error(
    code: str, message: str, parameter: str | list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """One entry of Runware's ``errors`` list."""
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "taskType": "imageInference",
        "taskUUID": TASK_UUID,
        **extra,
    }
    if parameter is not None:
        body["parameter"] = parameter
        body["documentation"] = "https://runware.ai/docs/en/image-inference/api-reference"
    return body


def errors(*entries: dict[str, Any]) -> dict[str, Any]:
    """Runware's error envelope."""
    return {"data": [], "errors": list(entries)}


INVALID_API_KEY = errors(
    error(
        "invalidApiKey",
        "Invalid API key. Get one at https://my.runware.ai/signup",
        "apiKey",
        taskType="authentication",
    )
)
#: A real answer to a bad width (kept with its extra fields).
INVALID_WIDTH = errors(
    error(
        "invalidWidth",
        "Invalid value for 'width' parameter. Image width must be an integer value between"
        " 256 and 16383, in multiples of '1'.",
        "width",
        type="integer",
        min=256,
        max=16383,
        multiplier=1,
    )
)
CONFLICT = errors(
    error("conflictTaskUUID", f"A task with taskUUID {TASK_UUID} already exists.", "taskUUID")
)
TASK_NOT_FOUND = errors(
    error(
        "taskNotFound",
        f"No task found with taskUUID {TASK_UUID}.",
        "taskUUID",
        taskType="getResponse",
    )
)
MODERATED = error(
    "providerContentPolicyViolation",
    "The provider flagged the request or its output as violating its content policy.",
)
BAD_REFERENCE = error(
    "invalidReferenceImages",
    "The reference image could not be downloaded (HTTP 404).",
    "inputs.referenceImages",
)


class FakeRunware:
    """Runware's one task endpoint, as an ``httpx.MockTransport`` handler.

    It records every request; each task type answers from its script of queued answers,
    then with its default: an ack for ``imageInference``, one success for ``getResponse``.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._script: defaultdict[str, deque[httpx.Response | httpx.HTTPError]] = defaultdict(deque)

    def client(self) -> httpx.Client:
        """A client whose every call reaches this fake."""
        return httpx.Client(transport=httpx.MockTransport(self._handle))

    def answer(self, task_type: str, status: int, body: object, **headers: str) -> None:
        """Answer the next ``task_type`` task with ``status`` and the JSON ``body``."""
        self._script[task_type].append(httpx.Response(status, json=body, headers=headers))

    def fail(self, task_type: str, error: httpx.HTTPError) -> None:
        """Make the next ``task_type`` call fail without an answer."""
        self._script[task_type].append(error)

    def tasks(self, index: int = -1) -> list[dict[str, Any]]:
        """The task array a request sent (the last by default)."""
        sent = json.loads(self.requests[index].content)
        assert isinstance(sent, list)
        return sent

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        [task] = json.loads(request.content)
        script = self._script[task["taskType"]]
        if script:
            scripted = script.popleft()
            if isinstance(scripted, httpx.HTTPError):
                raise scripted
            return scripted
        if task["taskType"] == "imageInference":
            return httpx.Response(200, json=ack(task["taskUUID"]))
        return httpx.Response(200, json={"data": [success(task_uuid=task["taskUUID"])]})
