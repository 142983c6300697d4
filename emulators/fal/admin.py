"""The emulator's own endpoints under ``/_emulator`` (not fal's): counters, requests, settings.

* ``GET /_emulator/stats``: counts of accepted, rejected, completed, failed and cancelled
  requests, and of webhook attempts that succeeded, failed or were dropped on purpose;
* ``GET /_emulator/requests``: every accepted submission, oldest first, so a test can prove
  nothing was submitted twice;
* ``GET /_emulator/config`` and ``PATCH /_emulator/config``: read or change latency,
  concurrency, fault rates and webhook behaviour while running (flat keys, see
  :data:`emulators.faults.PATCHABLE_KEYS`);
* ``POST /_emulator/rotate-key``: sign webhooks with a new key from now on; the previous key
  stays in the JWKS until the next rotation.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from emulators.fal.emulator import FalEmulator


def admin_router(emulator: FalEmulator) -> APIRouter:
    """The ``/_emulator`` routes, bound to ``emulator``."""
    router = APIRouter(prefix="/_emulator")

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        return dataclasses.asdict(emulator.store.stats)

    @router.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return [request.summary() for request in emulator.store.all()]

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

    @router.post("/rotate-key")
    async def rotate_key() -> dict[str, Any]:
        key = emulator.keys.rotate()
        return {"kid": key.kid, "jwks": emulator.keys.jwks()}

    return router
