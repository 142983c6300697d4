"""The job lifecycle, written down once: one enum and one table of allowed moves.

Every change of a job's state in the database goes through a named transition of
:data:`TRANSITIONS`; the repository turns each into a guarded ``UPDATE`` so that a
duplicate message or a lost race updates zero rows instead of corrupting a job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """Where a job is in its life."""

    #: Accepted (new, retried by ops, after a retryable failure with backoff, or a chain
    #: whose step before is done).
    #: Dispatch claims it once ``run_after`` has passed and its provider has free capacity.
    QUEUED = "queued"
    #: Claimed for one attempt; the provider call is in flight and the job holds a lease.
    #: The submit task moves it to ``running`` (accepted) or back to ``queued`` / ``failed``.
    SUBMITTING = "submitting"
    #: The provider accepted the attempt and we hold its request id. A webhook or a poll
    #: moves it on when the provider finishes.
    RUNNING = "running"
    #: The provider finished; outputs are being copied to S3 under a lease. Finalize moves
    #: it to ``succeeded``; an expired lease is taken over by the reconcile tick.
    FINALIZING = "finalizing"
    #: Terminal: every output (of every step) is in S3 with its size and sha256 recorded.
    SUCCEEDED = "succeeded"
    #: Terminal: a terminal provider error, or ``max_attempts`` used up. Ops may retry it.
    FAILED = "failed"
    #: Terminal: canceled by a producer or by ops. Ops may retry it.
    CANCELED = "canceled"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})
ACTIVE_STATES = frozenset(JobState) - TERMINAL_STATES
#: States in which a provider is working on (or may be about to work on) the job.
IN_FLIGHT_STATES = frozenset({JobState.SUBMITTING, JobState.RUNNING})


class Transition(StrEnum):
    """The name of one allowed move; also the ``transition`` recorded in ``job_events``."""

    CREATE = "create"
    CLAIM = "claim"
    MARK_RUNNING = "mark_running"
    BEGIN_FINALIZE = "begin_finalize"
    SUCCEED = "succeed"
    ADVANCE = "advance"
    REQUEUE = "requeue"
    FAIL = "fail"
    CANCEL = "cancel"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Move:
    """The states a transition may start from and the one it ends in."""

    sources: frozenset[JobState]
    target: JobState


_S = JobState

TRANSITIONS: dict[Transition, Move] = {
    # Dispatch takes a queued job whose run_after has passed, within provider capacity.
    Transition.CLAIM: Move(frozenset({_S.QUEUED}), _S.SUBMITTING),
    # The provider answered the submit with its request id.
    Transition.MARK_RUNNING: Move(frozenset({_S.SUBMITTING}), _S.RUNNING),
    # The provider finished the attempt. From SUBMITTING too: a webhook can overtake the
    # write of the request id when the provider is fast or the submitting worker crashed.
    Transition.BEGIN_FINALIZE: Move(frozenset({_S.SUBMITTING, _S.RUNNING}), _S.FINALIZING),
    # Every output is copied and recorded.
    Transition.SUCCEED: Move(frozenset({_S.FINALIZING}), _S.SUCCEEDED),
    # A chain's step (not its last) is done and its outputs recorded: the next step queues.
    Transition.ADVANCE: Move(frozenset({_S.FINALIZING}), _S.QUEUED),
    # A retryable failure, a rate limit, or the repair of an expired lease: try again later.
    Transition.REQUEUE: Move(frozenset({_S.SUBMITTING, _S.RUNNING, _S.FINALIZING}), _S.QUEUED),
    # A terminal error, or the last allowed attempt failed.
    Transition.FAIL: Move(frozenset({_S.SUBMITTING, _S.RUNNING, _S.FINALIZING}), _S.FAILED),
    # A producer or ops gave up on the job; anything not yet terminal can be canceled.
    Transition.CANCEL: Move(
        frozenset({_S.QUEUED, _S.SUBMITTING, _S.RUNNING, _S.FINALIZING}), _S.CANCELED
    ),
    # Ops send a failed or canceled job round again, with a fresh attempt budget.
    Transition.RETRY: Move(frozenset({_S.FAILED, _S.CANCELED}), _S.QUEUED),
}


def can(transition: Transition, state: JobState) -> bool:
    """Whether ``transition`` is allowed from ``state``."""
    return state in TRANSITIONS[transition].sources


class BatchState(StrEnum):
    """Where a batch (one uploaded catalog file) is in its life."""

    #: The file is being read, checked row by row and inserted; nothing is dispatched yet.
    VALIDATING = "validating"
    #: Its jobs are queued or on their way; dispatch takes them fairly with other work.
    RUNNING = "running"
    #: Every job is terminal; ``results.jsonl`` and ``errors.jsonl`` are being written.
    FINALIZING = "finalizing"
    #: Terminal: every job finished and the result files are in S3.
    COMPLETED = "completed"
    #: Terminal: canceled before every job finished; the result files say what got done.
    CANCELED = "canceled"
