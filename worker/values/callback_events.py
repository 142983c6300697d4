"""Producer callbacks as values: the events, their bodies, and what a delivery try means.

A callback is an outbox row, written in the transaction that finished its job or batch,
so no event is lost. The delivery task sends it signed to the Standard Webhooks spec
(https://www.standardwebhooks.com) and asks :func:`judge` what the answer means. Everything
here is pure, so it is unit-tested with no database and no network.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from standardwebhooks import Webhook

from models.state import JobState
from worker.values import chain
from worker.values.records import JobRecord, OutputRecord
from worker.values.retry import RetryPolicy, backoff_seconds

#: The event each terminal job state sends.
JOB_EVENTS = {
    JobState.SUCCEEDED: "job.succeeded",
    JobState.FAILED: "job.failed",
    JobState.CANCELED: "job.canceled",
}
#: Sent when a step of a chain other than its last is stored, to a job that asks for it.
STEP_SUCCEEDED = "job.step_succeeded"
#: The events a job may ask for besides the terminal ones.
OptionalJobEvent = Literal["job.step_succeeded"]
BATCH_COMPLETED = "batch.completed"
EVENTS = (*JOB_EVENTS.values(), STEP_SUCCEEDED, BATCH_COMPLETED)


class CallbackState(StrEnum):
    """Where a callback is: each try moves a pending one on, or leaves it pending."""

    #: Written with its cause, or put back by ``editq callbacks redeliver``; the tick sends it
    #: once ``next_attempt_at`` has passed.
    PENDING = "pending"
    #: Terminal: the receiver answered 2xx.
    DELIVERED = "delivered"
    #: Terminal: the receiver answered 410 Gone, the URL is refused, or every try failed.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    """A callback as stored."""

    id: uuid.UUID
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None
    url: str
    event: str
    payload: dict[str, Any]
    state: CallbackState
    #: Tries made since it was written or last redelivered.
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header: the same on every try, so receivers can de-duplicate."""
        return f"msg_{self.id.hex}"


@dataclass(frozen=True, slots=True)
class CallbackTry:
    """One line of a callback's delivery log."""

    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CallbackDetail:
    """A callback with its delivery log, oldest try first."""

    callback: CallbackRecord
    tries: tuple[CallbackTry, ...]


@dataclass(frozen=True, slots=True)
class CallbackFilter:
    """Which callbacks to list or redeliver; empty matches every one."""

    ids: tuple[uuid.UUID, ...] = ()
    job_id: uuid.UUID | None = None
    batch_id: uuid.UUID | None = None
    states: tuple[CallbackState, ...] = ()

    def is_empty(self) -> bool:
        """Whether nothing narrows the filter."""
        return not (self.ids or self.job_id or self.batch_id or self.states)


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """How callbacks are delivered: per-try timeout, tries, and the backoff between them."""

    timeout_seconds: float = 10.0
    max_attempts: int = 8
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(30.0, 3600.0))
    #: Seconds an output's presigned ``url`` in a callback stays valid.
    url_seconds: int = 3600

    @property
    def lease_seconds(self) -> float:
        """How long a try may run before the tick sends the callback again."""
        return self.timeout_seconds + 60.0


def job_payload(job: JobRecord, outputs: Sequence[OutputRecord]) -> dict[str, Any]:
    """The body of a terminal job's event, as it is stored (output URLs are added at send).

    ``outputs`` are every step's; ``data.outputs`` are the last step's (the chain's result)
    and ``data.steps`` lists each step with its own.
    """
    at = job.completed_at or job.updated_at
    error = (
        {"code": job.error_code, "message": job.error_message, "step": job.step}
        if job.error_code
        else None
    )
    return {
        "type": JOB_EVENTS[job.state],
        "timestamp": _iso(at),
        "data": {
            **_job_data(job, outputs),
            "state": job.state.value,
            "outputs": [asdict(o) for o in outputs if o.step == job.length],
            "error": error,
            "completed_at": None if job.completed_at is None else _iso(job.completed_at),
        },
    }


def step_payload(job: JobRecord, step: int, outputs: Sequence[OutputRecord]) -> dict[str, Any]:
    """The body of a ``job.step_succeeded`` event: step ``step`` of a chain is stored.

    ``data.outputs`` are that step's; ``data.steps``, every step's so far.
    """
    return {
        "type": STEP_SUCCEEDED,
        "timestamp": _iso(job.updated_at),
        "data": {
            **_job_data(job, outputs),
            "step": step,
            "outputs": [asdict(o) for o in outputs if o.step == step],
        },
    }


def _job_data(job: JobRecord, outputs: Sequence[OutputRecord]) -> dict[str, Any]:
    """What every job event says of the job: who it is, what it cost, each step's outputs."""
    return {
        "id": str(job.id),
        "external_id": job.external_id,
        "batch_id": None if job.batch_id is None else str(job.batch_id),
        "model": job.model,
        "provider": job.provider,
        "steps": [
            {
                "step": step,
                "prompt": chain.request(job.input, job.steps, step)["prompt"],
                "outputs": [asdict(o) for o in outputs if o.step == step],
            }
            for step in range(1, job.length + 1)
        ],
        "cost_usd": str(job.cost_usd),
        "metadata": job.metadata,
        "created_at": _iso(job.created_at),
    }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def with_output_urls(payload: dict[str, Any], presign: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``payload`` whose outputs (``data.outputs``, and each of ``data.steps``)
    each carry a fresh presigned GET ``url``.

    URLs are made at send time, not stored: a retry hours later still gets a working one.
    """
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("outputs"), list):
        return payload
    signed = {**data, "outputs": _signed(data["outputs"], presign)}
    if isinstance(data.get("steps"), list):
        signed["steps"] = [
            {**s, "outputs": _signed(s.get("outputs", []), presign)} if isinstance(s, dict) else s
            for s in data["steps"]
        ]
    return {**payload, "data": signed}


def _signed(outputs: list[Any], presign: Callable[[str], str]) -> list[Any]:
    return [
        {**o, "url": presign(o["key"])} if isinstance(o, dict) and "key" in o else o
        for o in outputs
    ]


def encode(payload: dict[str, Any]) -> str:
    """The exact body sent and signed."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def signed_headers(signer: Webhook, webhook_id: str, body: str, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, signed by the ``standardwebhooks`` library."""
    now = now.astimezone(UTC)
    return {
        "webhook-id": webhook_id,
        # The library signs the whole seconds; the header must carry the same number.
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(webhook_id, now, body),
        "content-type": "application/json",
        "user-agent": "editq-callbacks",
    }


class Verdict(StrEnum):
    """What one try's answer does to its callback."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict and, for a retry, the wait before the next try."""

    verdict: Verdict
    delay_seconds: float = 0.0


def judge(
    status: int | None,
    attempts: int,
    policy: CallbackPolicy,
    rng: random.Random,
    *,
    permanent: bool = False,
) -> Decision:
    """Decide what try number ``attempts`` did, from its HTTP ``status`` (None: no answer).

    2xx is delivered. 410 Gone means the receiver asks us to stop (the Standard Webhooks
    convention), and a ``permanent`` problem (a refused address) cannot get better: both fail
    at once. Anything else is tried again, with full-jitter backoff, until ``max_attempts``.
    """
    if status is not None and 200 <= status < 300:
        return Decision(Verdict.DELIVERED)
    if status == 410 or permanent or attempts >= policy.max_attempts:
        return Decision(Verdict.FAILED)
    return Decision(Verdict.RETRY, backoff_seconds(attempts, policy.retry, rng))


def new_secret() -> str:
    """A fresh Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
