"""Every emulator's own endpoints under ``/_emulator`` (not the provider's).

* ``GET /_emulator/stats``: the emulator's counters (accepted, rejected, completed, failed,
  webhooks sent, failed and dropped, and whatever else it counts);
* ``GET /_emulator/requests``: every accepted submission, oldest first, so a test can prove
  nothing was submitted (and paid for) twice;
* ``GET /_emulator/config`` and ``PATCH /_emulator/config``: read or change latency,
  concurrency, fault rates and webhook behaviour while running (flat keys, see
  :data:`emulators.faults.PATCHABLE_KEYS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from emulators.faults import FaultConfig


class _Summarised(Protocol):
    def summary(self) -> dict[str, Any]: ...


class _Store(Protocol):
    @property
    def stats(self) -> Any: ...

    def all(self) -> Iterable[_Summarised]: ...


class _Injector(Protocol):
    @property
    def config(self) -> FaultConfig: ...


class Emulator(Protocol):
    """What the admin routes need of an emulator."""

    @property
    def store(self) -> _Store: ...

    @property
    def injector(self) -> _Injector: ...

    def update_faults(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Apply changed fault settings; ValueError for a bad key or value."""
        ...


def _detail(message: str) -> dict[str, Any]:
    return {"detail": message}


def admin_router(
    emulator: Emulator, refusal: Callable[[str], dict[str, Any]] = _detail
) -> APIRouter:
    """The ``/_emulator`` routes, bound to ``emulator``; ``refusal`` shapes a 422 body."""
    router = APIRouter(prefix="/_emulator")

    @router.get("/stats")
    async def stats() -> dict[str, int]:
        counts: dict[str, int] = dataclasses.asdict(emulator.store.stats)
        return counts

    @router.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return [item.summary() for item in emulator.store.all()]

    @router.get("/config")
    async def read_config() -> dict[str, Any]:
        return dataclasses.asdict(emulator.injector.config)

    @router.patch("/config")
    async def update_config(changes: Annotated[dict[str, Any], Body()]) -> JSONResponse:
        try:
            updated = emulator.update_faults(changes)
        except ValueError as exc:
            return JSONResponse(refusal(str(exc)), status_code=422)
        return JSONResponse(dataclasses.asdict(updated))

    return router
