"""Running accepted tasks: wait for a slot, edit the image, finish each generation in turn.

Each task gets one asyncio task. The edits run in a worker thread so that a busy emulator
keeps answering polls on time. The drawn latency is the whole time to a result, with the
download, edit and upload inside it, as on the fal and Runflow emulators. It is spread
over the task's generations, so a poll in between sees some ``success`` and some
``processing``, and each generation's webhook goes out as soon as it is done, as Runware
sends them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import uuid
from typing import Any

import httpx
from PIL import Image

from emulators.background import Background
from emulators.faults import ConcurrencyGate, FaultInjector, OutputFault
from emulators.imaging import EditedImage, UnreadableImageError, edit_all
from emulators.runware.config import RunwareEmulatorConfig
from emulators.runware.protocol import InferenceTask, TaskError
from emulators.runware.state import RunwareTask, TaskStore
from emulators.runware.webhooks import WebhookSender
from emulators.sources import SourceUnavailableError, fetch_source

logger = logging.getLogger(__name__)

#: Where output images are served, as on Runware's image host.
IMAGE_PATH = "/image/ws/2/ii"


class Runner:
    """Takes accepted tasks through the queue to their results, one asyncio task each.

    ``store`` records what happens, ``gate`` hands out slots, ``injector`` supplies latency
    and moderation, ``sender`` delivers webhooks, ``client`` downloads sources and uploads
    outputs, ``config`` gives output lifetimes and prices.
    """

    def __init__(
        self,
        *,
        store: TaskStore,
        gate: ConcurrencyGate,
        injector: FaultInjector,
        sender: WebhookSender,
        client: httpx.AsyncClient,
        config: RunwareEmulatorConfig,
    ) -> None:
        self._store = store
        self._gate = gate
        self._injector = injector
        self._sender = sender
        self._client = client
        self._config = config
        self._background = Background()

    def start(self, task: RunwareTask) -> None:
        """Run ``task`` in the background; it must already have joined the gate."""
        self._background.spawn(self._run(task), f"runware-{task.task_uuid}")

    async def close(self) -> None:
        """Cancel every task and delivery still running, and wait for them to end."""
        await self._background.close()

    async def _run(self, task: RunwareTask) -> None:
        try:
            await self._gate.wait(task.task_uuid)
            if self._store.mark_running(task):
                await self._generate_all(task)
        except Exception:  # a bug here must end the task, not strand it running
            logger.exception("task %s failed inside the emulator", task.task_uuid)
            for _ in range(task.unfinished):
                self._store.record_error(task, internal_error(task.task_uuid))
        finally:
            # Finished before the slot is given up, so the next task never starts before this
            # one has ended; and finished even when cancelled, so no sync caller waits forever.
            self._store.mark_finished(task)
            self._gate.leave(task.task_uuid)

    async def _generate_all(self, task: RunwareTask) -> None:
        started = time.monotonic()
        # Every random draw happens up front, in a fixed order, so a seeded emulator makes the
        # same choices whatever the timing of downloads and edits.
        latency = self._injector.latency()
        moderated = self._injector.moderated(task.task.prompt)
        spoiled = self._injector.output_fault()
        spec = task.task
        seed = spec.seed if spec.seed is not None else self._injector.seed()
        images = await self._edit(task, seed, spoiled)
        count = spec.number_results
        for index in range(count):
            outcome: dict[str, Any] | TaskError
            if isinstance(images, TaskError):
                outcome = images
            elif moderated:
                outcome = moderated_error(spec.task_uuid)
            else:
                outcome = await self._publish(task, images[index], seed + index, spoiled)
            # The upload is part of the work, so it is done within the latency: the
            # generation is reported when its share of the latency is up, not after it.
            due = started + latency * (index + 1) / count
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if isinstance(outcome, TaskError):
                self._store.record_error(task, outcome)
            else:
                self._store.record_result(task, outcome)
            self._background.spawn(
                self._sender.deliver(task, outcome), f"webhook-{task.task_uuid}-{index}"
            )

    async def _edit(
        self, task: RunwareTask, seed: int, spoiled: OutputFault | None
    ) -> list[EditedImage] | TaskError:
        """Download the reference image once and make every generation from it."""
        spec = task.task
        try:
            source = await fetch_source(self._client, spec.reference_image)
            self._store.record_source(task, source)
            return await asyncio.to_thread(_edit_all, spec, source, seed, spoiled)
        except SourceUnavailableError as exc:
            return reference_error(spec.task_uuid, f"could not be downloaded ({exc.reason})")
        except UnreadableImageError:
            return reference_error(spec.task_uuid, "is not an image that can be read")

    async def _publish(
        self, task: RunwareTask, image: EditedImage, seed: int, spoiled: OutputFault | None
    ) -> dict[str, Any] | TaskError:
        """Serve (and upload, if asked) one output; its result item, or why it failed."""
        spec = task.task
        image_uuid = str(uuid.uuid4())
        item: dict[str, Any] = {
            "taskType": "imageInference",
            "taskUUID": spec.task_uuid,
            "status": "success",
            "imageUUID": image_uuid,
        }
        if spec.output_type == "URL":
            name = f"{image_uuid}.{_extension(image.content_type)}"
            ttl = spec.ttl if spec.ttl is not None else self._config.result_ttl
            self._store.put_file(name, image.data, image.content_type, ttl)
            item["imageURL"] = f"{task.base_url}{IMAGE_PATH}/{name}"
        else:
            encoded = base64.b64encode(image.data).decode("ascii")
            if spec.output_type == "base64Data":
                item["imageBase64Data"] = encoded
            else:
                item["imageDataURI"] = f"data:{image.content_type};base64,{encoded}"
        if spec.upload_endpoint is not None:
            refused = await self._upload(spec.upload_endpoint, image)
            if refused is not None:
                return upload_error(spec.task_uuid, refused)
        item.update(seed=seed, NSFWContent=bool(spoiled and spoiled.flagged))
        if spec.include_cost:
            item["cost"] = self._config.cost_per_image
        return item

    async def _upload(self, url: str, image: EditedImage) -> str | None:
        """PUT the output to ``url``; ``None`` when accepted, else why it was not."""
        headers = {"Content-Type": image.content_type}
        try:
            response = await self._client.put(url, content=image.data, headers=headers)
        except httpx.HTTPError as exc:
            reason: str | None = type(exc).__name__
        else:
            reason = None if response.is_success else f"HTTP {response.status_code}"
        if reason is None:
            self._store.stats.uploads += 1
        else:
            self._store.stats.upload_failures += 1
        return reason


def _edit_all(
    spec: InferenceTask, source: bytes, seed: int, spoiled: OutputFault | None
) -> list[EditedImage]:
    """Every image the task asked for, at its exact size; each seed follows from the first."""
    edited = edit_all(
        source,
        spec.prompt,
        seed,
        spec.number_results,
        spoiled,
        aspect_ratio=None,
        output_format="png" if spec.output_format == "webp" else spec.output_format,
        size=(spec.width, spec.height),
    )
    return [_encoded(image, spec.output_format) for image in edited]


def _encoded(image: EditedImage, output_format: str) -> EditedImage:
    # The shared edit encodes JPEG and PNG; Runware also offers WebP, re-encoded from the PNG.
    if output_format != "webp":
        return image
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(image.data)) as decoded:
        decoded.save(buffer, format="WEBP", quality=90)
    return EditedImage(buffer.getvalue(), "image/webp", image.width, image.height)


def _extension(content_type: str) -> str:
    return {"image/png": "png", "image/webp": "webp"}.get(content_type, "jpg")


def reference_error(task_uuid: str, reason: str) -> TaskError:
    """The reference image could not be used."""
    return TaskError(
        "invalidReferenceImages",
        f"The reference image {reason}. Use a reachable URL, a data URI, base64 data or an"
        " uploaded image UUID.",
        parameter="inputs.referenceImages",
        task_uuid=task_uuid,
    )


def moderated_error(task_uuid: str) -> TaskError:
    """The model provider's content checker refused the generation."""
    return TaskError(
        "providerContentPolicyViolation",
        "The provider flagged the request or its output as violating its content policy.",
        task_uuid=task_uuid,
    )


def upload_error(task_uuid: str, reason: str) -> TaskError:
    """The output could not be PUT to the task's ``uploadEndpoint``."""
    return TaskError(
        "uploadFailed",
        f"Failed to upload the generated image to uploadEndpoint ({reason}).",
        parameter="uploadEndpoint",
        task_uuid=task_uuid,
    )


def internal_error(task_uuid: str) -> TaskError:
    """The emulator itself failed while making the generation."""
    return TaskError(
        "internalServerError",
        "Internal error while processing the task.",
        task_uuid=task_uuid,
        status=500,
    )
