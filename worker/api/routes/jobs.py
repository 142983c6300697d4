"""``/v1/jobs``: create, read, list, cancel and retry edit jobs."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from fastapi.exceptions import RequestValidationError

from models.state import JobState
from worker.api.deps import Authorized, container, jobs
from worker.api.schemas.common import ERROR_RESPONSES, ActionRequest
from worker.api.schemas.job_out import (
    JobOut,
    JobPage,
    RetryReportOut,
    callback_out,
    detail_out,
    job_out,
)
from worker.api.schemas.jobs import JobCreate, RetryFilter
from worker.usecases.jobs import Jobs
from worker.values.callback_events import CallbackFilter
from worker.values.records import Cursor, JobFilter
from worker.values.storable import StorableText
from worker.wiring import Container

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=[Authorized], responses=ERROR_RESPONSES
)

JobsDep = Annotated[Jobs, Depends(jobs)]
ContainerDep = Annotated[Container, Depends(container)]


@router.post("", status_code=201, response_model=JobOut)
def create_job(
    body: JobCreate,
    response: Response,
    use: JobsDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobOut:
    """Queue one edit job. The same ``Idempotency-Key`` and body give back the same job."""
    job, created = use.create(body.to_request(), idempotency_key)
    if not created:
        response.status_code = 200
    return job_out(job)


@router.post("/retry", response_model=RetryReportOut)
def retry_jobs(body: RetryFilter, use: JobsDep) -> RetryReportOut:
    """Retry every failed or canceled job matching a filter; ``dry_run`` only counts them."""
    where = JobFilter(
        states=tuple(JobState(s) for s in body.state),
        batch_id=body.batch_id,
        provider=body.provider,
        error_code=body.error_code,
        since=body.since,
        until=body.until,
    )
    report = use.retry_matching(where, body.reason, dry_run=body.dry_run)
    return RetryReportOut(
        matched=report.matched,
        retried=report.retried,
        dry_run=report.dry_run,
        sample=[job_out(j) for j in report.sample],
    )


@router.get("/{job_id}", response_model=JobOut)
def get_job(
    job_id: uuid.UUID,
    use: JobsDep,
    deps: ContainerDep,
    events: Annotated[bool, Query(description="include the job's history")] = False,
) -> JobOut:
    """A job with its attempts, outputs (each with a presigned GET URL) and callbacks."""
    detail = use.get(job_id)
    out = detail_out(detail, deps.storage, deps.settings.presign_get_seconds, with_events=events)
    sent = deps.callbacks("api").list(CallbackFilter(job_id=job_id), limit=100)
    out.callbacks = [callback_out(c) for c in reversed(sent)]
    return out


@router.get("", response_model=JobPage)
def list_jobs(
    use: JobsDep,
    state: Annotated[list[JobState] | None, Query()] = None,
    batch_id: Annotated[uuid.UUID | None, Query()] = None,
    provider: Annotated[StorableText | None, Query(max_length=64)] = None,
    error_code: Annotated[StorableText | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobPage:
    """Jobs newest first, filtered; follow ``next_cursor`` for the next page."""
    where = JobFilter(
        states=tuple(state or ()),
        batch_id=batch_id,
        provider=provider,
        error_code=error_code,
        since=since,
        until=until,
    )
    page, after = use.list(where, limit, decode_cursor(cursor) if cursor else None)
    return JobPage(jobs=[job_out(j) for j in page], next_cursor=encode_cursor(after))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(
    job_id: uuid.UUID,
    use: JobsDep,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> JobOut:
    """Cancel a job that has not finished; the provider is asked to stop, best effort."""
    return job_out(use.cancel(job_id, body.reason if body else None))


@router.post("/{job_id}/retry", response_model=JobOut)
def retry_job(
    job_id: uuid.UUID,
    use: JobsDep,
    body: Annotated[ActionRequest | None, Body()] = None,
) -> JobOut:
    """Send a failed or canceled job round again with a fresh attempt budget."""
    return job_out(use.retry(job_id, body.reason if body else None))


def encode_cursor(cursor: Cursor | None) -> str | None:
    """An opaque page cursor."""
    if cursor is None:
        return None
    raw = json.dumps({"t": cursor.created_at.isoformat(), "id": str(cursor.id)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    """The cursor behind an opaque value; a 422 naming ``cursor`` when it is not one."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        return Cursor(datetime.fromisoformat(raw["t"]), uuid.UUID(raw["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "cursor"),
                    "type": "cursor_invalid",
                    "msg": "not a cursor returned by this API",
                }
            ]
        ) from exc
