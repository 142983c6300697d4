"""What the pipeline works under: its timing and capacity settings, and what a tick did."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.values.breaker import Limits
from worker.values.callback_events import CallbackPolicy
from worker.values.quality import Thresholds
from worker.values.quality_policy import QualityPolicy
from worker.values.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class Policy:
    """The timing and capacity settings the pipeline works under."""

    lease_seconds: float
    poll_seconds: float
    poll_max_seconds: float
    webhook_grace_seconds: float
    limits: Limits
    public_url: str | None
    retry: RetryPolicy
    #: How long an attempt whose worker vanished mid-call waits for the provider's
    #: callback before it is given up and the job sent again.
    submit_grace_seconds: float = 900.0
    #: How long finalize waits before trying again after a storage or network hiccup.
    finalize_retry_seconds: float = 5.0
    #: How producer callbacks are delivered (the tick sends those that are due).
    callbacks: CallbackPolicy = field(default_factory=CallbackPolicy)
    #: Whether finalize checks outputs, with which thresholds, and what a failed check
    #: does to a job that does not say.
    quality_gate: bool = True
    #: Whether a slower provider leaves to faster full ones the jobs they finish first.
    latency_aware: bool = True
    quality: Thresholds = field(default_factory=Thresholds)
    quality_default: QualityPolicy = field(default_factory=QualityPolicy)


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one scheduler tick did."""

    dispatched: int
    polls: int
    repaired: int
    #: Producer callbacks sent for delivery.
    callbacks: int = 0
