"""Repairing jobs whose lease expired: their worker died, or their message was lost.

The scheduler's tick calls :func:`reconcile`. A finalizing job gets a new finalize (the
copy goes to the same keys, so running it twice is harmless); a submitting job is
repaired without paying for it twice, as :func:`repair_submitting` describes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from models.state import JobState
from worker.database import Database, TaskQueue, publish
from worker.faults import ErrorKind, Fault
from worker.providers.base import Provider

if TYPE_CHECKING:
    from worker.pipeline.policy import Policy

#: Most expired leases one tick repairs.
_BATCH = 500

WORKER_LOST = Fault(
    ErrorKind.RETRYABLE,
    "worker_lost",
    "the worker sending this attempt stopped before recording the provider's answer",
)


def reconcile(
    db: Database, providers: Mapping[str, Provider], queue: TaskQueue, policy: Policy
) -> int:
    """Repair every job whose lease expired; returns how many were looked at."""
    with db.transaction() as repo:
        expired = repo.expired_leases(_BATCH)
    for job_id, number, state in expired:
        if state is JobState.FINALIZING:
            publish(queue.finalize, job_id, number)
        else:
            repair_submitting(db, providers, queue, policy, job_id, number)
    return len(expired)


def repair_submitting(
    db: Database,
    providers: Mapping[str, Provider],
    queue: TaskQueue,
    policy: Policy,
    job_id: uuid.UUID,
    number: int,
) -> None:
    """Repair a submitting job whose lease ran out, without paying for it twice.

    - The attempt was never sent (its message was lost): send it again.
    - It was being sent when its worker vanished, to a provider that recognises a
      repeated attempt id (Runware's ``taskUUID``): send it again; the provider answers
      with the attempt it already has instead of starting (and billing) another.
    - To another provider, with webhooks on: the provider may have accepted it, and its
      callback carries our attempt id. Wait for that callback until
      ``submit_grace_seconds`` after the attempt began.
    - Past that, or with no webhooks to wait for: give the attempt up and requeue the
      job without using up an attempt (``worker_lost``).
    """
    resend = False
    lease = policy.lease_seconds
    with db.transaction() as repo:
        found = repo.job_at(job_id, number, JobState.SUBMITTING)
        if found is None:
            return
        _, attempt = found
        waited = (datetime.now(UTC) - attempt.created_at).total_seconds()
        grace_left = policy.submit_grace_seconds - waited
        if attempt.outcome == "pending":
            resend = repo.extend_lease(job_id, number, lease)
        elif providers[attempt.provider].idempotent_submit:
            resend = repo.resend(attempt, lease)
        elif policy.public_url and grace_left > 0:
            repo.extend_lease(job_id, number, min(lease, grace_left))
        else:
            repo.abandon(attempt, WORKER_LOST)
    if resend:
        publish(queue.submit, job_id, number)
