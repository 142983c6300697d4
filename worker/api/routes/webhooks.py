"""``/v1/webhooks/{provider}``: provider callbacks, verified on the raw body, then applied."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from worker.api.deps import container
from worker.api.errors import error_body
from worker.api.schemas.common import ERROR_RESPONSES
from worker.errors import WebhookRejected
from worker.metrics import WEBHOOKS
from worker.wiring import Container

log = logging.getLogger("editq.api")
router = APIRouter()
ContainerDep = Annotated[Container, Depends(container)]

#: Largest webhook body accepted; a provider's result JSON is a few KB.
MAX_WEBHOOK_BYTES = 1024 * 1024


@router.post(
    "/v1/webhooks/{provider}",
    tags=["webhooks"],
    responses={k: ERROR_RESPONSES[k] for k in (401, 404, 413)},
)
async def provider_webhook(provider: str, request: Request, deps: ContainerDep) -> JSONResponse:
    """A provider callback: verified on the raw body, de-duplicated, applied like a poll."""
    body = await request.body()
    if len(body) > MAX_WEBHOOK_BYTES:
        return JSONResponse(error_body("body_too_large", "webhook body too large"), 413)
    try:
        result = await run_in_threadpool(
            deps.pipeline("webhook").webhook,
            provider,
            dict(request.headers),
            body,
            dict(request.query_params),
        )
    except WebhookRejected as exc:
        WEBHOOKS.labels(provider, "rejected").inc()
        log.warning("webhook from %s rejected: %s", provider, exc.message)
        return JSONResponse(error_body(exc.code, exc.message), 401)
    WEBHOOKS.labels(provider, result).inc()
    return JSONResponse({"status": "ok", "result": result})
