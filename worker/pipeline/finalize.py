"""Finalize: read a finished attempt's outputs, check them, store them, succeed the job once.

A chain's step other than its last does not succeed the job: its outputs are stored the
same way and the job advances to its next step (queued at once, in the same transaction).

Every output passes the quality gate (:mod:`worker.pipeline.quality_gate`) before the job
may succeed. Outputs that fail a check are kept under ``outputs/{job}/rejected/``, the
attempt is charged (the provider did the work), and the job's quality policy decides: it
fails with the check's code, goes round again on the next provider, or succeeds with the
failed check kept as a flag.

The copy runs under the job's finalize lease, which :class:`LeaseKeeper` renews while it
runs, so a worker that dies mid-copy is known dead within one lease and another finalize
takes over while the provider's URLs still work.

An output that is gone (404, 410, an expired signature) is not paid for again at once:
the provider is first asked for the attempt's result again, which may carry fresh URLs
(Runflow signs its output URLs when a run is read). Either way the job's history says
what was asked and what came back (a ``refetch_result`` line). Only when no fresh URL
helps is the job requeued as ``output_unavailable``, a new, paid attempt.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from models.state import JobState
from worker.database import Database
from worker.faults import OUTPUT_UNAVAILABLE, ErrorKind, Fault
from worker.fetch import FetchError
from worker.logs import bind_job
from worker.pipeline.leases import LeaseKeeper
from worker.pipeline.outputs import Fetched, OutputCopier, result_json, upload_key
from worker.pipeline.policy import Policy
from worker.pipeline.quality_gate import QualityGate, Verdict
from worker.providers.base import AttemptRef, Completed, Provider, ProviderCallError
from worker.storage.base import StorageError
from worker.values import chain
from worker.values.images import NotAnImage
from worker.values.observations import Wait, Waited
from worker.values.pricing import list_price
from worker.values.records import AttemptRecord, JobRecord, OutputRecord, Rejection

log = logging.getLogger("editq.pipeline")

#: What finalize does with a failed attempt: the pipeline's retry decision.
OnFailure = Callable[[JobRecord, AttemptRecord, Fault, Mapping[str, Any], Rejection | None], str]


class Finalizer:
    """Copies outputs and succeeds jobs; hands a lost output to ``on_failure``."""

    def __init__(
        self,
        db: Database,
        providers: Mapping[str, Provider],
        copier: OutputCopier,
        gate: QualityGate,
        policy: Policy,
        leases: LeaseKeeper,
        on_failure: OnFailure,
    ) -> None:
        self._db = db
        self._providers = providers
        self._copier = copier
        self._gate = gate
        self._policy = policy
        self._leases = leases
        self._on_failure = on_failure

    def finalize(self, job_id: uuid.UUID, number: int) -> str:
        """Copy every output of attempt ``number``, then succeed the job (once)."""
        token = uuid.uuid4()
        started = time.monotonic()
        with self._db.transaction() as repo:
            if not repo.take_finalize_lease(job_id, number, token, self._policy.lease_seconds):
                return "stale"
            found = repo.job_at(job_id, number, JobState.FINALIZING)
            # The lease was just taken on this finalizing attempt, which has its result.
            assert found is not None
            job, attempt = found
            bind_job(job, attempt.number, attempt.provider)
            kept = repo.source_facts(job_id) if self._gate.enabled else None
            source = repo.step_source(job) if self._gate.enabled and job.step > 1 else None
        assert attempt.result is not None
        with self._leases.holding(job_id, number):
            try:
                fetched = self._read(job, attempt, attempt.result)
                if isinstance(fetched, str):
                    return fetched
                verdict = self._gate.judge(job, attempt, fetched, kept, source)
                if verdict is not None and verdict.action != "accept":
                    return self._reject(job, attempt, fetched, verdict)
                stored = [
                    self._copier.store(job.id, job.step, f, _shown(verdict, f.index))
                    for f in fetched
                ]
            except (FetchError, StorageError) as exc:
                return self._defer(job_id, token, exc)
            except NotAnImage as exc:  # only with the gate off: it would have said so
                return self._lost(job, attempt, f"the output is not an image: {exc}", {})
        return self._finish(job, attempt, token, stored, verdict, started)

    def _finish(
        self,
        job: JobRecord,
        attempt: AttemptRecord,
        token: uuid.UUID,
        stored: list[OutputRecord],
        verdict: Verdict | None,
        started: float,
    ) -> str:
        """Record the stored outputs: the job succeeds, or its chain goes on a step."""
        reports = None if verdict is None else [dict(o.quality or {}, key=o.key) for o in stored]
        cost = self._cost(job, attempt)
        with self._db.transaction() as repo:
            if not job.on_last_step:
                # A chain's step: its outputs are kept and the next step queues, at once.
                done = repo.advance(job, attempt, token, stored, cost, reports)
            else:
                new_source = None if verdict is None else verdict.new_source
                done = repo.succeed(job, attempt, token, stored, cost, reports, new_source)
            if done:
                took = time.monotonic() - started
                repo.observed.append(Waited(Wait.FINALIZE, attempt.provider, took))
        if not done:
            return "stale"
        if not job.on_last_step:
            log.info(
                "step %d stored (%d output(s), $%s); step %d queued",
                job.step,
                len(stored),
                cost,
                job.step + 1,
            )
            return "advanced"
        log.info("succeeded: %d output(s) stored, $%s", len(stored), cost)
        return "succeeded"

    def _cost(self, job: JobRecord, attempt: AttemptRecord) -> Decimal:
        """What the attempt cost: the provider's own figure, or the list price."""
        assert attempt.result is not None
        reported = attempt.result.get("cost_usd")
        if reported is not None:
            return Decimal(reported)
        return list_price(attempt.provider, job.model, len(attempt.result["outputs"]))

    def _reject(
        self, job: JobRecord, attempt: AttemptRecord, fetched: list[Fetched], verdict: Verdict
    ) -> str:
        """Keep outputs that failed a check, charge the attempt, and let the policy decide."""
        reports = [
            dict(report.to_json(), key=self._copier.keep_rejected(job.id, attempt.number, f))
            for f, report in zip(fetched, verdict.reports, strict=True)
        ]
        kind = ErrorKind.RETRYABLE if verdict.action == "retry" else ErrorKind.TERMINAL
        assert verdict.code is not None
        fault = Fault(kind, verdict.code, verdict.message())
        log.info("outputs of %s failed the %s check: %s", job.id, verdict.failed, verdict.action)
        details = {"quality": verdict.failed, "rejected": [r["key"] for r in reports]}
        rejection = Rejection(self._cost(job, attempt), reports, verdict.new_source)
        return self._on_failure(job, attempt, fault, details, rejection)

    def _read(
        self, job: JobRecord, attempt: AttemptRecord, result: Mapping[str, Any]
    ) -> list[Fetched] | str:
        """Every output's bytes, or what became of the job when one is lost for good.

        Raises a transient :class:`FetchError` or :class:`StorageError`: try again later.
        """
        asked: str | None = None
        while True:
            try:
                return self._copier.fetch_all(result)
            except FetchError as exc:
                if not exc.permanent:
                    raise
                if asked is not None:  # a fresh result did not help either
                    return self._lost(job, attempt, str(exc), {"refetched": asked})
                gone = str(exc)
            fresh, asked = self._ask_again(job, attempt, result)
            if fresh is None:
                return self._lost(job, attempt, gone, {"refetched": asked})
            result = fresh

    def _ask_again(
        self, job: JobRecord, attempt: AttemptRecord, result: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str]:
        """A fresher result from the provider, if it has one with other URLs; and what it said.

        The answer is written to the job's history either way, and a fresh result replaces
        the attempt's, so a finalize that runs after this one copies from it too.
        """
        provider = self._providers[attempt.provider]
        ref = AttemptRef(attempt.id, attempt.request_id, attempt.provider_data)
        fresh: dict[str, Any] | None = None
        detail = ""
        try:
            outcome = provider.status(ref)
        except ProviderCallError as exc:
            asked, detail = "provider_unreachable", exc.fault.message
        else:
            if not isinstance(outcome, Completed):
                asked = "no_result"
                detail = type(outcome).__name__.lower()
            else:
                candidate = result_json(outcome, upload_key(job.id, job.step, chain.job_edit(job)))
                if _urls(candidate) == _urls(result):
                    asked = "same_urls"
                else:
                    asked, fresh = "fresh_urls", candidate
        with self._db.transaction() as repo:
            if fresh is not None:
                repo.refresh_result(attempt.id, fresh)
            repo.note(
                job.id,
                attempt.number,
                "refetch_result",
                JobState.FINALIZING,
                {"provider": attempt.provider, "outcome": asked, "detail": detail},
                reason=asked,
            )
        log.info(
            "finalize of %s asked %s for its result again: %s", job.id, attempt.provider, asked
        )
        return fresh, asked

    def _lost(
        self, job: JobRecord, attempt: AttemptRecord, message: str, details: Mapping[str, Any]
    ) -> str:
        fault = Fault(ErrorKind.RETRYABLE, OUTPUT_UNAVAILABLE, message)
        return self._on_failure(job, attempt, fault, details, None)

    def _defer(self, job_id: uuid.UUID, token: uuid.UUID, exc: Exception) -> str:
        log.warning("finalize of %s deferred: %s", job_id, exc)
        with self._db.transaction() as repo:
            repo.release_finalize_lease(job_id, token, self._policy.finalize_retry_seconds)
        return "deferred"


def _shown(verdict: Verdict | None, index: int) -> dict[str, Any] | None:
    """Output ``index``'s report as it is kept; a failed check that was accepted is a flag."""
    if verdict is None:
        return None
    report = verdict.reports[index].to_json()
    if report["failed"] is not None and report["failed"] not in report["flags"]:
        report["flags"].append(report["failed"])
    return report


def _urls(result: Mapping[str, Any]) -> list[str]:
    return [str(output.get("url")) for output in result.get("outputs", [])]
