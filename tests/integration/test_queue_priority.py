"""On the real broker, a submit waiting behind output copies is taken first."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery.signals import task_prerun

from tests.integration.conftest import worker_thread
from tests.waiting import wait_until
from worker.wiring import Container

pytestmark = pytest.mark.integration


def test_a_submit_queued_behind_finalizes_runs_before_them(container: Container) -> None:
    ran: list[tuple[str, str]] = []

    def note(sender: Any = None, args: Any = (), **_: Any) -> None:
        ran.append((sender.name, args[0] if args else ""))

    # Messages for jobs that do not exist: each task finds nothing to do and returns.
    finalizes = [str(uuid.uuid4()) for _ in range(5)]
    submit = str(uuid.uuid4())
    for job_id in finalizes:
        container.queue.finalize(uuid.UUID(job_id), 1)
    container.queue.submit(uuid.UUID(submit), 1)

    task_prerun.connect(note, weak=False)
    try:
        # One message at a time, so the order they are taken in is the order they run in.
        with worker_thread(container, pool="solo", concurrency=1):
            wait_until(lambda: {j for _, j in ran} >= {submit, *finalizes}, what="all six ran")
    finally:
        task_prerun.disconnect(note)
    ours = [entry for entry in ran if entry[1] in {submit, *finalizes}]
    assert ours[0] == ("editq.submit", submit)
    assert sorted(ours[1:]) == sorted(("editq.finalize", job_id) for job_id in finalizes)
