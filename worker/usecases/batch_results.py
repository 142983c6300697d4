"""Finishing a batch: its ``results.jsonl`` and ``errors.jsonl``, written once every job ended.

A line per accepted row goes to ``results.jsonl`` (sorted by external id, so two runs of
the same catalog compare line by line), and a line per row without an output to
``errors.jsonl``: a bad row of the file, or a job that failed or was canceled.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC
from typing import IO, Any

from models.state import TERMINAL_STATES, BatchState, JobState
from worker.database import Database
from worker.errors import BatchNotFinished, BatchNotFound
from worker.storage.base import Storage
from worker.values import chain
from worker.values.batch_file import Reject
from worker.values.batch_status import RATE_WINDOW_SECONDS, ResultFiles
from worker.values.callback_events import BATCH_COMPLETED
from worker.values.records import BatchProgress, BatchRecord, JobRecord, OutputRecord


class BatchResults:
    """Writing a finished batch's result files, and handing out their URLs."""

    _db: Database
    _storage: Storage
    #: Lifetime of the presigned URLs in the files and of the files' own URLs.
    _url_seconds: int

    def finish(self, batch_id: uuid.UUID) -> str:
        """Write ``results.jsonl`` and ``errors.jsonl`` to storage and end the batch."""
        with self._db.transaction() as repo:
            batch = repo.batch(batch_id)
        if batch is None or batch.state is not BatchState.FINALIZING:
            return "stale"
        results_key, errors_key = result_keys(batch_id)
        with (
            tempfile.SpooledTemporaryFile(8 << 20) as results,
            tempfile.SpooledTemporaryFile(8 << 20) as errors,
        ):
            with self._db.transaction() as repo:
                _write_lines(errors, (reject_line(r) for r in repo.rejects(batch_id)))
                for job, outputs in repo.batch_jobs(batch_id):
                    _write_lines(results, [self._result_line(job, outputs)])
                    if job.state is not JobState.SUCCEEDED:
                        _write_lines(errors, [failure_line(job)])
            self._upload(results_key, results)
            self._upload(errors_key, errors)
        with self._db.transaction() as repo:
            final = repo.complete_batch(batch_id, results_key, errors_key)
            if final is not None and batch.callback_url:
                done = repo.batch(batch_id)
                progress = repo.progress(batch_id, RATE_WINDOW_SECONDS)
                if done is not None:
                    repo.notify_batch(batch_id, batch.callback_url, batch_event(done, progress))
        return final.value if final else "reopened"

    def _upload(self, key: str, spool: IO[bytes]) -> None:
        spool.seek(0)
        self._storage.put(key, spool.read(), "application/x-ndjson")

    def _result_line(self, job: JobRecord, outputs: Sequence[OutputRecord]) -> dict[str, Any]:
        """A job's line: its final outputs (its last step's), and each step's outputs."""
        shown = [
            asdict(o) | {"url": self._storage.presign_get(o.key, self._url_seconds)}
            for o in outputs
        ]
        line: dict[str, Any] = {
            "external_id": job.external_id,
            "job_id": str(job.id),
            "state": job.state.value,
            "outputs": [o for o in shown if o["step"] == job.length],
            "steps": [
                {
                    "step": step,
                    "prompt": chain.prompt_of(job, step),
                    "outputs": [o for o in shown if o["step"] == step],
                }
                for step in range(1, job.length + 1)
            ],
            "cost_usd": str(job.cost_usd),
        }
        if job.error_code and job.state is not JobState.SUCCEEDED:
            line["error"] = {"code": job.error_code, "message": job.error_message, "step": job.step}
        return line

    def results(self, batch_id: uuid.UUID) -> ResultFiles:
        """Presigned URLs of a finished batch's ``results.jsonl`` and ``errors.jsonl``."""
        with self._db.transaction() as repo:
            batch = repo.batch(batch_id)
        if batch is None:
            raise BatchNotFound(batch_id=str(batch_id))
        if not batch.results_key or not batch.errors_key or batch.state not in _FINISHED:
            raise BatchNotFinished(
                f"batch {batch_id} is {batch.state}; its result files are written when every "
                "job has finished",
                state=batch.state.value,
            )
        return ResultFiles(
            results_key=batch.results_key,
            errors_key=batch.errors_key,
            results_url=self._storage.presign_get(batch.results_key, self._url_seconds),
            errors_url=self._storage.presign_get(batch.errors_key, self._url_seconds),
            expires_in_seconds=self._url_seconds,
        )


_FINISHED = frozenset({BatchState.COMPLETED, BatchState.CANCELED})


def result_keys(batch_id: uuid.UUID) -> tuple[str, str]:
    """Where a batch's ``results.jsonl`` and ``errors.jsonl`` are stored."""
    return f"batches/{batch_id}/results.jsonl", f"batches/{batch_id}/errors.jsonl"


def reject_line(reject: Reject) -> dict[str, Any]:
    """An ``errors.jsonl`` line for a bad row of the file."""
    return {
        "external_id": reject.external_id,
        "line": reject.line,
        "code": "invalid_row",
        "field": reject.field,
        "rule": reject.rule,
        "message": reject.message,
    }


def failure_line(job: JobRecord) -> dict[str, Any]:
    """An ``errors.jsonl`` line for a job that did not succeed."""
    return {
        "external_id": job.external_id,
        "job_id": str(job.id),
        "state": job.state.value,
        "code": job.error_code or job.state.value,
        "message": job.error_message or f"the job was {job.state.value}",
        "step": job.step,
    }


def batch_event(batch: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    """The body of a finished batch's ``batch.completed`` callback."""
    at = batch.completed_at or batch.updated_at
    return {
        "type": BATCH_COMPLETED,
        "timestamp": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": _batch_data(batch, progress),
    }


def _batch_data(batch: BatchRecord, progress: BatchProgress) -> dict[str, Any]:
    return {
        "id": str(batch.id),
        "state": batch.state.value,
        "rows": {
            "total": batch.rows_total,
            "accepted": batch.rows_accepted,
            "rejected": batch.rows_rejected,
        },
        "counts": {s.value: progress.counts.get(s, 0) for s in TERMINAL_STATES},
        "steps": {"total": progress.steps_total, "done": progress.steps_done},
        "cost_usd": str(progress.cost_usd),
        "results_key": batch.results_key,
        "errors_key": batch.errors_key,
        "budget_exhausted": batch.budget_exhausted_at is not None,
        "created_at": batch.created_at.isoformat(),
        "completed_at": batch.completed_at.isoformat() if batch.completed_at else None,
    }


def _write_lines(spool: IO[bytes], lines: Iterable[dict[str, Any]]) -> None:
    for line in lines:
        spool.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
