"""Running accepted runs: wait for a slot, fetch the source, edit it, store outputs, call back.

Each run gets one asyncio task. The edit itself runs in a worker thread so that a busy
emulator keeps answering polls on time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import httpx

from emulators.faults import ConcurrencyGate, FaultInjector
from emulators.imaging import EditedImage, UnreadableImageError, apply_edit
from emulators.runflow.callbacks import CallbackSender
from emulators.runflow.files import OutputStore
from emulators.runflow.protocol import (
    RunFailure,
    decode_failure,
    download_failure,
    internal_failure,
    moderated_failure,
)
from emulators.runflow.state import Run, RunStore
from emulators.sources import SourceUnavailableError, fetch_source

logger = logging.getLogger(__name__)


class Runner:
    """Takes accepted runs through the queue to a terminal state, one task per run.

    ``store`` records the moves, ``gate`` hands out slots, ``injector`` supplies latency and
    moderation, ``files`` keeps outputs behind expiring URLs, ``callbacks`` sends the
    callback, and ``client`` downloads sources.
    """

    def __init__(
        self,
        *,
        store: RunStore,
        gate: ConcurrencyGate,
        injector: FaultInjector,
        files: OutputStore,
        callbacks: CallbackSender,
        client: httpx.AsyncClient,
    ) -> None:
        self._store = store
        self._gate = gate
        self._injector = injector
        self._files = files
        self._callbacks = callbacks
        self._client = client
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, run: Run) -> None:
        """Run ``run`` in the background; it must already have joined the gate."""
        task = asyncio.create_task(self._run(run), name=f"runflow-{run.run_id}")
        self._tasks[run.run_id] = task
        task.add_done_callback(lambda done: self._finished(run.run_id, done))

    async def close(self) -> None:
        """Cancel every task still running, and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(run_id, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s crashed", run_id, exc_info=task.exception())

    async def _run(self, run: Run) -> None:
        try:
            finished = await self._work(run)
        finally:
            self._gate.leave(run.run_id)
        if finished and run.request.callback_url is not None:
            await self._callbacks.deliver(self._callbacks.prepare(run, automatic=True))

    async def _work(self, run: Run) -> bool:
        """Take ``run`` to a terminal state while it holds its slot; False if it lost a race.

        The terminal state is recorded before the slot is given up, so the next run never
        starts before this one has finished.
        """
        outcome: list[str] | RunFailure
        try:
            await self._gate.wait(run.run_id)
            if not self._store.mark_dispatching(run):
                return False
            outcome = await self._execute(run)
        except Exception:  # a bug here must end the run, not strand it running
            logger.exception("run %s failed inside the emulator", run.run_id)
            outcome = internal_failure()
        if isinstance(outcome, RunFailure):
            return self._store.mark_failed(run, outcome)
        return self._store.mark_succeeded(run, outcome)

    async def _execute(self, run: Run) -> list[str] | RunFailure:
        """Do the work, taking as long as the drawn latency; the output URLs or the failure."""
        started = time.monotonic()
        # Every random draw happens up front, in a fixed order, so a seeded emulator makes the
        # same choices whatever the timing of downloads and edits.
        latency = self._injector.latency()
        moderated = self._injector.moderated()
        arguments = run.request.input
        seed = arguments.seed if arguments.seed is not None else self._injector.seed()
        try:
            source = await fetch_source(self._client, arguments.image_url)
        except SourceUnavailableError as exc:
            return download_failure(exc.reason)
        self._store.mark_running(run)
        try:
            images = await asyncio.to_thread(_edit_all, run, source, seed)
        except UnreadableImageError:
            return decode_failure()
        await asyncio.sleep(max(0.0, latency - (time.monotonic() - started)))
        if moderated:
            return moderated_failure()
        return [self._url(run, image, index) for index, image in enumerate(images)]

    def _url(self, run: Run, image: EditedImage, index: int) -> str:
        """One output's URL: a signed, expiring file URL, or a data URI in sync mode."""
        if run.request.input.sync_mode:
            # Sync mode returns the bytes inline and stores nothing, as the model page says.
            encoded = base64.b64encode(image.data).decode("ascii")
            return f"data:{image.content_type};base64,{encoded}"
        key = f"{run.run_id}/{index}.{image.extension}"
        return self._files.put(run.base_url, key, image.data, image.content_type)


def _edit_all(run: Run, source: bytes, seed: int) -> list[EditedImage]:
    """Every image the run asked for; each one's seed follows from the first."""
    arguments = run.request.input
    return [
        apply_edit(
            source,
            arguments.prompt,
            seed=seed + index,
            aspect_ratio=arguments.aspect_ratio,
            output_format=arguments.output_format,
        )
        for index in range(arguments.num_images)
    ]
