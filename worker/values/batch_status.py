"""Where a batch is: its jobs by state, throughput, ETA, and where its result files are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from models.state import ACTIVE_STATES, IN_FLIGHT_STATES, BatchState, JobState
from worker.values.records import BatchProgress, BatchRecord

#: The throughput window behind a batch's rate and ETA.
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """A batch and where its jobs are, with throughput over the last minute and an ETA."""

    batch: BatchRecord
    progress: BatchProgress
    #: Jobs finished per second over the rate window.
    rate: float
    #: Seconds until every job is finished at that rate; None while nothing has finished.
    eta_seconds: float | None

    @property
    def done(self) -> int:
        """Jobs that succeeded."""
        return self.progress.counts.get(JobState.SUCCEEDED, 0)

    @property
    def failed(self) -> int:
        """Jobs that failed."""
        return self.progress.counts.get(JobState.FAILED, 0)

    @property
    def canceled(self) -> int:
        """Jobs that were canceled: by ops, by a cancel of the batch, or at its budget."""
        return self.progress.counts.get(JobState.CANCELED, 0)

    @property
    def ended(self) -> int:
        """Jobs that reached a terminal state, however they ended."""
        return self.done + self.failed + self.canceled

    @property
    def in_flight(self) -> int:
        """Jobs a provider is working on."""
        return sum(self.progress.counts.get(s, 0) for s in (*IN_FLIGHT_STATES, JobState.FINALIZING))

    @property
    def finished(self) -> bool:
        """Whether the batch is completed or canceled."""
        return self.batch.state in {BatchState.COMPLETED, BatchState.CANCELED}


@dataclass(frozen=True, slots=True)
class ResultFiles:
    """Where a finished batch's result files are, with presigned GET URLs."""

    results_key: str
    errors_key: str
    results_url: str
    errors_url: str
    expires_in_seconds: int


def status_of(batch: BatchRecord, progress: BatchProgress) -> BatchStatus:
    """Rate over the window (or the batch's age, when younger) and the ETA it gives."""
    age = max((datetime.now(UTC) - batch.created_at).total_seconds(), 1.0)
    rate = progress.recent / min(progress.window_seconds, age)
    active = sum(progress.counts.get(s, 0) for s in ACTIVE_STATES)
    eta = active / rate if rate > 0 else (0.0 if active == 0 else None)
    return BatchStatus(batch, progress, rate, eta)
