"""The FastAPI application: producer API, provider webhooks, health and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from worker.api import errors, routes_batches, routes_jobs, routes_system
from worker.api.auth import KeyRing
from worker.wiring import Container


def create_app(container: Container) -> FastAPI:
    """Build the app around an already built container."""
    app = FastAPI(
        title="editq",
        summary="Asynchronous AI image edits: FLUX.1 Kontext jobs, PostgreSQL state, S3 outputs.",
        version="0.1.0",
    )
    app.state.container = container
    app.state.keys = KeyRing(k.get_secret_value() for k in container.settings.api_keys)
    errors.install(app)
    limit = container.settings.max_request_bytes
    batch_limit = container.settings.batch_max_bytes

    @app.middleware("http")
    async def _bounded_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Refuse an oversized body before reading it; a data-URI image is the largest input
        # of a job. A batch file has its own, larger bound, counted as it streams in.
        declared = request.headers.get("content-length", "0")
        if request.url.path == "/v1/batches" and request.method == "POST":
            bound, setting = batch_limit, "EDITQ_BATCH_MAX_BYTES"
        else:
            bound, setting = limit, "EDITQ_MAX_REQUEST_BYTES"
        if declared.isascii() and declared.isdigit() and int(declared) > bound:
            message = f"request body is larger than {bound} bytes ({setting})"
            return JSONResponse(errors.error_body("body_too_large", message), status_code=413)
        return await call_next(request)

    app.include_router(routes_jobs.router)
    app.include_router(routes_batches.router)
    app.include_router(routes_system.router)
    return app
