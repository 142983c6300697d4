"""The named guarded transitions: each moves a job along one edge of the lifecycle."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.dialects.postgresql import insert

from models.state import Transition
from models.tables import JobOutput
from worker.faults import ErrorKind, Fault
from worker.repository.base import finished_attempt
from worker.repository.callbacks import CallbackRows
from worker.repository.reads import Reads
from worker.repository.sql import NOW, FromNow, Plus
from worker.values import chain
from worker.values.callback_events import STEP_SUCCEEDED
from worker.values.observations import AttemptEnded, Spent, Wait, Waited
from worker.values.records import AttemptRecord, JobRecord, OutputRecord, Rejection


class Transitions(CallbackRows, Reads):
    """One method per transition of :data:`models.state.TRANSITIONS`.

    Those that end a job write its producer callback (if it has a ``callback_url``) in the
    same transaction: the outbox, so a finished job never misses its event.
    """

    def mark_running(
        self,
        attempt: AttemptRecord,
        request_id: str,
        provider_data: dict[str, Any],
        poll_in_seconds: float,
    ) -> bool:
        """The provider accepted ``attempt`` as ``request_id``."""
        moved = self._move(
            attempt.job_id,
            Transition.MARK_RUNNING,
            attempt.number,
            {"lease_expires_at": None, "next_poll_at": FromNow(poll_in_seconds)},
            data={"request_id": request_id},
            attempt_update=(
                attempt.id,
                {
                    "outcome": "running",
                    "request_id": request_id,
                    "provider_data": provider_data,
                    "submitted_at": NOW,
                },
            ),
        )
        return moved is not None

    def begin_finalize(
        self,
        attempt: AttemptRecord,
        request_id: str | None,
        result: dict[str, Any],
        lease_seconds: float,
    ) -> bool:
        """The provider finished ``attempt`` with ``result``; finalize may take the job."""
        values: dict[str, Any] = {"result": result, "outcome": "finalizing"}
        if request_id and attempt.request_id is None:
            values["request_id"] = request_id
        moved = self._move(
            attempt.job_id,
            Transition.BEGIN_FINALIZE,
            attempt.number,
            {
                "lease_expires_at": FromNow(lease_seconds),
                "lease_token": None,
                "next_poll_at": None,
            },
            attempt_update=(attempt.id, values),
        )
        if moved is None:
            return False
        # A result can beat the submit's own answer here (mark_running never comes then):
        # the attempt's start stands in for the acceptance.
        since = attempt.submitted_at or attempt.created_at
        took = (datetime.now(UTC) - since).total_seconds()
        self.observed.append(Waited(Wait.PROVIDER, attempt.provider, took))
        return True

    def succeed(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        token: uuid.UUID,
        outputs: Sequence[OutputRecord],
        cost_usd: Decimal,
        reports: list[dict[str, Any]] | None = None,
        source_facts: dict[str, Any] | None = None,
    ) -> bool:
        """Every output of the job's last step is stored: record them and finish it (once).

        ``reports`` are the quality gate's, kept on the attempt (None: the gate was off);
        ``source_facts``, what it read of the step's source just now, on the job.
        """
        values: dict[str, Any] = {
            "lease_expires_at": None,
            "lease_token": None,
            "completed_at": NOW,
            "error_code": None,
            "error_message": None,
            "cost_usd": Plus(cost_usd),
        }
        if source_facts is not None:
            values["source_facts"] = source_facts
        moved = self._move(
            job.id,
            Transition.SUCCEED,
            attempt.number,
            values,
            lease_token=token,
            data={"outputs": len(outputs), "step": job.step},
            attempt_update=(attempt.id, _succeeded(cost_usd, reports)),
        )
        if moved is None:
            return False
        self._attempt_ended(attempt, "succeeded", moved.model, cost_usd)
        self._keep_outputs(job.id, outputs)
        if moved.callback_url is not None:
            self.notify_job(job.id)
        return True

    def advance(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        token: uuid.UUID,
        outputs: Sequence[OutputRecord],
        cost_usd: Decimal,
        reports: list[dict[str, Any]] | None = None,
    ) -> bool:
        """A step of a chain (not its last) is stored: record it and queue the next step.

        The next step starts afresh: its first provider, a full attempt budget and quality
        retries, and a new source (the gate reads it when the step's outputs are checked).
        It is due at once; dispatch takes a chain's later step before new chains.
        """
        following = job.step + 1
        providers = chain.providers_of(job.steps, following)
        moved = self._move(
            job.id,
            Transition.ADVANCE,
            attempt.number,
            {
                "lease_expires_at": None,
                "lease_token": None,
                "error_code": None,
                "error_message": None,
                "cost_usd": Plus(cost_usd),
                "step": Plus(1),
                "providers": list(providers),
                "provider": providers[0],
                "failed_attempts": 0,
                "quality_retries": 0,
                "source_facts": None,
                "run_after": NOW,
            },
            lease_token=token,
            data={"outputs": len(outputs), "step": job.step, "next_step": following},
            attempt_update=(attempt.id, _succeeded(cost_usd, reports)),
        )
        if moved is None:
            return False
        self._attempt_ended(attempt, "succeeded", moved.model, cost_usd)
        self._keep_outputs(job.id, outputs)
        if moved.callback_url is not None and STEP_SUCCEEDED in job.callback_events:
            self.notify_step(job.id, job.step)
        return True

    def _attempt_ended(
        self, attempt: AttemptRecord, outcome: str, model: str, cost_usd: Decimal | None
    ) -> None:
        self.observed.append(AttemptEnded(attempt.provider, outcome))
        if cost_usd:
            self.observed.append(Spent(attempt.provider, model, cost_usd))

    def _keep_outputs(self, job_id: uuid.UUID, outputs: Sequence[OutputRecord]) -> None:
        if not outputs:
            return
        self.run(
            insert(JobOutput),
            [
                {
                    "job_id": job_id,
                    "step": o.step,
                    "index": o.index,
                    "key": o.key,
                    "content_type": o.content_type,
                    "width": o.width,
                    "height": o.height,
                    "bytes": o.bytes,
                    "sha256": o.sha256,
                    "quality": o.quality,
                }
                for o in outputs
            ],
        )

    def requeue(
        self,
        attempt: AttemptRecord,
        fault: Fault,
        delay_seconds: float,
        *,
        counts: bool,
        next_provider: str,
        details: Mapping[str, Any] | None = None,
        rejection: Rejection | None = None,
    ) -> bool:
        """Send the job back to the queue after a failed attempt; ``details`` join its event.

        A ``rejection`` (outputs the quality gate refused) charges the attempt's cost to the
        job and uses up one of its quality retries.
        """
        job_values: dict[str, Any] = {
            "run_after": FromNow(delay_seconds),
            "failed_attempts": Plus(1 if counts else 0),
            "provider": next_provider,
            "lease_expires_at": None,
            "lease_token": None,
            "next_poll_at": None,
            "error_code": fault.code,
            "error_message": fault.message,
        }
        if rejection is not None:
            job_values["quality_retries"] = Plus(1)
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            _charged(job_values, rejection),
            reason=fault.code,
            data={
                "kind": fault.kind.value,
                "delay_seconds": round(delay_seconds, 3),
                **(details or {}),
            },
            attempt_update=(attempt.id, _rejected(finished_attempt("failed", fault), rejection)),
        )
        if moved is None:
            return False
        self._attempt_failed(attempt, fault, moved.model, rejection)
        return True

    def fail(
        self,
        attempt: AttemptRecord,
        fault: Fault,
        details: Mapping[str, Any] | None = None,
        rejection: Rejection | None = None,
    ) -> bool:
        """Fail the job for good with ``fault`` (a ``rejection`` charges its cost)."""
        moved = self._move(
            attempt.job_id,
            Transition.FAIL,
            attempt.number,
            _charged(
                {
                    "lease_expires_at": None,
                    "lease_token": None,
                    "next_poll_at": None,
                    "completed_at": NOW,
                    "failed_attempts": Plus(1),
                    "error_code": fault.code,
                    "error_message": fault.message,
                },
                rejection,
            ),
            reason=fault.code,
            data={"kind": fault.kind.value, **(details or {})},
            attempt_update=(attempt.id, _rejected(finished_attempt("failed", fault), rejection)),
        )
        if moved is None:
            return False
        self._attempt_failed(attempt, fault, moved.model, rejection)
        if moved.callback_url is not None:
            self.notify_job(attempt.job_id)
        return True

    def _attempt_failed(
        self, attempt: AttemptRecord, fault: Fault, model: str, rejection: Rejection | None
    ) -> None:
        # A 429 is its own outcome: the provider was full, the attempt cost nothing.
        outcome = "rate_limited" if fault.kind is ErrorKind.RATE_LIMITED else "failed"
        self._attempt_ended(attempt, outcome, model, rejection.cost_usd if rejection else None)

    def abandon(self, attempt: AttemptRecord, fault: Fault) -> bool:
        """Requeue a job whose submitting worker vanished, without counting the attempt."""
        moved = self._move(
            attempt.job_id,
            Transition.REQUEUE,
            attempt.number,
            {"run_after": NOW, "lease_expires_at": None, "lease_token": None},
            reason=fault.code,
            data={"kind": fault.kind.value},
            attempt_update=(attempt.id, finished_attempt("abandoned", fault)),
        )
        if moved is None:
            return False
        self.observed.append(AttemptEnded(attempt.provider, "abandoned"))
        return True


def _succeeded(cost_usd: Decimal, reports: list[dict[str, Any]] | None) -> dict[str, Any]:
    """What an attempt whose outputs were all stored records."""
    return {"outcome": "succeeded", "finished_at": NOW, "cost_usd": cost_usd, "quality": reports}


def _charged(values: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    """A job's new values, with a rejected attempt's cost added to what it has spent (and
    what the gate read of the source, when it read it just now)."""
    if rejection is not None:
        values["cost_usd"] = Plus(rejection.cost_usd)
        if rejection.source_facts is not None:
            values["source_facts"] = rejection.source_facts
    return values


def _rejected(values: dict[str, Any], rejection: Rejection | None) -> dict[str, Any]:
    """An attempt's new values, with what the quality gate found and what it cost."""
    if rejection is not None:
        values.update(cost_usd=rejection.cost_usd, quality=rejection.reports)
    return values
