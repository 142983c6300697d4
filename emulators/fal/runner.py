"""Running accepted requests: wait for a slot, edit the image, store the result, send the webhook.

Each request gets one asyncio task. The edit itself runs in a worker thread so that a busy
emulator keeps answering status polls on time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import httpx

from emulators.background import Background
from emulators.fal.protocol import (
    ModelError,
    download_error,
    image_load_error,
    internal_error,
    moderated_error,
)
from emulators.fal.state import FalRequest, RequestStore
from emulators.fal.webhooks import WebhookSender
from emulators.faults import ConcurrencyGate, FaultInjector
from emulators.imaging import EditedImage, UnreadableImageError, edit_arguments
from emulators.sources import SourceUnavailableError, fetch_source

logger = logging.getLogger(__name__)


class Runner:
    """Takes accepted requests through the queue to a result, one task per request.

    ``store`` records the moves, ``gate`` hands out slots, ``injector`` supplies latency and
    moderation, ``sender`` delivers webhooks, ``client`` downloads sources, and output files
    live for ``result_ttl`` seconds.
    """

    def __init__(
        self,
        *,
        store: RequestStore,
        gate: ConcurrencyGate,
        injector: FaultInjector,
        sender: WebhookSender,
        client: httpx.AsyncClient,
        result_ttl: float,
    ) -> None:
        self._store = store
        self._gate = gate
        self._injector = injector
        self._sender = sender
        self._client = client
        self._result_ttl = result_ttl
        self._background = Background()

    def start(self, request: FalRequest) -> None:
        """Run ``request`` in the background; it must already have joined the gate."""
        self._background.spawn(self._run(request), f"fal-{request.request_id}")

    def stop(self, request_id: str) -> None:
        """Abandon a request's work (its state is the caller's business)."""
        self._background.cancel(f"fal-{request_id}")

    async def close(self) -> None:
        """Cancel every task still running, and wait for them to end."""
        await self._background.close()

    async def _run(self, request: FalRequest) -> None:
        try:
            finished = await self._work(request)
        finally:
            self._gate.leave(request.request_id)
        if finished:
            await self._sender.deliver(request)

    async def _work(self, request: FalRequest) -> bool:
        """Take ``request`` to a terminal state while it holds its slot; False if it lost a race.

        The terminal state is recorded before the slot is given up, so the next request never
        starts before this one has finished.
        """
        outcome: dict[str, Any] | ModelError
        try:
            await self._gate.wait(request.request_id)
            if not self._store.mark_running(request):
                return False
            outcome = await self._execute(request)
        except asyncio.CancelledError:
            self._store.mark_cancelled(request)
            raise
        except Exception:  # a bug here must end the request, not strand it running
            logger.exception("request %s failed inside the emulator", request.request_id)
            outcome = internal_error()
        if isinstance(outcome, ModelError):
            return self._store.mark_failed(request, outcome)
        return self._store.mark_succeeded(request, outcome)

    async def _execute(self, request: FalRequest) -> dict[str, Any] | ModelError:
        """Do the work, taking as long as the drawn latency; the result body or the error."""
        started = time.monotonic()
        # Every random draw happens up front, in a fixed order, so a seeded emulator makes the
        # same choices whatever the timing of downloads and edits.
        latency = self._injector.latency()
        moderated = self._injector.moderated(request.arguments.prompt)
        spoiled = self._injector.output_fault()
        arguments = request.arguments
        seed = arguments.seed if arguments.seed is not None else self._injector.seed()
        outcome: list[EditedImage] | ModelError
        try:
            source = await fetch_source(self._client, arguments.image_url)
            self._store.record_source(request, source)
            outcome = await asyncio.to_thread(edit_arguments, arguments, source, seed, spoiled)
        except SourceUnavailableError as exc:
            outcome = download_error(arguments.image_url, exc.reason)
        except UnreadableImageError:
            outcome = image_load_error(arguments.image_url)
        await asyncio.sleep(max(0.0, latency - (time.monotonic() - started)))
        if isinstance(outcome, ModelError):
            return outcome
        if moderated:
            return moderated_error(arguments.prompt)
        return {
            "images": [
                self._image_entry(request, image, index) for index, image in enumerate(outcome)
            ],
            "seed": seed,
            "prompt": arguments.prompt,
            "has_nsfw_concepts": [bool(spoiled and spoiled.flagged)] * len(outcome),
            "timings": {"inference": round(time.monotonic() - started, 3)},
        }

    def _image_entry(self, request: FalRequest, image: EditedImage, index: int) -> dict[str, Any]:
        """One ``images[]`` entry: a stored file's URL, or a data URI in sync mode."""
        if request.arguments.sync_mode:
            # Sync mode returns the bytes inline and stores nothing, as fal documents.
            encoded = base64.b64encode(image.data).decode("ascii")
            url = f"data:{image.content_type};base64,{encoded}"
            file_name = f"{request.request_id}-{index}.{image.extension}"
        else:
            token = self._store.put_file(image.data, image.content_type, self._result_ttl)
            url = f"{request.base_url}/files/{token}"
            file_name = f"{token}.{image.extension}"
        return {
            "url": url,
            "content_type": image.content_type,
            "file_name": file_name,
            "file_size": len(image.data),
            "width": image.width,
            "height": image.height,
        }
