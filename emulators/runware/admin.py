"""The emulator's own endpoints under ``/_emulator`` (not Runware's): counters, tasks, settings.

* ``GET /_emulator/stats``: counts of accepted, rejected, completed and failed tasks, of
  images made, polls answered, uploads that landed or were refused, and of webhook
  attempts that succeeded, failed or were dropped on purpose;
* ``GET /_emulator/requests``: every accepted ``imageInference`` task, oldest first, so a
  test can prove nothing was paid for twice;
* ``GET /_emulator/config`` and ``PATCH /_emulator/config``: read or change latency,
  concurrency, fault rates and webhook behaviour while running (flat keys, see
  :data:`emulators.faults.PATCHABLE_KEYS`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from emulators.runware.emulator import RunwareEmulator


def admin_router(emulator: RunwareEmulator) -> APIRouter:
    """The ``/_emulator`` routes, bound to ``emulator``."""
    router = APIRouter(prefix="/_emulator")

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        return dataclasses.asdict(emulator.store.stats)

    @router.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return [task.summary() for task in emulator.store.all()]

    @router.get("/config")
    async def read_config() -> dict[str, Any]:
        return dataclasses.asdict(emulator.injector.config)

    @router.patch("/config")
    async def update_config(changes: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            updated = emulator.update_faults(changes)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(dataclasses.asdict(updated))

    return router
