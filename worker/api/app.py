"""The FastAPI application: producer API, provider webhooks, health and metrics."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.api import errors
from worker.api.auth import KeyRing
from worker.api.routes import batches, jobs, system, webhooks
from worker.console import app as console
from worker.wiring import Container


def create_app(container: Container) -> FastAPI:
    """Build the app around an already built container."""
    app = FastAPI(
        title="editq",
        summary="Asynchronous AI image edits: FLUX.1 Kontext jobs, PostgreSQL state, S3 outputs.",
        version="0.1.0",
        # Operation ids are the route functions' names (create_job, list_batches, ...), so
        # a client generated from the document reads well.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.container = container
    app.state.keys = KeyRing(k.get_secret_value() for k in container.settings.api_keys)
    errors.install(app)
    app.add_middleware(
        BoundedBody,
        limit=container.settings.max_request_bytes,
        batch_limit=container.settings.batch_max_bytes,
    )
    for routes in (jobs, batches, webhooks, system):
        app.include_router(routes.router)
    console.install(app, container)
    return app


class BoundedBody:
    """Refuses a body larger than its bound from its declared length, before reading it.

    A data-URI image is the largest input of a job. A batch file has its own, larger
    bound, also counted as it streams in. Plain ASGI rather than ``@app.middleware``:
    that wrapper runs every request in a task of its own behind a stream, which cost the
    webhook path more than the check itself.
    """

    def __init__(self, app: ASGIApp, *, limit: int, batch_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.batch_limit = batch_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        if scope["path"] == "/v1/batches" and scope["method"] == "POST":
            bound, setting = self.batch_limit, "EDITQ_BATCH_MAX_BYTES"
        else:
            bound, setting = self.limit, "EDITQ_MAX_REQUEST_BYTES"
        declared = Headers(scope=scope).get("content-length", "0")
        if declared.isascii() and declared.isdigit() and int(declared) > bound:
            message = f"request body is larger than {bound} bytes ({setting})"
            return JSONResponse(errors.error_body("body_too_large", message), status_code=413)
        return None
