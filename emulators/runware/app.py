"""The Runware emulator as an ASGI app: Runware's task endpoint, output files and admin.

Runware's endpoints, as on ``api.runware.ai``:

* ``POST /v1`` takes a JSON array of tasks (``imageInference``, ``getResponse``,
  ``authentication``, ``ping``) and answers ``{"data": [...], "errors": [...]}``;
* ``GET /image/ws/2/ii/{name}`` serves output images until they expire (then 410).

The admin endpoints under ``/_emulator`` are the emulator's own (see
:mod:`emulators.runware.admin`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse

from emulators.admin import admin_router
from emulators.asgi import emulator_app
from emulators.runware.config import RunwareEmulatorConfig
from emulators.runware.emulator import RunwareEmulator
from emulators.runware.runner import IMAGE_PATH


def create_app(config: RunwareEmulatorConfig) -> FastAPI:
    """Build a Runware emulator app; it starts its background machinery in its lifespan."""
    emulator = RunwareEmulator(config)
    app = emulator_app("Runware emulator", emulator, admin_router(emulator))

    @app.post("/v1")
    async def tasks(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        base_url = (config.public_base_url or str(request.base_url)).rstrip("/")
        status, body, headers = await emulator.handle(authorization, await request.body(), base_url)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.get(IMAGE_PATH + "/{name}")
    async def image(name: str) -> Response:
        stored = emulator.store.file(name)
        if stored is not None:
            return Response(stored.data, media_type=stored.content_type)
        if emulator.store.file_expired(name):
            return JSONResponse({"detail": "Image has expired"}, status_code=410)
        return JSONResponse({"detail": "Image not found"}, status_code=404)

    return app
