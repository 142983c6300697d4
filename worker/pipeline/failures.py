"""After a failed attempt: count it against the provider, then requeue or fail the job.

Every step that can see an attempt fail (submit, poll, a webhook, finalize and the quality
gate) hands it here, so the retry policy, the breaker and the choice of the next provider
are applied the same way whoever saw the failure.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import Any

from worker.database import Database
from worker.faults import Fault
from worker.pipeline import dispatch as routing
from worker.pipeline.policy import Policy
from worker.values.records import AttemptRecord, JobRecord, Rejection
from worker.values.retry import Verdict, decide

log = logging.getLogger("editq.pipeline")


class Failures:
    """Decides, and records, what becomes of a job whose attempt failed."""

    def __init__(self, db: Database, policy: Policy, rng: random.Random | None = None) -> None:
        self._db = db
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def after(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        fault: Fault,
        details: Mapping[str, Any] | None = None,
        rejection: Rejection | None = None,
    ) -> str:
        """Requeue or fail the job after a failed attempt; ``details`` go into its event.

        ``rejection`` is set when the attempt's outputs failed the quality gate.
        """
        decision = decide(
            fault, job.failed_attempts, job.max_attempts, self._policy.retry, self._rng
        )
        if rejection is not None:
            # The provider answered; only its output was refused. Nothing to wait out.
            decision = dataclasses.replace(decision, delay_seconds=0.0)
        with self._db.transaction() as repo:
            if routing.counts_against(fault):
                routing.record_failure(repo, attempt.provider, self._policy.limits.breaker)
            if decision.verdict is Verdict.FAIL:
                moved = repo.fail(attempt, fault, details, rejection)
            else:
                moved = repo.requeue(
                    attempt,
                    fault,
                    decision.delay_seconds,
                    counts=decision.counts,
                    next_provider=routing.next_provider(job, attempt.provider, fault),
                    details=details,
                    rejection=rejection,
                )
        if not moved:
            return "stale"
        if decision.verdict is Verdict.FAIL:
            log.warning("failed for good (%s): %s", fault.code, fault.message)
        else:
            log.info(
                "attempt failed (%s), retried in %.1f s: %s",
                fault.code,
                decision.delay_seconds,
                fault.message,
            )
        return decision.verdict.value
