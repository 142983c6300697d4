"""The fal emulator as an ASGI app: fal's queue endpoints, its JWKS, output files and admin.

fal's endpoints, as on ``queue.fal.run``:

* ``POST /{owner}/{app}/{path}`` submits (query ``fal_webhook``, ``fal_max_queue_length``);
* ``GET /{owner}/{app}/requests/{id}/status`` (``?logs=1``), ``GET .../requests/{id}`` and
  ``PUT .../requests/{id}/cancel`` follow a request; these URLs drop the endpoint's subpath,
  and asking with the subpath left in answers 404, as fal does;
* ``GET /.well-known/jwks.json`` publishes the webhook signing keys;
* ``GET /files/{token}`` serves output images until they expire (then 410).

The admin endpoints under ``/_emulator`` are the emulator's own (see :mod:`emulators.fal.admin`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse

from emulators.asgi import emulator_app
from emulators.fal.admin import admin_router
from emulators.fal.config import FalEmulatorConfig
from emulators.fal.emulator import FalEmulator, Reply, RequestRejectedError

Authorization = Annotated[str | None, Header()]


def create_app(config: FalEmulatorConfig) -> FastAPI:
    """Build a fal emulator app; it starts its background machinery in its lifespan."""
    emulator = FalEmulator(config)
    app = emulator_app("fal.ai emulator", emulator, admin_router(emulator))
    app.add_exception_handler(RequestRejectedError, _rejected)
    _add_public_routes(app, emulator)
    _add_queue_routes(app, emulator)
    return app


def _add_public_routes(app: FastAPI, emulator: FalEmulator) -> None:
    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(emulator.keys.jwks())

    @app.get("/files/{token}")
    async def output_file(token: str) -> Response:
        stored = emulator.store.file(token)
        if stored is not None:
            return Response(stored.data, media_type=stored.content_type)
        if emulator.store.file_expired(token):
            return JSONResponse({"detail": "File has expired"}, status_code=410)
        return JSONResponse({"detail": "File not found"}, status_code=404)


def _add_queue_routes(app: FastAPI, emulator: FalEmulator) -> None:
    @app.get("/{owner}/{app_name}/requests/{request_id}/status")
    async def status(
        owner: str,
        app_name: str,
        request_id: str,
        request: Request,
        authorization: Authorization = None,
    ) -> JSONResponse:
        emulator.check_key(authorization)
        found = emulator.store.find(owner, app_name, request_id)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        with_logs = request.query_params.get("logs", "").lower() in {"1", "true"}
        return _reply(emulator.status(found, with_logs=with_logs), request_id)

    @app.get("/{owner}/{app_name}/requests/{request_id}")
    async def result(
        owner: str, app_name: str, request_id: str, authorization: Authorization = None
    ) -> JSONResponse:
        emulator.check_key(authorization)
        found = emulator.store.find(owner, app_name, request_id)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        return _reply(emulator.result(found), request_id)

    @app.put("/{owner}/{app_name}/requests/{request_id}/cancel")
    async def cancel(
        owner: str, app_name: str, request_id: str, authorization: Authorization = None
    ) -> JSONResponse:
        emulator.check_key(authorization)
        return _reply(emulator.cancel(emulator.store.find(owner, app_name, request_id)))

    @app.post("/{owner}/{app_name}")
    @app.post("/{owner}/{app_name}/{path:path}")
    async def submit(
        owner: str,
        app_name: str,
        request: Request,
        authorization: Authorization = None,
        path: str = "",
    ) -> JSONResponse:
        endpoint = "/".join(part for part in (owner, app_name, path.strip("/")) if part)
        accepted = emulator.submit(
            authorization,
            owner,
            app_name,
            endpoint,
            body=await request.body(),
            query=request.query_params,
            base_url=_base_url(emulator, request),
        )
        body = {
            "request_id": accepted.request_id,
            "response_url": accepted.queue_url,
            "status_url": f"{accepted.queue_url}/status",
            "cancel_url": f"{accepted.queue_url}/cancel",
            "status": "IN_QUEUE",
            "queue_position": emulator.queue_position(accepted),
        }
        return _reply((200, body), accepted.request_id)

    @app.api_route("/{owner}/{app_name}/{path:path}", methods=["GET", "PUT"])
    async def unknown(owner: str, app_name: str, path: str) -> JSONResponse:
        # Without this, a status URL built with the subpath left in would match the submit
        # route and answer 405; fal answers 404, and clients need to see the same.
        return JSONResponse({"detail": "Not Found"}, status_code=404)


def _reply(reply: Reply, request_id: str | None = None) -> JSONResponse:
    status_code, body = reply
    headers = {"x-fal-request-id": request_id} if request_id else None
    return JSONResponse(body, status_code=status_code, headers=headers)


def _base_url(emulator: FalEmulator, request: Request) -> str:
    return (emulator.config.public_base_url or str(request.base_url)).rstrip("/")


async def _rejected(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestRejectedError)  # registered for RequestRejectedError only
    return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)
