"""Provider status, health, readiness and metrics."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from worker.api.deps import Authorized, container
from worker.api.schemas.common import ERROR_RESPONSES
from worker.metrics import observe_database
from worker.wiring import Container

log = logging.getLogger("editq.api")
router = APIRouter()
ContainerDep = Annotated[Container, Depends(container)]


@router.get(
    "/v1/providers",
    tags=["providers"],
    dependencies=[Authorized],
    responses={401: ERROR_RESPONSES[401]},
)
def providers(deps: ContainerDep) -> list[dict[str, Any]]:
    """Each provider's breaker, jobs in flight, learned limit (within its capacity), median
    seconds per job lately, and submit rate."""
    return [dataclasses.asdict(s) for s in deps.provider_status("api")]


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    responses={
        200: {
            "description": "the database, broker and storage all answer; `scheduler` says "
            "which scheduler leads (null: none) and lists every one running",
        },
        503: {
            "description": "something does not answer; `checks` names it",
            "content": {
                "application/json": {
                    "example": {
                        "status": "not_ready",
                        "checks": {"database": "ok", "broker": "error: OperationalError"},
                    }
                }
            },
        },
    },
)
def readyz(deps: ContainerDep) -> JSONResponse:
    """The database, broker and storage all answer."""
    checks: dict[str, Any] = {}
    try:
        with deps.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - readiness reports any failure, it never raises
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        with deps.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001 - as above
        checks["broker"] = f"error: {exc.__class__.__name__}"
    try:
        deps.storage.check()
        checks["storage"] = "ok"
    except Exception as exc:  # noqa: BLE001 - as above
        checks["storage"] = f"error: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if checks["database"] == "ok":
        # Shown, not checked: this API serves producers whether or not a scheduler runs.
        try:
            body["scheduler"] = deps.schedulers("api").as_dict()
        except Exception as exc:  # noqa: BLE001 - as above
            body["scheduler"] = f"error: {exc.__class__.__name__}"
    return JSONResponse(body, 200 if ready else 503)


@router.get("/metrics", tags=["health"])
def metrics(deps: ContainerDep) -> Response:
    """Prometheus metrics: what this process counted (jobs finished, attempts, spend,
    webhooks, callbacks, timings), and what the database holds now (jobs by state, each
    provider's flight, limit and breaker, the queue, batches, callbacks)."""
    jobs = deps.jobs("metrics")
    observe_database(
        jobs.counts(),
        deps.provider_status("metrics"),
        jobs.queue_figures(),
        datetime.now(UTC),
        deps.schedulers("metrics"),
    )
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
