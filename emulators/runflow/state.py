"""What the Runflow emulator remembers: runs and their lifecycle, and the counters.

Everything here is touched from the event loop only, so nothing is locked.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from emulators.runflow.protocol import MODEL_ID, PRICE_PER_IMAGE, RunFailure, RunRequest
from emulators.sources import source_sha256

if TYPE_CHECKING:
    from emulators.runflow.callbacks import CallbackDelivery


class RunState(StrEnum):
    """Where an accepted run is in its life; :data:`ALLOWED_MOVES` lists the moves."""

    #: Created; waits for a concurrency slot. Admission moves it to DISPATCHING.
    QUEUED = "queued"
    #: Holds a slot while its source image is fetched. Then RUNNING, or FAILED if unusable.
    DISPATCHING = "dispatching"
    #: Editing and waiting out its latency; then SUCCEEDED, or FAILED if moderated.
    RUNNING = "running"
    #: Terminal. Its images are stored and ``output.image_urls`` points at them.
    SUCCEEDED = "succeeded"
    #: Terminal. Its ``failure_*`` fields say why.
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the run has finished one way or another."""
        return not ALLOWED_MOVES[self]


#: The only moves between states; anything else is a lost race and is refused. Runflow has no
#: public cancel, so the emulator has no canceled state.
ALLOWED_MOVES: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.DISPATCHING}),
    RunState.DISPATCHING: frozenset({RunState.RUNNING, RunState.FAILED}),
    RunState.RUNNING: frozenset({RunState.SUCCEEDED, RunState.FAILED}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset(),
}


def uuid7(now: float | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits, so ids sort by time."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    rand = secrets.randbits(74)
    value = (
        (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    )
    return uuid.UUID(int=value)


def iso(timestamp: float | None) -> str | None:
    """Runflow's timestamp form: ISO 8601 with a ``+00:00`` offset, never ``Z``."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Outputs:
    """A succeeded run's images: their URLs, and the safety checker's flag for each.

    Runflow's Kontext model takes fal's input fields, and its output carries the flags in
    fal's ``has_nsfw_concepts`` beside ``image_urls``.
    """

    image_urls: list[str]
    flags: list[bool]


@dataclass(slots=True)
class Run:
    """One accepted run and everything that has happened to it since."""

    run_id: str
    request: RunRequest
    #: The input as it was sent (validated), echoed in the run object.
    input_echo: dict[str, Any]
    #: Where URLs handed back for this run start (``http://host:port``).
    base_url: str
    created_at: float = field(default_factory=time.time)
    state: RunState = RunState.QUEUED
    started_at: float | None = None
    completed_at: float | None = None
    output: dict[str, Any] | None = None
    cost: Decimal | None = None
    failure: RunFailure | None = None
    #: The hex sha256 of the source image as downloaded; None until then, or if it failed.
    source_sha256: str | None = None
    #: Every state the run has been in, with the Unix time it got there.
    history: list[tuple[str, float]] = field(default_factory=list)
    deliveries: list[CallbackDelivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history.append((self.state.value, self.created_at))

    @property
    def duration_ms(self) -> int | None:
        """Total wall-clock time from creation to the end, once it has ended."""
        if self.completed_at is None:
            return None
        return round((self.completed_at - self.created_at) * 1000)

    def wire(self) -> dict[str, Any]:
        """The run object ``GET /v1/runs/{id}`` answers.

        The state is sent as ``status_code`` (Runflow's API reference) and as ``status`` (its
        concept pages and callbacks); the failure stage as ``failure_stage`` and
        ``failure_stage_code`` likewise.
        """
        failure = self.failure
        return {
            "id": self.run_id,
            "status_code": self.state.value,
            "status": self.state.value,
            "target_type": "model",
            "model": MODEL_ID,
            "input": self.input_echo,
            "output": self.output,
            "client_ref": self.request.client_ref,
            "metadata": self.request.metadata,
            "callback_url": self.request.callback_url,
            "cost": None if self.cost is None else str(self.cost),
            "duration_ms": self.duration_ms,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "failure_code": failure.code if failure else None,
            "failure_stage": failure.stage if failure else None,
            "failure_stage_code": failure.stage if failure else None,
            "failure_message": failure.message if failure else None,
        }

    def summary(self) -> dict[str, Any]:
        """What the admin listing shows about this run."""
        return {
            "id": self.run_id,
            "status": self.state.value,
            "client_ref": self.request.client_ref,
            "callback_url": self.request.callback_url,
            "history": [{"status": state, "at": iso(at)} for state, at in self.history],
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "failure_code": self.failure.code if self.failure else None,
            "source_sha256": self.source_sha256,
            "callback_deliveries": len(self.deliveries),
        }


@dataclass(slots=True)
class Stats:
    """Counters shown at ``GET /_emulator/stats`` (named as the fal emulator names them)."""

    accepted: int = 0
    rejected: int = 0
    #: Runs that succeeded.
    completed: int = 0
    failed: int = 0
    webhooks_sent: int = 0
    webhook_failures: int = 0
    webhooks_dropped: int = 0
    redeliveries: int = 0
    secrets_created: int = 0


class RunStore:
    """Every accepted run and the counters, in memory."""

    def __init__(self) -> None:
        self.stats = Stats()
        self._runs: dict[str, Run] = {}

    def add(self, request: RunRequest, *, base_url: str) -> Run:
        """Record a newly accepted run in the QUEUED state."""
        run = Run(
            run_id=str(uuid7()),
            request=request,
            input_echo=request.input.model_dump(mode="json", exclude_unset=True),
            base_url=base_url,
        )
        self._runs[run.run_id] = run
        self.stats.accepted += 1
        return run

    def find(self, run_id: str) -> Run | None:
        """The run, if it exists."""
        return self._runs.get(run_id)

    def all(self) -> list[Run]:
        """Every accepted run, oldest first."""
        return list(self._runs.values())

    def mark_dispatching(self, run: Run) -> bool:
        """QUEUED to DISPATCHING, when it gets a slot."""
        if not self._move(run, RunState.DISPATCHING):
            return False
        run.started_at = time.time()
        return True

    def record_source(self, run: Run, source: bytes) -> None:
        """Remember the hash of the source image downloaded for ``run``."""
        run.source_sha256 = source_sha256(source)

    def mark_running(self, run: Run) -> bool:
        """DISPATCHING to RUNNING, once its source image is in hand."""
        return self._move(run, RunState.RUNNING)

    def mark_succeeded(self, run: Run, outputs: Outputs) -> bool:
        """RUNNING to SUCCEEDED, with the output URLs, their flags and what it cost."""
        if not self._move(run, RunState.SUCCEEDED):
            return False
        run.output = {"image_urls": outputs.image_urls, "has_nsfw_concepts": outputs.flags}
        run.cost = PRICE_PER_IMAGE * len(outputs.image_urls)
        self.stats.completed += 1
        return True

    def mark_failed(self, run: Run, failure: RunFailure) -> bool:
        """DISPATCHING or RUNNING to FAILED, with why."""
        if not self._move(run, RunState.FAILED):
            return False
        run.failure = failure
        self.stats.failed += 1
        return True

    def _move(self, run: Run, to: RunState) -> bool:
        if to not in ALLOWED_MOVES[run.state]:
            return False
        run.state = to
        now = time.time()
        run.history.append((to.value, now))
        if to.is_terminal:
            run.completed_at = now
        return True
