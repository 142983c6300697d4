"""What a transaction saw happen, for the metrics to count once it has committed.

The repository notes these as it writes; :class:`worker.database.Database` hands them to
the metrics only after the commit, so a transaction that rolls back counts nothing and a
transition that lost its guard (another process got there first) is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A job reached a terminal state; ``seconds`` from created to there."""

    provider: str | None
    state: str
    error_code: str | None
    seconds: float


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """A provider attempt ended (``succeeded``, ``failed``, ``abandoned``)."""

    provider: str
    outcome: str


@dataclass(frozen=True, slots=True)
class Spent:
    """Money a provider charged for an attempt, counted against the job."""

    provider: str
    model: str
    usd: Decimal


class Wait(StrEnum):
    """The stretches of a job's life that are timed."""

    #: From due (created, or requeued and its backoff over) to claimed for a provider.
    QUEUE = "queue"
    #: From the submit's acceptance to the provider's result arriving.
    PROVIDER = "provider"
    #: A worker storing a finished attempt's outputs: copy, quality gate, commit.
    FINALIZE = "finalize"


@dataclass(frozen=True, slots=True)
class Waited:
    """How long one job spent in one stretch of its life, at ``provider``."""

    wait: Wait
    provider: str
    seconds: float


@dataclass(frozen=True, slots=True)
class BudgetStopped:
    """A batch reached its budget: its queued jobs were canceled."""


Observation = JobFinished | AttemptEnded | Spent | Waited | BudgetStopped
