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

from emulators.background import Background
from emulators.faults import ConcurrencyGate, FaultInjector
from emulators.imaging import EditedImage, UnreadableImageError, edit_arguments
from emulators.runflow.callbacks import CallbackSender
from emulators.runflow.files import OutputStore
from emulators.runflow.protocol import (
    RunFailure,
    decode_failure,
    download_failure,
    internal_failure,
    moderated_failure,
)
from emulators.runflow.state import Outputs, Run, RunStore
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
        self._background = Background()

    def start(self, run: Run) -> None:
        """Run ``run`` in the background; it must already have joined the gate."""
        self._background.spawn(self._run(run), f"runflow-{run.run_id}")

    async def close(self) -> None:
        """Cancel every task still running, and wait for them to end."""
        await self._background.close()

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
        outcome: Outputs | RunFailure
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

    async def _execute(self, run: Run) -> Outputs | RunFailure:
        """Do the work, taking as long as the drawn latency; the output URLs or the failure."""
        started = time.monotonic()
        # Every random draw happens up front, in a fixed order, so a seeded emulator makes the
        # same choices whatever the timing of downloads and edits.
        latency = self._injector.latency()
        moderated = self._injector.moderated(run.request.input.prompt)
        spoiled = self._injector.output_fault()
        arguments = run.request.input
        seed = arguments.seed if arguments.seed is not None else self._injector.seed()
        try:
            source = await fetch_source(self._client, arguments.image_url)
        except SourceUnavailableError as exc:
            return download_failure(exc.reason)
        self._store.record_source(run, source)
        self._store.mark_running(run)
        try:
            images = await asyncio.to_thread(edit_arguments, arguments, source, seed, spoiled)
        except UnreadableImageError:
            return decode_failure()
        await asyncio.sleep(max(0.0, latency - (time.monotonic() - started)))
        if moderated:
            return moderated_failure()
        urls = [self._url(run, image, index) for index, image in enumerate(images)]
        return Outputs(urls, [bool(spoiled and spoiled.flagged)] * len(urls))

    def _url(self, run: Run, image: EditedImage, index: int) -> str:
        """One output's URL: a signed, expiring file URL, or a data URI in sync mode."""
        if run.request.input.sync_mode:
            # Sync mode returns the bytes inline and stores nothing, as the model page says.
            encoded = base64.b64encode(image.data).decode("ascii")
            return f"data:{image.content_type};base64,{encoded}"
        key = f"{run.run_id}/{index}.{image.extension}"
        return self._files.put(run.base_url, key, image.data, image.content_type)
