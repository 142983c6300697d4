"""The emulator's own endpoints under ``/_emulator`` (not Runflow's): counters, runs, settings.

* ``GET /_emulator/stats``: counts of accepted, rejected, succeeded (``completed``) and failed
  runs, of callback attempts that succeeded, failed or were dropped on purpose, of
  redeliveries and of secrets issued;
* ``GET /_emulator/requests``: every accepted run, oldest first, with the states it went
  through, so a test can prove nothing was submitted twice;
* ``GET /_emulator/config`` and ``PATCH /_emulator/config``: read or change latency,
  concurrency, fault rates and callback behaviour while running (flat keys, see
  :data:`emulators.faults.PATCHABLE_KEYS`).

Rotating the callback secret is Runflow's own ``POST /v1/callback-secrets``.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from emulators.runflow.emulator import RunflowEmulator
from emulators.runflow.protocol import error_body


def admin_router(emulator: RunflowEmulator) -> APIRouter:
    """The ``/_emulator`` routes, bound to ``emulator``."""
    router = APIRouter(prefix="/_emulator")

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        return dataclasses.asdict(emulator.store.stats)

    @router.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return [run.summary() for run in emulator.store.all()]

    @router.get("/config")
    async def read_config() -> dict[str, Any]:
        return dataclasses.asdict(emulator.injector.config)

    @router.patch("/config")
    async def update_config(changes: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            updated = emulator.update_faults(changes)
        except ValueError as exc:
            return JSONResponse(error_body("VALIDATION_ERROR", str(exc)), status_code=422)
        return JSONResponse(dataclasses.asdict(updated))

    return router
