"""The machine: dispatch, submit, poll, webhooks, finalize, and the scheduler's tick.

Every step is short (one provider call or one transaction) so no worker slot is held while
a provider computes. Each re-reads the job and applies a guarded transition, so a
duplicated, late or lost message can neither lose nor double a job.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from models.state import JobState
from worker.database import Database, TaskQueue, publish
from worker.errors import UnknownProvider
from worker.faults import PROVIDER_TIMEOUT, STEP_SOURCE_MISSING, ErrorKind, Fault
from worker.fetch import Fetcher
from worker.logs import bind_job
from worker.pipeline import dispatch as routing
from worker.pipeline.failures import Failures
from worker.pipeline.finalize import Finalizer
from worker.pipeline.leases import LeaseKeeper
from worker.pipeline.outputs import OutputCopier, result_json, upload_key
from worker.pipeline.policy import Policy, TickReport
from worker.pipeline.quality_gate import QualityGate
from worker.pipeline.reconcile import reconcile
from worker.providers.base import (
    AttemptRef,
    Completed,
    Failed,
    Outcome,
    Pending,
    Provider,
    ProviderCallError,
)
from worker.storage.base import Storage
from worker.usecases import callbacks
from worker.values import chain
from worker.values.canonical import EditInput
from worker.values.records import AttemptRecord, JobRecord, OutputRecord
from worker.values.retry import poll_interval

log = logging.getLogger("editq.pipeline")

#: Most rows one tick looks at for each kind of repair.
_TICK_BATCH = 500
#: How long the presigned GET of a later step's source stays valid. A provider downloads
#: it when it starts the work, which a long queue there can put hours after the submit.
_SOURCE_URL_SECONDS = 24 * 3600


class Pipeline:
    """The steps a job goes through after it was queued."""

    def __init__(
        self,
        db: Database,
        providers: Mapping[str, Provider],
        storage: Storage,
        fetcher: Fetcher,
        queue: TaskQueue,
        policy: Policy,
        leases: LeaseKeeper,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._providers = providers
        self._storage = storage
        self._queue = queue
        self._policy = policy
        self._leases = leases
        self._failures = Failures(db, policy, rng)
        self._latency = routing.LatencyEstimates()
        self._finalizer = Finalizer(
            db,
            providers,
            OutputCopier(storage, fetcher),
            QualityGate(
                fetcher, storage, policy.quality, policy.quality_default, policy.quality_gate
            ),
            policy,
            leases,
            self._failures.after,
        )

    # -- dispatch -------------------------------------------------------------------------

    def dispatch(self) -> int:
        """Claim queued jobs within each provider's limit, rate and breaker; send them on."""
        with self._db.transaction() as repo:
            latency = self._latency.get(repo) if self._policy.latency_aware else {}
            claimed = routing.dispatch(
                repo, self._policy.limits, self._policy.lease_seconds, latency
            )
        for c in claimed:
            self._send(self._queue.submit, c.job_id, c.attempt)
        return len(claimed)

    def _send(self, send: Callable[[uuid.UUID, int], None], job_id: uuid.UUID, number: int) -> None:
        """Publish a submit or finalize; when the broker refuses, the next tick sends it."""
        if not publish(send, job_id, number):
            with self._db.transaction() as repo:
                repo.lease_due_now(job_id, number)

    # -- submit ---------------------------------------------------------------------------

    def submit(self, job_id: uuid.UUID, number: int) -> str:
        """Make the one provider call of attempt ``number``; returns what happened."""
        with self._db.transaction() as repo:
            found = repo.job_at(job_id, number, JobState.SUBMITTING)
            if found is None:
                return "stale"
            job, attempt = found
            bind_job(job, attempt.number, attempt.provider)
            source = repo.step_source(job) if job.step > 1 else None
            if not repo.start_sending(attempt.id):
                return "duplicate"
        if job.step > 1 and source is None:
            return self._failures.after(job, attempt, _source_missing(job))
        return self._call(job, attempt, source)

    def _call(self, job: JobRecord, attempt: AttemptRecord, source: OutputRecord | None) -> str:
        """Send the attempt; ``source`` is the stored output a chain's later step edits."""
        provider = self._providers[attempt.provider]
        # A later step edits the step before's output as stored in our bucket, never the
        # provider's own (expiring) URL of it.
        source_url = None
        if source is not None:
            source_url = self._storage.presign_get(source.key, _SOURCE_URL_SECONDS)
        edit = chain.job_edit(job, source_url)
        public_url = self._policy.public_url
        webhook = provider.webhook_url(public_url, attempt.id) if public_url else None
        upload = self._upload_url(job, edit) if provider.uploads_directly else None
        try:
            with self._leases.holding(job.id, attempt.number):
                sent = provider.submit(job.model, edit, attempt.id, webhook, upload)
        except ProviderCallError as exc:
            if exc.fault.code == PROVIDER_TIMEOUT:
                return self._unanswered(attempt, exc.fault)
            if exc.fault.kind is ErrorKind.RATE_LIMITED:
                # The provider is full: its learned limit comes down at once.
                with self._db.transaction() as repo:
                    routing.record_rate_limit(repo, attempt.provider, self._policy.limits.learning)
            return self._failures.after(job, attempt, exc.fault)
        first_poll = self._policy.webhook_grace_seconds if webhook else self._policy.poll_seconds
        limits = self._policy.limits
        with self._db.transaction() as repo:
            repo.record_success(attempt.provider)
            ceiling = limits.capacity.get(attempt.provider, 0)
            repo.grow_limit(attempt.provider, ceiling, limits.learning)
            moved = repo.mark_running(attempt, sent.request_id, dict(sent.data), first_poll)
            canceled = not moved and repo.record_canceled_request(
                attempt.id, sent.request_id, dict(sent.data)
            )
        if canceled:
            # Canceled while the call was in flight: nobody wants this request any more.
            ref = AttemptRef(attempt.id, sent.request_id, sent.data)
            self._cancel_remote(attempt.provider, ref, job.id)
            return "canceled"
        if not moved:
            return "overtaken"
        log.info("submitted to %s as %s", attempt.provider, sent.request_id)
        return "running"

    def _unanswered(self, attempt: AttemptRecord, fault: Fault) -> str:
        """A submit that timed out may have been accepted: do not send a new attempt now.

        The attempt stays ``sending`` under its lease, exactly as if its worker had died
        mid-call, and the reconcile tick recovers it the same careful way (the provider's
        callback, a repeat the provider recognises, or the grace period).
        """
        log.warning("submit of %s timed out; left to reconcile: %s", attempt.id, fault.message)
        with self._db.transaction() as repo:
            routing.record_failure(repo, attempt.provider, self._policy.limits.breaker)
        return "unanswered"

    def _upload_url(self, job: JobRecord, edit: EditInput) -> str | None:
        # One presigned PUT is one object: a provider that would write several outputs to
        # it would overwrite them, so several outputs are downloaded by finalize instead.
        if edit.num_images != 1:
            return None
        key = upload_key(job.id, job.step, edit)
        return self._storage.presign_put(key, None, int(self._policy.lease_seconds) + 3600)

    # -- results: poll and webhook --------------------------------------------------------

    def poll(self, job_id: uuid.UUID, number: int) -> str:
        """Ask the provider about a running attempt and act on the answer."""
        with self._db.transaction() as repo:
            found = repo.job_at(job_id, number, JobState.RUNNING)
        if found is None:
            return "stale"
        job, attempt = found
        bind_job(job, attempt.number, attempt.provider)
        provider = self._providers[attempt.provider]
        try:
            outcome = provider.status(_ref(attempt))
        except ProviderCallError as exc:
            if exc.fault.kind is ErrorKind.TERMINAL:
                return self._failures.after(job, attempt, exc.fault)
            # The next tick asks again; a flaky status endpoint is not the job's failure,
            # but it is the provider's.
            if routing.counts_against(exc.fault):
                with self._db.transaction() as repo:
                    routing.record_failure(repo, attempt.provider, self._policy.limits.breaker)
            return "poll_failed"
        since = attempt.submitted_at or attempt.created_at
        age = (datetime.now(UTC) - since).total_seconds()
        return self._record(job, attempt, outcome, None, poll_age=age)

    def webhook(
        self,
        provider_name: str,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, str],
    ) -> str:
        """Verify a provider callback and apply it as a poll would. Raises WebhookRejected."""
        provider = self._providers.get(provider_name)
        if provider is None:
            raise UnknownProvider(provider=provider_name)
        event = provider.parse_webhook(headers, body, query)
        with self._db.transaction() as repo:
            found = repo.attempt_with_job(event.attempt_id) if event.attempt_id else None
        if found is None or found[1].provider != provider_name:
            return "unknown_attempt"
        job, attempt = found
        bind_job(job, attempt.number, attempt.provider)
        if attempt.request_id is not None and attempt.request_id != event.request_id:
            return "request_mismatch"
        outcome = event.outcome
        if isinstance(outcome, Pending) and event.settle is not None:
            outcome = event.settle(_ref(attempt))
        if isinstance(outcome, Pending):
            # Part of the attempt is done (one image of several): ask for the whole now.
            with self._db.transaction() as repo:
                repo.schedule_poll(job.id, attempt.number, 0)
            publish(self._queue.poll, job.id, attempt.number)
            return "poll_requested"
        return self._record(job, attempt, outcome, event.request_id)

    def _record(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        outcome: Outcome,
        request_id: str | None,
        poll_age: float = 0.0,
    ) -> str:
        if isinstance(outcome, Failed):
            return self._failures.after(job, attempt, outcome.fault)
        if isinstance(outcome, Completed):
            result = result_json(outcome, upload_key(job.id, job.step, chain.job_edit(job)))
            with self._db.transaction() as repo:
                repo.record_success(attempt.provider)
                moved = repo.begin_finalize(attempt, request_id, result, self._policy.lease_seconds)
            if not moved:
                return "duplicate"
            log.info(
                "%s finished the attempt: %d output(s)", attempt.provider, len(outcome.outputs)
            )
            self._send(self._queue.finalize, job.id, attempt.number)
            return "finalizing"
        wait = poll_interval(poll_age, self._policy.poll_seconds, self._policy.poll_max_seconds)
        with self._db.transaction() as repo:
            repo.schedule_poll(job.id, attempt.number, wait)
        return "pending"

    # -- finalize -------------------------------------------------------------------------

    def finalize(self, job_id: uuid.UUID, number: int) -> str:
        """Copy every output of a finished attempt into storage, then succeed the job once."""
        return self._finalizer.finalize(job_id, number)

    # -- cancel ---------------------------------------------------------------------------

    def cancel_at_provider(self, job_id: uuid.UUID, number: int) -> str:
        """Ask the provider to stop an attempt of a canceled job (best effort)."""
        with self._db.transaction() as repo:
            attempt = repo.current_attempt(job_id, number)
        if attempt is None or attempt.request_id is None:
            return "nothing_to_cancel"
        return self._cancel_remote(attempt.provider, _ref(attempt), job_id)

    def _cancel_remote(self, provider: str, ref: AttemptRef, job_id: uuid.UUID) -> str:
        try:
            self._providers[provider].cancel(ref)
        except ProviderCallError as exc:
            log.info("provider cancel of %s failed: %s", job_id, exc)
            return "cancel_failed"
        return "cancel_requested"

    # -- the scheduler's tick -------------------------------------------------------------

    def tick(self) -> TickReport:
        """Dispatch, send due polls, and repair expired leases."""
        dispatched = self.dispatch()
        with self._db.transaction() as repo:
            # Pushed back by the longest interval; the poll itself sets the real next time.
            due = repo.due_polls(_TICK_BATCH, self._policy.poll_max_seconds)
        for job_id, number in due:
            publish(self._queue.poll, job_id, number)
        repaired = self.reconcile()
        sent = callbacks.publish_due(self._db, self._queue, self._policy.callbacks)
        return TickReport(dispatched, len(due), repaired, sent)

    def reconcile(self) -> int:
        """Repair jobs whose lease expired: their worker died or their message was lost."""
        return reconcile(self._db, self._providers, self._queue, self._policy)


def _source_missing(job: JobRecord) -> Fault:
    return Fault(
        ErrorKind.TERMINAL,
        STEP_SOURCE_MISSING,
        f"step {job.step} edits output {chain.source_output(job.steps, job.step)} of step "
        f"{job.step - 1}, which is no longer recorded; retry the job from its first step",
    )


def _ref(attempt: AttemptRecord) -> AttemptRef:
    return AttemptRef(attempt.id, attempt.request_id, attempt.provider_data)
