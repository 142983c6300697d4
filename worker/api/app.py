"""The FastAPI application: producer API, provider webhooks, health and metrics."""

from __future__ import annotations

from fastapi import FastAPI

from worker.api import errors, routes_jobs, routes_system
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
    app.include_router(routes_jobs.router)
    app.include_router(routes_system.router)
    return app
