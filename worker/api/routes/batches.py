"""``/v1/batches``: submit a catalog file (CSV or JSONL), follow it, cancel it, get its results."""

from __future__ import annotations

import tempfile
import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from worker.api.deps import Authorized, container
from worker.api.schemas.batches import (
    BatchOut,
    BatchPage,
    BatchSubmittedOut,
    ResultFilesOut,
    batch_out,
    files_out,
    reject_out,
)
from worker.api.schemas.common import ERROR_RESPONSES, ActionRequest
from worker.errors import BatchTooLarge
from worker.usecases.batch_ingest import BatchOptions
from worker.usecases.batches import Batches
from worker.values.batch_file import format_of
from worker.values.canonical import ModelName, ProviderName
from worker.values.quality_policy import DEFAULT_MAX_RETRIES, OnFailure, QualityPolicy
from worker.values.routing import Routing
from worker.values.storable import StorableText
from worker.wiring import Container

router = APIRouter(
    prefix="/v1/batches", tags=["batches"], dependencies=[Authorized], responses=ERROR_RESPONSES
)

#: A batch file is held in memory up to this size, then on disk, while it is received.
_SPOOL_BYTES = 8 << 20
_FILE_BODY = {
    "required": True,
    "description": (
        "The batch file: one row per job with `external_id`, `image_url`, `prompt` and any "
        "optional canonical parameter (`aspect_ratio`, `num_images`, `guidance_scale`, `seed`, "
        "`output_format`, `safety_tolerance`, `enhance_prompt`) and per-row `model`, "
        "`priority`, `callback_url`: as CSV columns (a header row first) or JSONL keys."
    ),
    "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


def batches(request: Request) -> Batches:
    """Batch use cases, acting as ``api``."""
    return container(request).batches("api")


BatchesDep = Annotated[Batches, Depends(batches)]
ContainerDep = Annotated[Container, Depends(container)]


@router.post(
    "",
    status_code=201,
    response_model=BatchSubmittedOut,
    openapi_extra={"requestBody": _FILE_BODY},
    responses={415: ERROR_RESPONSES[422] | {"description": "not CSV or JSONL"}},
)
async def create_batch(
    request: Request,
    response: Response,
    use: BatchesDep,
    deps: ContainerDep,
    model: Annotated[ModelName, Query()] = "flux-kontext-pro",
    providers: Annotated[list[ProviderName] | None, Query(max_length=3)] = None,
    priority: Annotated[int, Query(ge=-100, le=100)] = 0,
    callback_url: Annotated[
        StorableText | None, Query(max_length=2048, pattern=r"^https?://\S+$")
    ] = None,
    budget_usd: Annotated[Decimal | None, Query(gt=0, max_digits=12, decimal_places=4)] = None,
    strict: Annotated[bool, Query(description="refuse the whole file if a row is bad")] = False,
    quality_on_failure: Annotated[
        OnFailure | None,
        Query(description="what a failed quality check does to the rows' jobs"),
    ] = None,
    quality_max_retries: Annotated[int, Query(ge=0, le=10)] = DEFAULT_MAX_RETRIES,
    routing: Annotated[
        Routing | None,
        Query(description="how the rows' providers share them (default EDITQ_ROUTING)"),
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> BatchSubmittedOut:
    """Queue a job for each good row of a CSV or JSONL file; each bad row is reported.

    Bad rows are listed with their line, field and rule (the first 100 here, every one in
    the batch's ``errors.jsonl``); good rows go ahead. With ``strict=true`` one bad row
    refuses the whole file and nothing is written. The same ``Idempotency-Key``, file and
    options give back the same batch.
    """
    fmt = format_of(request.headers.get("content-type") or "unset")
    options = BatchOptions(
        model=model,
        providers=tuple(dict.fromkeys(providers or ())),
        priority=priority,
        callback_url=callback_url,
        budget_usd=budget_usd,
        quality=(
            None
            if quality_on_failure is None
            else QualityPolicy(quality_on_failure, quality_max_retries)
        ),
        routing=routing,
        strict=strict,
    )
    limit = deps.settings.batch_max_bytes
    with tempfile.SpooledTemporaryFile(_SPOOL_BYTES) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BatchTooLarge(
                    f"the file is larger than {limit} bytes (EDITQ_BATCH_MAX_BYTES); split it"
                )
            spool.write(chunk)
        spool.seek(0)
        submitted = await run_in_threadpool(use.submit, spool, fmt, options, idempotency_key)
    if not submitted.created:
        response.status_code = 200
    status = await run_in_threadpool(use.status, submitted.batch.id)
    return BatchSubmittedOut(
        **batch_out(status).model_dump(),
        rejected_rows=[reject_out(r) for r in submitted.rejects],
    )


@router.get("", response_model=BatchPage)
def list_batches(use: BatchesDep, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> BatchPage:
    """The newest batches with their progress."""
    return BatchPage(batches=[batch_out(use.status(b.id)) for b in use.recent(limit)])


@router.get("/{batch_id}", response_model=BatchOut)
def get_batch(batch_id: uuid.UUID, use: BatchesDep) -> BatchOut:
    """Counts by state, cost so far, rate over the last minute, ETA, and budget."""
    return batch_out(use.status(batch_id))


@router.post("/{batch_id}/cancel", response_model=BatchOut)
def cancel_batch(
    batch_id: uuid.UUID,
    use: BatchesDep,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> BatchOut:
    """Cancel every unfinished job of a running batch; its result files follow."""
    return batch_out(use.cancel(batch_id, body.reason if body else None))


@router.get("/{batch_id}/results", response_model=ResultFilesOut)
def batch_results(batch_id: uuid.UUID, use: BatchesDep) -> ResultFilesOut:
    """Presigned URLs of ``results.jsonl`` and ``errors.jsonl`` (409 until the batch ends)."""
    return files_out(use.results(batch_id))
