"""Thin Celery tasks: each takes ids, calls one pipeline step, and returns what happened.

Each names its job (and attempt) on every line logged while it runs.
"""

from __future__ import annotations

import uuid

from worker.celery_app import app
from worker.logs import task_context
from worker.wiring import process_container


@app.task(name="editq.submit")
def submit(job_id: str, attempt: int) -> str:
    """Send one attempt to its provider."""
    with task_context(job_id=job_id, attempt=attempt):
        return process_container().pipeline().submit(uuid.UUID(job_id), attempt)


@app.task(name="editq.poll")
def poll(job_id: str, attempt: int) -> str:
    """Ask the provider where an attempt is."""
    with task_context(job_id=job_id, attempt=attempt):
        return process_container().pipeline().poll(uuid.UUID(job_id), attempt)


@app.task(name="editq.finalize")
def finalize(job_id: str, attempt: int) -> str:
    """Copy a finished attempt's outputs to storage."""
    with task_context(job_id=job_id, attempt=attempt):
        return process_container().pipeline().finalize(uuid.UUID(job_id), attempt)


@app.task(name="editq.finish_batch")
def finish_batch(batch_id: str) -> str:
    """Write a finished batch's results.jsonl and errors.jsonl, and end it."""
    with task_context(batch_id=batch_id):
        return process_container().batches("worker").finish(uuid.UUID(batch_id))


@app.task(name="editq.cancel_at_provider")
def cancel_at_provider(job_id: str, attempt: int) -> str:
    """Ask the provider to stop an attempt of a canceled job."""
    with task_context(job_id=job_id, attempt=attempt):
        return process_container().pipeline().cancel_at_provider(uuid.UUID(job_id), attempt)


@app.task(name="editq.deliver_callback")
def deliver_callback(callback_id: str, attempt: int) -> str:
    """Make one try of a producer callback."""
    with task_context(callback_id=callback_id):
        return process_container().callbacks("worker").deliver(uuid.UUID(callback_id), attempt)
