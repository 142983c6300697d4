"""The tables: jobs, their attempts (one row per provider call), outputs and events.

PostgreSQL is the only source of truth; the broker carries job ids and nothing else.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from models.state import BatchState, JobState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(12, 4)
Timestamp = DateTime(timezone=True)


#: A JSONB column whose Python None is SQL NULL (not the JSON ``null``), so "not set"
#: reads the same from SQL as from Python.
_NULLABLE_JSON = JSONB(none_as_null=True)


class Base(DeclarativeBase):
    """Declarative base whose metadata carries stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)


job_state_enum = Enum(
    JobState,
    name="job_state",
    values_callable=lambda states: [s.value for s in states],
    validate_strings=True,
)


batch_state_enum = Enum(
    BatchState,
    name="batch_state",
    values_callable=lambda states: [s.value for s in states],
    validate_strings=True,
)


class Batch(Base):
    """One uploaded catalog file: its accepted rows are jobs, its bad rows are rejects."""

    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[BatchState] = mapped_column(batch_state_enum)
    #: Defaults for every row (a row's own columns win).
    model: Mapped[str] = mapped_column(Text)
    providers: Mapped[list[str]] = mapped_column(ARRAY(Text))
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    #: Receives ``batch.completed``; rows name their own ``callback_url`` for job events.
    callback_url: Mapped[str | None] = mapped_column(Text)
    #: Dispatch stops before the batch's estimated spend would pass this.
    budget_usd: Mapped[Decimal | None] = mapped_column(Money)
    #: When dispatch stopped for the budget; the batch's unsent jobs were canceled then.
    budget_exhausted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: The quality policy of the batch's rows that do not name their own.
    quality: Mapped[dict[str, Any] | None] = mapped_column(_NULLABLE_JSON)
    #: The routing of the batch's rows that do not name their own (NULL: the settings').
    routing: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(Text, unique=True)
    #: sha256 of the uploaded file and its options, sent with ``idempotency_key``.
    request_hash: Mapped[str | None] = mapped_column(Text)
    rows_total: Mapped[int] = mapped_column(Integer, server_default="0")
    rows_accepted: Mapped[int] = mapped_column(Integer, server_default="0")
    rows_rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    results_key: Mapped[str | None] = mapped_column(Text)
    errors_key: Mapped[str | None] = mapped_column(Text)
    #: Set by a cancel; the batch ends ``canceled`` instead of ``completed``.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    #: Held while the result files are written; past it the batch tick writes them again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index(
            "ix_batches_open",
            "state",
            postgresql_where=text("state IN ('running', 'finalizing')"),
        ),
        Index("ix_batches_created", "created_at", "id"),
    )


class BatchReject(Base):
    """One bad row of a batch file: its line, the field and the rule it broke."""

    __tablename__ = "batch_rejects"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    external_id: Mapped[str | None] = mapped_column(Text)
    field: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_batch_rejects_batch", "batch_id", "line"),)


class Job(Base):
    """One requested edit: a canonical request plus everything that happened to it.

    The table is analyzed once 1 % of it has changed (migration 0010 sets
    ``autovacuum_analyze_scale_factor``): the queued jobs are a sliver of a large history,
    and dispatch's plans are only as good as what the statistics know of them.
    """

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[JobState] = mapped_column(job_state_enum)
    model: Mapped[str] = mapped_column(Text)
    #: The canonical request as the producer sent it (validated).
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Ordered provider names the current step may run on.
    providers: Mapped[list[str]] = mapped_column(ARRAY(Text))
    #: How the providers share the job: ``spread``, ``failover`` or ``cheapest``
    #: (:mod:`worker.values.routing`).
    routing: Mapped[str] = mapped_column(Text, server_default="failover")
    #: Provider of the current (or last) attempt.
    provider: Mapped[str | None] = mapped_column(Text)
    #: Number of the current attempt; every transition after a claim is guarded by it.
    attempt: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Attempts that count toward ``max_attempts`` (a rate-limited one does not).
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(SmallInteger, server_default="5")
    priority: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    external_id: Mapped[str | None] = mapped_column(Text)
    #: The batch this job is a row of; NULL for a job submitted on its own.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    callback_url: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb")
    )
    #: Providers left out of this job's routing because they cannot honour a field of it:
    #: provider -> why.
    excluded_providers: Mapped[dict[str, str]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )
    idempotency_key: Mapped[str | None] = mapped_column(Text, unique=True)
    #: sha256 of the canonical body sent with ``idempotency_key``.
    request_hash: Mapped[str | None] = mapped_column(Text)
    #: A queued job is not dispatched before this moment (backoff, Retry-After).
    run_after: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    #: Set while submitting or finalizing; past it the reconcile tick repairs the job.
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: Who holds the finalize lease; NULL means the next finalize task may take it.
    lease_token: Mapped[uuid.UUID | None] = mapped_column()
    #: When a running job is next asked about at its provider.
    next_poll_at: Mapped[datetime | None] = mapped_column(Timestamp)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[Decimal] = mapped_column(Money, server_default="0")
    #: The step the job is on, from 1 (see :mod:`worker.values.chain`); a failed chain
    #: stays on the step that failed, so a retry resumes there.
    step: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    #: The steps after the first, each with every parameter it runs with, which output of
    #: the step before it edits and its providers; empty for a one-step job.
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: Callback events sent besides the terminal ones (``job.step_succeeded``).
    callback_events: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    #: What a failed quality check does to this job (``{"on_failure", "max_retries"}``);
    #: NULL: the batch's, or the settings' default.
    quality: Mapped[dict[str, Any] | None] = mapped_column(_NULLABLE_JSON)
    #: Attempts spent so far on outputs that failed a quality check.
    quality_retries: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    #: What the quality gate keeps of the source image (size, perceptual hash, thumbnail),
    #: computed once, the first time the job's outputs are checked.
    source_facts: Mapped[dict[str, Any] | None] = mapped_column(_NULLABLE_JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index("ix_jobs_poll", "next_poll_at", postgresql_where=text("state = 'running'")),
        Index(
            "ix_jobs_lease",
            "lease_expires_at",
            postgresql_where=text("state IN ('submitting', 'finalizing')"),
        ),
        # A batch names each of its rows once; results are keyed by it.
        Index(
            "uq_jobs_batch_external_id",
            "batch_id",
            "external_id",
            unique=True,
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
        # The jobs list, newest first. The filters' columns are keys too, so a filter is
        # checked in the index and only the rows it keeps are read: on a large table the
        # newest rows lie wherever free space was, and reading each row a filter passes
        # over cost a page apiece (12 to 18 ms for a page of failures at a million jobs).
        Index("ix_jobs_list", "created_at", "id", "state", "provider", "error_code"),
        # A batch's jobs: in the list's order, however old the batch (ordering by the list
        # index would walk every newer job first), with their state for counts and probes.
        Index(
            "ix_jobs_batch_list",
            "batch_id",
            "created_at",
            "id",
            "state",
            postgresql_where=text("batch_id IS NOT NULL"),
        ),
        Index("ix_jobs_state_provider", "state", "provider"),
        # Retention: the finished jobs, oldest first.
        Index(
            "ix_jobs_completed",
            "completed_at",
            postgresql_where=text("state IN ('succeeded', 'failed', 'canceled')"),
        ),
        # The console's lookups: a row by its external id, jobs by metadata pairs (@>).
        Index(
            "ix_jobs_external_id",
            "external_id",
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(
            "ix_jobs_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
    )


# Dispatch: the queued backlog of each batch (and of the jobs in none) in claim order.
# Round-robin across batches takes the head of each; within a batch a chain's later step
# goes first, so chains are finished before new ones are started. Every key of the claim
# order is here, down to created_at: a batch's rows share their priority, step and
# run_after, and without the last key a round would sort the batch's whole queue.
Index(
    "ix_jobs_dispatch",
    Job.batch_id,
    Job.priority.desc(),
    Job.step.desc(),
    Job.run_after,
    Job.created_at,
    postgresql_where=text("state = 'queued'"),
)


class Attempt(Base):
    """One provider call for a job, written before the call is made.

    Its ``id`` is our own attempt id: it travels to the provider where the protocol allows
    (in the webhook URL, as Runware's ``taskUUID``, as Runflow's ``client_ref``), so a
    crash after the provider accepted the call is recovered rather than paid twice.
    """

    __tablename__ = "attempts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    #: The step of the job's chain this attempt was for.
    step: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    provider: Mapped[str] = mapped_column(Text)
    #: ``pending`` (written, not sent), ``sending`` (the call is in flight), ``running``,
    #: ``finalizing``, ``succeeded``, ``failed`` or ``abandoned`` (its worker vanished).
    outcome: Mapped[str] = mapped_column(Text, server_default="pending")
    request_id: Mapped[str | None] = mapped_column(Text)
    #: Provider-specific handles to follow (fal's status, response and cancel URLs).
    provider_data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: What the provider returned when it finished: the outputs to copy.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[Decimal | None] = mapped_column(Money)
    #: The quality gate's report on each output of this attempt, with where it is stored
    #: (outputs that failed a check are kept under ``outputs/{job}/rejected/``).
    quality: Mapped[list[dict[str, Any]] | None] = mapped_column(_NULLABLE_JSON)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    submitted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
        UniqueConstraint("provider", "request_id", name="uq_attempts_provider_request"),
        # Each provider's recent time per job, which routing prefers the faster by.
        Index(
            "ix_attempts_finished", "finished_at", postgresql_where=text("outcome = 'succeeded'")
        ),
    )


class JobOutput(Base):
    """One output image of one step, copied into our bucket."""

    __tablename__ = "job_outputs"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    index: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    key: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    #: The quality gate's checks, flags and scores; NULL when the gate was off.
    quality: Mapped[dict[str, Any] | None] = mapped_column(_NULLABLE_JSON)


class JobEvent(Base):
    """Append-only history: one row for every transition, written in its transaction."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    transition: Mapped[str] = mapped_column(Text)
    state: Mapped[JobState] = mapped_column(job_state_enum)
    attempt: Mapped[int] = mapped_column(Integer)
    #: Who asked for it (``api``, ``cli``, ``worker``, ``scheduler``) and why.
    actor: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)


class ProviderHealth(Base):
    """One provider's circuit breaker and submit-rate bucket, shared by every process."""

    __tablename__ = "provider_health"

    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    #: ``closed``, ``open`` or ``half_open`` (see ``worker/breaker.py``).
    state: Mapped[str] = mapped_column(Text, server_default="closed")
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    opened_at: Mapped[datetime | None] = mapped_column(Timestamp)
    tokens: Mapped[float] = mapped_column(Float, server_default="0")
    tokens_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: The in-flight limit learned from the provider's answers (NULL: not yet heard from).
    learned_limit: Mapped[float | None] = mapped_column(Float)
    #: When a rate-limit answer last cut it (NULL: never; the limit is still in slow start).
    limit_cut_at: Mapped[datetime | None] = mapped_column(Timestamp)
    #: Set by an operator: dispatch sends it nothing until resumed (NULL: not paused).
    paused_at: Mapped[datetime | None] = mapped_column(Timestamp)
    paused_by: Mapped[str | None] = mapped_column(Text)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    #: Set by an operator: the in-flight ceiling in place of the configured one (NULL: none).
    capacity_override: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class Callback(Base):
    """One event for a producer's ``callback_url`` (an outbox row, written with its cause).

    It is written in the transaction that finished the job or batch, so no event is lost;
    the delivery tick sends it, signed to the Standard Webhooks spec, until it is taken.
    """

    __tablename__ = "callbacks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    #: ``job.succeeded``, ``job.failed``, ``job.canceled`` or ``batch.completed``.
    event: Mapped[str] = mapped_column(Text)
    #: The body sent, as it was when the event happened.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: ``pending`` (to send), ``delivered`` (a 2xx came back) or ``failed`` (gave up).
    state: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)

    __table_args__ = (
        Index("ix_callbacks_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_callbacks_job", "job_id"),
        Index("ix_callbacks_batch", "batch_id"),
    )


class CallbackAttempt(Base):
    """One try at delivering a callback: the delivery log."""

    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    callback_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callbacks.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    #: The HTTP status; NULL when no answer came (refused, timed out).
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_callback_attempts_callback", "callback_id", "id"),)


class Scheduler(Base):
    """A running ``editq scheduler``, as it last said of itself (every tick).

    Several may run; the one holding :class:`SchedulerLease` dispatches, the others stand
    by. A row not seen for an hour is forgotten.
    """

    __tablename__ = "schedulers"

    #: ``host:pid:token``, unique to one run of one process.
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    #: How it wakes between ticks: ``listen`` (LISTEN/NOTIFY) or ``poll`` (PgBouncer).
    wakeups: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    seen_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())


class SchedulerLease(Base):
    """Which scheduler dispatches: the holder of the one row, until it expires.

    The holder renews it every tick; when it stops renewing (killed, or cut off from the
    database), another scheduler takes it once it has expired, by the database's clock.
    """

    __tablename__ = "scheduler_lease"

    #: Always ``dispatch``: one lease, one row.
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    #: When the holder took the lease (kept across its renewals).
    since: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    renewed_at: Mapped[datetime] = mapped_column(Timestamp, server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
