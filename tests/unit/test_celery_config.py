"""Celery is set up for at-least-once delivery of JSON messages that carry ids only."""

from __future__ import annotations

import uuid

from celery import Celery

from worker.celery_app import CeleryQueue, configure
from worker.config import Settings


def configured() -> Celery:
    celery = Celery("editq-test")
    configure(celery, Settings(_env_file=None, broker_url="memory://", queue="q1"))
    return celery


def test_delivery_is_at_least_once_and_json_only() -> None:
    conf = configured().conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_default_queue == "q1"


def test_messages_carry_ids_only() -> None:
    celery = configured()
    sent: list[tuple[str, list[object], str]] = []

    def record(name: str, args: list[object], queue: str, priority: int) -> None:
        sent.append((name, args, queue))

    celery.send_task = record  # type: ignore[method-assign, assignment]  # a recorder stands in for the broker
    job_id = uuid.uuid4()
    queue = CeleryQueue(celery, "q1")
    queue.submit(job_id, 3)
    queue.finalize(job_id, 3)
    assert sent == [
        ("editq.submit", [str(job_id), 3], "q1"),
        ("editq.finalize", [str(job_id), 3], "q1"),
    ]
