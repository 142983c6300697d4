"""Frozen values read from or written to the database; what the core passes around."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from models.state import BatchState, JobState


@dataclass(frozen=True, slots=True)
class NewJob:
    """A validated job about to be inserted."""

    id: uuid.UUID
    model: str
    input: dict[str, Any]
    providers: tuple[str, ...]
    max_attempts: int
    priority: int = 0
    external_id: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Providers left out because they cannot honour a field: provider -> why.
    excluded_providers: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    request_hash: str | None = None
    batch_id: uuid.UUID | None = None
    quality: dict[str, Any] | None = None
    #: The later steps, as :func:`worker.values.chain.stored` keeps them.
    steps: tuple[dict[str, Any], ...] = ()
    #: Callback events besides the terminal ones (``job.step_succeeded``).
    callback_events: tuple[str, ...] = ()
    #: How the providers share it (:mod:`worker.values.routing`).
    routing: str = "spread"


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One output copied into our bucket."""

    index: int
    key: str
    content_type: str
    width: int | None
    height: int | None
    bytes: int
    sha256: str
    #: The quality gate's report (:meth:`worker.values.quality.Report.to_json`); None: off.
    quality: dict[str, Any] | None = None
    #: The step of the job's chain that made it.
    step: int = 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """An attempt whose outputs the quality gate refused: what it cost, what was found.

    The provider did the work, so the attempt is paid for: its cost counts in the job's
    and the batch's spend like a success's.
    """

    cost_usd: Decimal
    #: One report per output, each with the key the output is kept under.
    reports: list[dict[str, Any]]
    #: What the gate read of the source just now, for the job row to keep.
    source_facts: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One provider call."""

    id: uuid.UUID
    job_id: uuid.UUID
    number: int
    provider: str
    outcome: str
    request_id: str | None
    provider_data: dict[str, Any]
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    cost_usd: Decimal | None
    created_at: datetime
    submitted_at: datetime | None
    finished_at: datetime | None
    #: The quality gate's report on each output, with where it is kept.
    quality: list[dict[str, Any]] | None = None
    #: The step of the job's chain it was for.
    step: int = 1


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored."""

    id: uuid.UUID
    state: JobState
    model: str
    input: dict[str, Any]
    providers: tuple[str, ...]
    provider: str | None
    attempt: int
    failed_attempts: int
    max_attempts: int
    priority: int
    external_id: str | None
    batch_id: uuid.UUID | None
    callback_url: str | None
    metadata: dict[str, Any]
    excluded_providers: dict[str, str]
    idempotency_key: str | None
    request_hash: str | None
    run_after: datetime
    error_code: str | None
    error_message: str | None
    cost_usd: Decimal
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    #: The job's own quality policy (``{"on_failure", "max_retries"}``); None: the default.
    quality: dict[str, Any] | None = None
    #: Attempts spent so far on outputs that failed a quality check (in this step).
    quality_retries: int = 0
    #: The step the job is on, from 1; a failed or canceled chain stays on its step.
    step: int = 1
    #: The later steps (:func:`worker.values.chain.stored`); empty for a one-step job.
    steps: tuple[dict[str, Any], ...] = ()
    #: Callback events sent besides the terminal ones (``job.step_succeeded``).
    callback_events: tuple[str, ...] = ()
    #: How the providers share it: ``spread``, ``failover`` or ``cheapest``.
    routing: str = "failover"

    @property
    def length(self) -> int:
        """How many steps the job's chain has."""
        return 1 + len(self.steps)

    @property
    def on_last_step(self) -> bool:
        """Whether the step the job is on is its chain's last."""
        return self.step >= self.length


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One line of a job's history."""

    at: datetime
    transition: str
    state: JobState
    attempt: int
    actor: str | None
    reason: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobDetail:
    """A job with its attempts, outputs and history, as shown to producers and ops."""

    job: JobRecord
    attempts: tuple[AttemptRecord, ...]
    outputs: tuple[OutputRecord, ...]
    events: tuple[EventRecord, ...]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job claimed by dispatch for one attempt."""

    job_id: uuid.UUID
    attempt: int
    attempt_id: uuid.UUID
    provider: str


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list."""

    states: tuple[JobState, ...] = ()
    batch_id: uuid.UUID | None = None
    provider: str | None = None
    error_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    external_id: str | None = None
    #: Jobs whose metadata holds every one of these pairs.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of jobs (newest first) left off."""

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class NewBatch:
    """A batch about to be inserted (its rows follow while the file is read)."""

    id: uuid.UUID
    model: str
    providers: tuple[str, ...]
    priority: int = 0
    callback_url: str | None = None
    budget_usd: Decimal | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    quality: dict[str, Any] | None = None
    #: The rows' routing (None: the settings' default).
    routing: str | None = None


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch as stored."""

    id: uuid.UUID
    state: BatchState
    model: str
    providers: tuple[str, ...]
    priority: int
    callback_url: str | None
    budget_usd: Decimal | None
    budget_exhausted_at: datetime | None
    idempotency_key: str | None
    request_hash: str | None
    rows_total: int
    rows_accepted: int
    rows_rejected: int
    results_key: str | None
    errors_key: str | None
    cancel_requested_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    #: The rows' routing, when the batch named one.
    routing: str | None = None


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch's jobs are: counts by state, money spent, and recent throughput."""

    counts: dict[JobState, int]
    cost_usd: Decimal
    #: Jobs that reached a terminal state within the last ``window_seconds``.
    recent: int
    window_seconds: float
    #: Steps of the batch's jobs (a one-step job counts one), and those done.
    steps_total: int = 0
    steps_done: int = 0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due queued job dispatch may claim, with what its cost estimate needs."""

    job_id: uuid.UUID
    batch_id: uuid.UUID | None
    model: str
    num_images: int


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """A batch's budget and its spend so far plus the estimate of what is in flight."""

    batch_id: uuid.UUID
    budget_usd: Decimal
    committed_usd: Decimal


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What waits, for the operator's gauges: queued jobs, the oldest due, open work."""

    #: Queued jobs by the provider they wait for (due or not).
    queued: dict[str, int]
    #: When the longest-waiting due job became due; None when nothing is due.
    oldest_due: datetime | None
    batches_running: int
    callbacks_pending: int


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A provider's attempts that ended lately: outcomes, and the successes' seconds."""

    succeeded: int
    failed: int
    p50_seconds: float | None
    p90_seconds: float | None

    @property
    def error_rate(self) -> float | None:
        ended = self.succeeded + self.failed
        return None if ended == 0 else self.failed / ended


@dataclass(frozen=True, slots=True)
class HourFigures:
    """One hour's succeeded attempts and what they cost."""

    hour: datetime
    succeeded: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class PruneCounts:
    """What a prune would delete (or did), table by table."""

    jobs: int
    attempts: int
    outputs: int
    events: int
    callbacks: int
    batches: int
