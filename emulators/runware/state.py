"""What the Runware emulator remembers: tasks and their generations, output files, counters.

Everything here is touched from the event loop only, so nothing is locked.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from emulators.runware.protocol import InferenceTask, TaskError
from emulators.sources import source_sha256


class TaskState(StrEnum):
    """Where an accepted task is in its life; :data:`ALLOWED_MOVES` lists the moves."""

    #: Accepted; waits for a concurrency slot. Admission moves it to RUNNING.
    QUEUED = "queued"
    #: Holds a slot while its generations are made, one after another.
    RUNNING = "running"
    #: Terminal. Every generation succeeded.
    SUCCEEDED = "succeeded"
    #: Terminal. At least one generation failed (the others may have succeeded).
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the task has finished one way or another."""
        return not ALLOWED_MOVES[self]


#: The only moves between states; anything else is refused.
ALLOWED_MOVES: dict[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.RUNNING}),
    TaskState.RUNNING: frozenset({TaskState.SUCCEEDED, TaskState.FAILED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
}


@dataclass(slots=True)
class RunwareTask:
    """One accepted ``imageInference`` task and what has happened to it since."""

    task: InferenceTask
    #: Where URLs handed back for this task start (``http://host:port``).
    base_url: str
    created_at: float = field(default_factory=time.time)
    state: TaskState = TaskState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    #: Each finished generation's result item, in the order they finished.
    results: list[dict[str, Any]] = field(default_factory=list)
    #: Each failed generation's error.
    errors: list[TaskError] = field(default_factory=list)
    #: The hex sha256 of the reference image as downloaded (once, for every generation);
    #: None until then, or if it failed.
    source_sha256: str | None = None
    #: Set once the task is terminal; a ``sync`` submit waits on it.
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    webhook_attempts: int = 0
    webhook_deliveries: int = 0

    @property
    def task_uuid(self) -> str:
        """The client's id for the task."""
        return self.task.task_uuid

    @property
    def unfinished(self) -> int:
        """How many generations are still being made."""
        return self.task.number_results - len(self.results) - len(self.errors)

    def processing_item(self) -> dict[str, Any]:
        """The item ``getResponse`` reports for a generation still being made."""
        return {"taskType": "imageInference", "taskUUID": self.task_uuid, "status": "processing"}

    def summary(self) -> dict[str, Any]:
        """What the admin listing shows about this task."""
        task = self.task
        return {
            "taskUUID": self.task_uuid,
            "state": self.state.value,
            "width": task.width,
            "height": task.height,
            "numberResults": task.number_results,
            "deliveryMethod": task.delivery,
            "webhookURL": task.webhook_url,
            "uploadEndpoint": task.upload_endpoint is not None,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "images": len(self.results),
            "errors": [error.code for error in self.errors],
            "source_sha256": self.source_sha256,
            "cost": sum(item.get("cost", 0.0) for item in self.results),
            "webhook_attempts": self.webhook_attempts,
            "webhook_deliveries": self.webhook_deliveries,
        }


@dataclass(slots=True)
class Stats:
    """Counters shown at ``GET /_emulator/stats``."""

    accepted: int = 0
    rejected: int = 0
    completed: int = 0
    failed: int = 0
    images: int = 0
    polls: int = 0
    uploads: int = 0
    upload_failures: int = 0
    webhooks_sent: int = 0
    webhook_failures: int = 0
    webhooks_dropped: int = 0


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An output image served until ``expires_at`` (unix seconds)."""

    data: bytes
    content_type: str
    expires_at: float


class TaskStore:
    """Every accepted task, every output file, and the counters, in memory."""

    def __init__(self) -> None:
        self.stats = Stats()
        self._tasks: dict[str, RunwareTask] = {}
        self._files: dict[str, StoredFile] = {}
        self._expiry: list[tuple[float, str]] = []
        self._expired: set[str] = set()

    def add(self, task: InferenceTask, base_url: str) -> RunwareTask:
        """Record a newly accepted task in the QUEUED state."""
        accepted = RunwareTask(task=task, base_url=base_url)
        self._tasks[task.task_uuid] = accepted
        self.stats.accepted += 1
        return accepted

    def find(self, task_uuid: str) -> RunwareTask | None:
        """The task accepted under ``task_uuid``, if any."""
        return self._tasks.get(task_uuid)

    def all(self) -> list[RunwareTask]:
        """Every accepted task, oldest first."""
        return list(self._tasks.values())

    def mark_running(self, task: RunwareTask) -> bool:
        """QUEUED to RUNNING, when it gets a slot."""
        if not self._move(task, TaskState.RUNNING):
            return False
        task.started_at = time.time()
        return True

    def record_source(self, task: RunwareTask, source: bytes) -> None:
        """Remember the hash of the reference image downloaded for ``task``."""
        task.source_sha256 = source_sha256(source)

    def record_result(self, task: RunwareTask, item: dict[str, Any]) -> None:
        """One generation succeeded with ``item``."""
        task.results.append(item)
        self.stats.images += 1

    def record_error(self, task: RunwareTask, error: TaskError) -> None:
        """One generation failed with ``error``."""
        task.errors.append(error)

    def mark_finished(self, task: RunwareTask) -> bool:
        """RUNNING to SUCCEEDED or FAILED, by whether any generation failed."""
        to = TaskState.FAILED if task.errors else TaskState.SUCCEEDED
        if not self._move(task, to):
            return False
        if to is TaskState.FAILED:
            self.stats.failed += 1
        else:
            self.stats.completed += 1
        task.finished.set()
        return True

    def put_file(self, name: str, data: bytes, content_type: str, ttl: float) -> None:
        """Serve ``data`` under ``name`` for ``ttl`` seconds."""
        now = time.time()
        self._forget_expired(now)
        self._files[name] = StoredFile(data, content_type, now + ttl)
        heapq.heappush(self._expiry, (now + ttl, name))

    def file(self, name: str) -> StoredFile | None:
        """The file, if it exists and has not expired."""
        self._forget_expired(time.time())
        return self._files.get(name)

    def file_expired(self, name: str) -> bool:
        """Whether ``name`` was a file that has since expired."""
        return name in self._expired

    def _move(self, task: RunwareTask, to: TaskState) -> bool:
        if to not in ALLOWED_MOVES[task.state]:
            return False
        task.state = to
        if to.is_terminal:
            task.finished_at = time.time()
        return True

    def _forget_expired(self, now: float) -> None:
        # Output bytes dominate memory in long runs, so they go as soon as they expire; the
        # name is remembered so its URL can answer 410 rather than 404. Tasks may set their
        # own ttl, so expiry order is kept in a heap rather than assumed from insertion.
        while self._expiry and self._expiry[0][0] <= now:
            _, name = heapq.heappop(self._expiry)
            if self._files.pop(name, None) is not None:
                self._expired.add(name)


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()
