"""Producer and ops use cases: create, read, list, cancel and retry jobs.

Entry points (routes, CLI commands) parse their input, call one of these, and format.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from models.state import TRANSITIONS, JobState, Transition
from worker.database import Database, TaskQueue, publish
from worker.errors import (
    IdempotencyConflict,
    InvalidTransition,
    JobNotFound,
    UnknownErrorCode,
)
from worker.faults import CATALOGUE
from worker.providers.base import Provider
from worker.repository import Repository
from worker.usecases.callbacks import CallbackTargets
from worker.usecases.intake import Intake
from worker.usecases.job_request import JobRequest, SourceUrls
from worker.values.ids import new_id
from worker.values.records import Cursor, JobDetail, JobFilter, JobRecord, NewJob, QueueFigures
from worker.values.routing import DEFAULT_ROUTING, Routing

#: The states an ops retry takes a job from.
RETRYABLE_STATES = tuple(sorted(TRANSITIONS[Transition.RETRY].sources))
#: What a retry by filter takes when it names no state: failed jobs only. A canceled job
#: was stopped on purpose (by a producer, an operator, or its batch's budget), so it is
#: brought back only when the filter asks for canceled jobs by name.
DEFAULT_RETRY_STATES = (JobState.FAILED,)


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What a retry by filter matched and did (nothing, on a dry run), with a sample."""

    matched: int
    retried: int
    sample: tuple[JobRecord, ...]
    dry_run: bool


#: What a cancel by filter takes when it names no state: every unfinished job.
UNFINISHED_STATES = tuple(sorted(TRANSITIONS[Transition.CANCEL].sources))


class Jobs:
    """The use cases producers and ops call."""

    def __init__(
        self,
        db: Database,
        queue: TaskQueue,
        providers: Mapping[str, Provider],
        default_providers: Sequence[str],
        max_attempts: int,
        callback_targets: CallbackTargets | None = None,
        sources: SourceUrls | None = None,
        default_routing: Routing = DEFAULT_ROUTING,
    ) -> None:
        self._db = db
        self._queue = queue
        self._max_attempts = max_attempts
        #: Where a new job may run and what its URLs may point at (batches check theirs too).
        self.intake = Intake(providers, default_providers, callback_targets, sources)
        #: How a job's providers share it when the job (or its batch) does not say.
        self.default_routing = default_routing

    def create(
        self, request: JobRequest, idempotency_key: str | None = None
    ) -> tuple[JobRecord, bool]:
        """Queue a job; returns it and whether it was created now.

        With an ``idempotency_key`` the same key and body give back the first job, and the
        same key with another body raises :class:`IdempotencyConflict`.
        """
        fingerprint = request.fingerprint()
        self.intake.check_callback_url(request.callback_url)
        self.intake.check_source(request.input.image_url)
        chosen = request.routing or self.default_routing
        eligible, excluded = self.intake.route(
            request.model, request.input, request.providers, chosen
        )
        steps = self.intake.plan_steps(
            request.model, request.input, request.providers, request.steps, chosen
        )
        new = NewJob(
            id=new_id(),
            model=request.model,
            input=request.input.model_dump(mode="json", exclude_none=True),
            providers=eligible,
            excluded_providers=excluded,
            max_attempts=self._max_attempts,
            priority=request.priority,
            external_id=request.external_id,
            callback_url=request.callback_url,
            metadata=request.metadata,
            idempotency_key=idempotency_key,
            request_hash=fingerprint,
            quality=None if request.quality is None else request.quality.to_json(),
            steps=tuple(steps),
            callback_events=request.callback_events,
            routing=chosen,
        )
        with self._db.transaction() as repo:
            created = repo.insert_job(new)
            job = (
                repo.job(new.id) if created else repo.job_by_idempotency_key(idempotency_key or "")
            )
        if job is None:  # pragma: no cover - the insert or the conflict guarantees a row
            raise JobNotFound
        if not created and job.request_hash != fingerprint:
            raise IdempotencyConflict(key=idempotency_key)
        return job, created

    def get(self, job_id: uuid.UUID) -> JobDetail:
        """A job with its attempts, outputs and history."""
        with self._db.transaction() as repo:
            detail = repo.detail(job_id)
        if detail is None:
            raise JobNotFound(job_id=str(job_id))
        return detail

    def list(
        self, where: JobFilter, limit: int = 50, after: Cursor | None = None
    ) -> tuple[list[JobRecord], Cursor | None]:
        """A page of jobs, newest first, and the cursor of the next page (None at the end)."""
        check_error_code(where.error_code)
        with self._db.transaction() as repo:
            jobs = repo.list_jobs(where, limit + 1, after)
        if len(jobs) <= limit:
            return jobs, None
        last = jobs[limit - 1]
        return jobs[:limit], Cursor(last.created_at, last.id)

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        with self._db.transaction() as repo:
            return repo.count_by_state()

    def queue_figures(self) -> QueueFigures:
        """What waits: queued jobs by provider, the oldest due, open batches and callbacks."""
        with self._db.transaction() as repo:
            return repo.queue_figures()

    def cancel(self, job_id: uuid.UUID, reason: str | None = None) -> JobRecord:
        """Cancel a job that has not finished; the provider is asked to stop, best effort."""
        with self._db.transaction() as repo:
            before = repo.cancel(job_id, reason)
            after = repo.job(job_id)
        if after is None:
            raise JobNotFound(job_id=str(job_id))
        if before is None:
            raise InvalidTransition(
                f"job {job_id} is {after.state}; only queued, submitting, running or "
                "finalizing jobs can be canceled",
                state=after.state.value,
            )
        if before.state in {JobState.SUBMITTING, JobState.RUNNING}:
            publish(self._queue.cancel_at_provider, job_id, before.attempt)
        return after

    def retry_matching(
        self, where: JobFilter, reason: str, *, dry_run: bool, sample_size: int = 10
    ) -> RetryReport:
        """Retry every job matching ``where`` (ops after an outage).

        ``where.states`` names failed and/or canceled; without it only failed jobs are
        retried (:data:`DEFAULT_RETRY_STATES`). ``where.error_code`` must be a known code.
        A dry run counts and samples what would be retried and changes nothing; after a
        real retry the sample shows the jobs as they are now.
        """
        check_error_code(where.error_code)
        where = replace(where, states=tuple(where.states) or DEFAULT_RETRY_STATES)
        return self._by_filter(
            where, dry_run, sample_size, lambda repo: len(repo.retry_matching(where, reason))
        )

    def cancel_matching(
        self, where: JobFilter, reason: str, *, dry_run: bool, sample_size: int = 10
    ) -> RetryReport:
        """Cancel every unfinished job matching ``where``; providers are asked to stop.

        The report's ``retried`` counts the jobs canceled. A dry run counts and samples
        what would be canceled and changes nothing.
        """
        check_error_code(where.error_code)
        unfinished = tuple(s for s in where.states if s in UNFINISHED_STATES)
        where = replace(where, states=unfinished or UNFINISHED_STATES)
        canceled: list[tuple[uuid.UUID, int, JobState]] = []

        def cancel(repo: Repository) -> int:
            canceled.extend(repo.cancel_matching(where, reason))
            return len(canceled)

        report = self._by_filter(where, dry_run, sample_size, cancel)
        for job_id, attempt, before in canceled:
            if before in {JobState.SUBMITTING, JobState.RUNNING}:
                publish(self._queue.cancel_at_provider, job_id, attempt)
        return report

    def _by_filter(
        self, where: JobFilter, dry_run: bool, sample_size: int, act: Callable[[Repository], int]
    ) -> RetryReport:
        """Count and sample what ``where`` matches; unless a dry run, ``act`` on it (how
        many it moved) and show the sample as it is now."""
        with self._db.transaction() as repo:
            matched = repo.count_matching(where)
            sample = tuple(repo.list_jobs(where, sample_size, None))
        if dry_run or matched == 0:
            return RetryReport(matched, 0, sample, dry_run)
        with self._db.transaction() as repo:
            acted = act(repo)
            now = [repo.job(job.id) for job in sample]
        fresh = tuple(job for job in now if job is not None)
        return RetryReport(matched, acted, fresh, dry_run=False)

    def retry(self, job_id: uuid.UUID, reason: str | None = None) -> JobRecord:
        """Send a failed or canceled job round again, with a fresh attempt budget."""
        with self._db.transaction() as repo:
            moved = repo.retry(job_id, reason)
            job = repo.job(job_id)
        if job is None:
            raise JobNotFound(job_id=str(job_id))
        if not moved:
            raise InvalidTransition(
                f"job {job_id} is {job.state}; only failed or canceled jobs can be retried",
                state=job.state.value,
            )
        return job


def check_error_code(code: str | None) -> None:
    """Raise :class:`UnknownErrorCode` unless ``code`` is None or a code of the catalogue."""
    if code is not None and code not in CATALOGUE:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownErrorCode(
            f"error_code: {code!r} is not an error code editq gives; known codes: {known}",
            fields=[{"field": "error_code", "rule": "unknown_error_code", "message": known}],
        )
