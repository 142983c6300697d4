"""Response bodies of ``/v1/jobs``: a job with its steps, attempts, outputs, history and
callbacks, as producers and ops see it (the OpenAPI document is generated from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.state import JobState
from worker.storage.base import Storage
from worker.values import chain
from worker.values.callback_events import CallbackRecord, CallbackState
from worker.values.pricing import list_price
from worker.values.records import AttemptRecord, JobDetail, JobRecord, OutputRecord


class ErrorOut(BaseModel):
    """Why a job failed (or why its last attempt did); ``step`` is the chain's step."""

    code: str
    message: str | None
    step: int | None = None


class QualityOut(BaseModel):
    """An output's quality checks (``pass``, ``fail``, ``skipped``), flags and scores.

    ``failed`` names the check that failed (None: every check passed). ``flags`` are kept
    even when the job succeeded: ``subject_lost``, ``moderated``, or a failed check that
    the job's policy accepted. ``scores``: ``distance`` to the source (perceptual hash,
    0-1), ``color_difference`` (0-1), ``stddev`` and ``mean`` of the pixels (0-255),
    ``width``, ``height``, ``format`` and the ``expected`` shape.
    """

    passed: bool
    failed: str | None
    checks: dict[str, str]
    flags: list[str]
    scores: dict[str, Any]


class OutputOut(BaseModel):
    """One output in our bucket, with a presigned GET URL."""

    key: str
    url: str
    content_type: str
    width: int | None
    height: int | None
    bytes: int
    sha256: str
    #: None when the gate was off for this output.
    quality: QualityOut | None = None


class AttemptOut(BaseModel):
    """One provider call; ``id`` is the attempt id the provider sees (in its webhook URL)."""

    id: str
    number: int
    provider: str
    outcome: str
    request_id: str | None
    error: ErrorOut | None
    cost_usd: float | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    #: The quality gate's report on each of this attempt's outputs, with the bucket key it
    #: is kept under (a rejected output stays under ``outputs/{job}/rejected/``).
    quality: list[dict[str, Any]] | None = None
    #: The step of the job's chain this attempt was for.
    step: int = 1
    #: The list price of what the attempt made; ``cost_usd`` is what the provider reported
    #: it charged when it says (``cost_reported``), and the list price otherwise.
    list_price_usd: float | None = None
    cost_reported: bool = False


class EventOut(BaseModel):
    """One line of a job's history."""

    at: datetime
    transition: str
    state: str
    attempt: int
    actor: str | None
    reason: str | None


class CallbackOut(BaseModel):
    """One event sent to the job's ``callback_url``; ``webhook_id`` is its ``webhook-id``."""

    id: str
    webhook_id: str
    event: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


def callback_out(c: CallbackRecord) -> CallbackOut:
    """A callback's delivery state (``next_attempt_at`` only while it is pending)."""
    return CallbackOut(
        id=str(c.id),
        webhook_id=c.webhook_id,
        event=c.event,
        state=c.state.value,
        attempts=c.attempts,
        last_status=c.last_status,
        last_error=c.last_error,
        next_attempt_at=c.next_attempt_at if c.state is CallbackState.PENDING else None,
        created_at=c.created_at,
        delivered_at=c.delivered_at,
    )


class StepOut(BaseModel):
    """One step of a job's chain: what it asks, where it is, what it cost and made.

    ``state`` is the job's while the job is on this step, ``succeeded`` for the steps before
    and ``pending`` for those after. ``attempts`` and ``outputs`` come with one job, not
    in lists.
    """

    step: int
    prompt: str
    #: Which output of the step before this step edits (None for the first step).
    use_output: int | None
    #: The providers this step may run on, in order (empty for the first step once the job
    #: has moved past it: its attempts say where it ran).
    providers: list[str]
    state: str
    #: The provider of the step's last attempt.
    provider: str | None
    cost_usd: float
    attempts: list[AttemptOut] = Field(default_factory=list)
    outputs: list[OutputOut] = Field(default_factory=list)


class JobOut(BaseModel):
    """A job as producers and ops see it."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    state: str
    model: str
    input: dict[str, Any]
    providers: list[str]
    provider: str | None
    attempt: int
    max_attempts: int
    priority: int
    external_id: str | None
    batch_id: str | None
    callback_url: str | None
    metadata: dict[str, Any]
    #: Providers left out of this job's routing, and why (a field they cannot honour).
    excluded_providers: dict[str, str]
    #: The job's own quality policy; None: its batch's, or the settings' default.
    quality: dict[str, Any] | None = None
    #: How the job's providers share it: spread, failover or cheapest.
    routing: str = "spread"
    #: The step the job is on, from 1; a failed chain stays on the step that failed.
    step: int = 1
    #: Every step of the job's chain (one, for a job without ``steps``).
    steps: list[StepOut] = Field(default_factory=list)
    attempts: list[AttemptOut] = Field(default_factory=list)
    #: The outputs of the chain's last step: the job's result.
    outputs: list[OutputOut] = Field(default_factory=list)
    events: list[EventOut] | None = None
    #: The job's producer callbacks and how their delivery went (one job only, not lists).
    callbacks: list[CallbackOut] | None = None
    error: ErrorOut | None
    cost_usd: float
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class RetryReportOut(BaseModel):
    """How many jobs matched, how many were retried (none on a dry run), and a sample."""

    matched: int
    retried: int
    dry_run: bool
    sample: list[JobOut]


class JobPage(BaseModel):
    """A page of jobs, newest first."""

    jobs: list[JobOut]
    next_cursor: str | None


def _error(code: str | None, message: str | None, step: int | None = None) -> ErrorOut | None:
    return ErrorOut(code=code, message=message, step=step) if code else None


def _step_state(job: JobRecord, step: int) -> str:
    if step < job.step:
        return JobState.SUCCEEDED.value
    if step > job.step:
        return "pending"
    return job.state.value


def _steps_out(job: JobRecord) -> list[StepOut]:
    """Each step of the job's chain, without its attempts and outputs."""
    first = list(job.providers) if job.step == 1 else []
    return [
        StepOut(
            step=step,
            prompt=chain.prompt_of(job, step),
            use_output=None if step == 1 else chain.source_output(job.steps, step),
            providers=first if step == 1 else list(chain.providers_of(job.steps, step)),
            state=_step_state(job, step),
            provider=job.provider if step == job.step else None,
            cost_usd=0.0,
        )
        for step in range(1, job.length + 1)
    ]


def job_out(job: JobRecord) -> JobOut:
    """A job without its attempts and outputs (list views)."""
    return JobOut(
        id=str(job.id),
        state=job.state.value,
        model=job.model,
        input=job.input,
        providers=list(job.providers),
        provider=job.provider,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        priority=job.priority,
        external_id=job.external_id,
        batch_id=str(job.batch_id) if job.batch_id else None,
        callback_url=job.callback_url,
        metadata=job.metadata,
        excluded_providers=job.excluded_providers,
        quality=job.quality,
        routing=job.routing,
        step=job.step,
        steps=_steps_out(job),
        error=_error(job.error_code, job.error_message, job.step),
        cost_usd=float(job.cost_usd),
        created_at=job.created_at,
        updated_at=job.updated_at,
        completed_at=job.completed_at,
    )


def _attempt_out(a: AttemptRecord, model: str) -> AttemptOut:
    outputs = (a.result or {}).get("outputs")
    made = len(outputs) if isinstance(outputs, list) else None
    return AttemptOut(
        id=str(a.id),
        number=a.number,
        provider=a.provider,
        outcome=a.outcome,
        request_id=a.request_id,
        error=_error(a.error_code, a.error_message),
        cost_usd=None if a.cost_usd is None else float(a.cost_usd),
        created_at=a.created_at,
        submitted_at=a.submitted_at,
        finished_at=a.finished_at,
        quality=a.quality,
        step=a.step,
        list_price_usd=None if made is None else float(list_price(a.provider, model, made)),
        cost_reported=(a.result or {}).get("cost_usd") is not None,
    )


def detail_out(
    detail: JobDetail, storage: Storage, url_seconds: int, *, with_events: bool = False
) -> JobOut:
    """A job with attempts and outputs; each output carries a fresh presigned GET URL."""
    job = detail.job
    out = job_out(job)
    out.attempts = [_attempt_out(a, job.model) for a in detail.attempts]
    outputs = [(o.step, _output_out(o, storage, url_seconds)) for o in detail.outputs]
    out.outputs = [o for step, o in outputs if step == job.length]
    for step in out.steps:
        step.attempts = [a for a in out.attempts if a.step == step.step]
        step.outputs = [o for number, o in outputs if number == step.step]
        step.cost_usd = sum(a.cost_usd or 0.0 for a in step.attempts)
        if step.attempts:
            step.provider = step.attempts[-1].provider
    if with_events:
        out.events = [
            EventOut(
                at=e.at,
                transition=e.transition,
                state=e.state.value,
                attempt=e.attempt,
                actor=e.actor,
                reason=e.reason,
            )
            for e in detail.events
        ]
    return out


def _output_out(o: OutputRecord, storage: Storage, url_seconds: int) -> OutputOut:
    return OutputOut(
        key=o.key,
        url=storage.presign_get(o.key, url_seconds),
        content_type=o.content_type,
        width=o.width,
        height=o.height,
        bytes=o.bytes,
        sha256=o.sha256,
        quality=None if o.quality is None else QualityOut.model_validate(o.quality),
    )
