"""The Runflow emulator as an ASGI app: Runflow's run endpoints, output files and admin.

Runflow's endpoints, as on ``api.runflow.io`` (every one needs ``Authorization: Bearer``):

* ``POST /v1/models/black-forest-labs/flux-pro/kontext/runs`` creates a run and answers 201
  with the run object (Runflow does not document 200 or 201; clients accept any 2xx); other
  model ids answer 404 ``MODEL_NOT_FOUND``;
* ``GET /v1/runs/{id}`` reads a run; ``GET /v1/runs/{id}/callback`` lists its callback
  deliveries and their attempts; ``POST /v1/runs/{id}/callback-redeliveries`` sends a new one;
* ``POST /v1/callback-secrets`` issues a new signing secret (``plain_secret``, shown once).

Output files are served, without a key, at the signed URLs in ``output.image_urls``
(:mod:`emulators.runflow.files`). The admin endpoints under ``/_emulator`` are the
emulator's own (:mod:`emulators.runflow.admin`). Every error is Runflow's envelope
``{"code", "message", "errors"}``, unknown routes included.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from emulators.admin import admin_router
from emulators.asgi import emulator_app
from emulators.runflow.config import RunflowEmulatorConfig
from emulators.runflow.emulator import RequestRejectedError, RunflowEmulator
from emulators.runflow.files import STORAGE_PREFIX, Refusal
from emulators.runflow.protocol import MODEL_ID, error_body

Authorization = Annotated[str | None, Header()]


def create_app(config: RunflowEmulatorConfig) -> FastAPI:
    """Build a Runflow emulator app; it starts its background machinery in its lifespan."""
    emulator = RunflowEmulator(config)
    app = emulator_app(
        "Runflow emulator",
        emulator,
        admin_router(emulator, lambda message: error_body("VALIDATION_ERROR", message)),
    )
    app.add_exception_handler(RequestRejectedError, _rejected)
    app.add_exception_handler(HTTPException, _http_error)
    _add_run_routes(app, emulator)
    _add_callback_routes(app, emulator)
    _add_file_route(app, emulator)
    return app


def _add_run_routes(app: FastAPI, emulator: RunflowEmulator) -> None:
    @app.post(f"/v1/models/{MODEL_ID}/runs")
    async def create_run(request: Request, authorization: Authorization = None) -> JSONResponse:
        base_url = (emulator.config.public_base_url or str(request.base_url)).rstrip("/")
        run = emulator.create_run(authorization, await request.body(), base_url)
        return JSONResponse(run.wire(), status_code=201)

    @app.post("/v1/models/{model_id:path}/runs")
    async def unknown_model(model_id: str, authorization: Authorization = None) -> JSONResponse:
        emulator.check_key(authorization)
        body = error_body("MODEL_NOT_FOUND", f"Model {model_id[:128]} not found")
        return JSONResponse(body, status_code=404)

    @app.get("/v1/runs/{run_id}")
    async def read_run(run_id: str, authorization: Authorization = None) -> JSONResponse:
        return JSONResponse(emulator.run_object(emulator.find_run(authorization, run_id)))


def _add_callback_routes(app: FastAPI, emulator: RunflowEmulator) -> None:
    @app.get("/v1/runs/{run_id}/callback")
    async def callback_history(run_id: str, authorization: Authorization = None) -> JSONResponse:
        run = emulator.find_run(authorization, run_id)
        return JSONResponse([delivery.wire() for delivery in run.deliveries])

    @app.post("/v1/runs/{run_id}/callback-redeliveries")
    async def redeliver(run_id: str, authorization: Authorization = None) -> JSONResponse:
        return JSONResponse(emulator.redeliver(authorization, run_id).wire(), status_code=201)

    @app.post("/v1/callback-secrets")
    async def create_secret(request: Request, authorization: Authorization = None) -> JSONResponse:
        issued = emulator.rotate_secret(authorization, _label(await request.body()))
        return JSONResponse(issued.wire(is_current=True, with_plain=True), status_code=201)


def _add_file_route(app: FastAPI, emulator: RunflowEmulator) -> None:
    @app.get(STORAGE_PREFIX + "/{key:path}")
    async def output_file(key: str, request: Request) -> Response:
        found = emulator.files.get(key, request.query_params)
        if isinstance(found, Refusal):
            return Response(
                found.xml(), status_code=found.status_code, media_type="application/xml"
            )
        return Response(found.data, media_type=found.content_type)


def _label(raw: bytes) -> str | None:
    """The optional ``label`` of a create-secret body (``{"label": "production"}``)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None
    label = body.get("label") if isinstance(body, dict) else None
    return label[:255] if isinstance(label, str) else None


async def _rejected(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRejectedError)  # registered for RequestRejectedError only
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
