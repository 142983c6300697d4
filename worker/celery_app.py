"""The Celery application: configured for at-least-once delivery of id-only messages.

Creating the app reads nothing; :func:`configure` applies the settings when a process
starts (``editq worker``, the API, the scheduler).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from worker.config import Settings
from worker.logs import guard

app = Celery("editq", include=["worker.tasks"])


@after_setup_logger.connect
@after_setup_task_logger.connect
def _guard_worker_logs(logger: logging.Logger, **_: Any) -> None:
    # Celery builds its log handlers when a worker starts; keep secrets out of them.
    guard(logger)


def configure(celery: Celery, settings: Settings) -> None:
    """Point ``celery`` at the broker and apply the delivery guarantees editq relies on."""
    celery.conf.update(
        broker_url=settings.broker_url,
        task_default_queue=settings.queue,
        # At least once: acknowledge after the task ran, and hand a task back to the queue
        # when the process running it dies (OOM, SIGKILL) instead of acknowledging it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per process: a slow provider call never hides others.
        worker_prefetch_multiplier=1,
        # JSON only: no pickle, so a message can never run code.
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # Tasks are short and never use countdowns, so redelivery after this is only for a
        # message whose worker vanished; long waits live in PostgreSQL rows.
        broker_transport_options={"visibility_timeout": 600},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )


#: Message priorities (on Redis, 0 is taken first). Submit and poll go first:
#: a claimed job holds a provider slot until its submit runs, and a poll is how a slot
#: frees without webhooks. Copying outputs, batch files and callbacks hold no slot, and
#: their rows' leases keep them safe while they wait behind.
FIRST = 0
AFTER = 6


class CeleryQueue:
    """The :class:`worker.database.TaskQueue` that publishes Celery messages."""

    def __init__(self, celery: Celery, queue: str) -> None:
        self._celery = celery
        self._queue = queue

    def _send(self, name: str, *args: object, priority: int = FIRST) -> None:
        self._celery.send_task(name, args=list(args), queue=self._queue, priority=priority)

    def submit(self, job_id: uuid.UUID, attempt: int) -> None:
        """Send an attempt to its provider."""
        self._send("editq.submit", str(job_id), attempt)

    def poll(self, job_id: uuid.UUID, attempt: int) -> None:
        """Ask the provider about an attempt."""
        self._send("editq.poll", str(job_id), attempt)

    def finalize(self, job_id: uuid.UUID, attempt: int) -> None:
        """Copy an attempt's outputs."""
        self._send("editq.finalize", str(job_id), attempt, priority=AFTER)

    def cancel_at_provider(self, job_id: uuid.UUID, attempt: int) -> None:
        """Ask the provider to stop an attempt."""
        self._send("editq.cancel_at_provider", str(job_id), attempt, priority=AFTER)

    def finish_batch(self, batch_id: uuid.UUID) -> None:
        """Write a finished batch's result files."""
        self._send("editq.finish_batch", str(batch_id), priority=AFTER)

    def deliver_callback(self, callback_id: uuid.UUID, attempt: int) -> None:
        """Make one try of a producer callback."""
        self._send("editq.deliver_callback", str(callback_id), attempt, priority=AFTER)
