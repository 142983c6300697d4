"""fal's emulator: the shared ``/_emulator`` routes (see :mod:`emulators.admin`) plus
``POST /_emulator/rotate-key``, which signs webhooks with a new key from now on; the
previous key stays in the JWKS until the next rotation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from emulators import admin
from emulators.fal.emulator import FalEmulator


def admin_router(emulator: FalEmulator) -> APIRouter:
    """The shared ``/_emulator`` routes plus fal's key rotation, bound to ``emulator``."""
    router = admin.admin_router(emulator)

    @router.post("/rotate-key")
    async def rotate_key() -> dict[str, Any]:
        key = emulator.keys.rotate()
        return {"kid": key.kid, "jwks": emulator.keys.jwks()}

    return router
