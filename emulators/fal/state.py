"""What the fal emulator remembers: requests and their lifecycle, output files, counters.

Everything here is touched from the event loop only, so nothing is locked.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from emulators.fal.protocol import KontextInput, ModelError
from emulators.sources import source_sha256


class RequestState(StrEnum):
    """Where an accepted request is in its life; :data:`ALLOWED_MOVES` lists the moves."""

    #: Accepted at submit; waits for a concurrency slot. Admission moves it to RUNNING.
    QUEUED = "queued"
    #: Holds a slot while it downloads, edits and waits out its latency.
    RUNNING = "running"
    #: Terminal. Its images are stored and its result answers them.
    SUCCEEDED = "succeeded"
    #: Terminal. Moderated, or the source could not be used; its result answers the error.
    FAILED = "failed"
    #: Terminal. ``PUT .../cancel`` arrived while it was queued or running.
    CANCELLED = "cancelled"

    @property
    def wire_status(self) -> str:
        """The status fal reports: ``IN_QUEUE``, ``IN_PROGRESS`` or ``COMPLETED``."""
        if self is RequestState.QUEUED:
            return "IN_QUEUE"
        if self is RequestState.RUNNING:
            return "IN_PROGRESS"
        return "COMPLETED"

    @property
    def is_terminal(self) -> bool:
        """Whether the request has finished one way or another."""
        return not ALLOWED_MOVES[self]


#: The only moves between states; anything else is a lost race and is refused.
ALLOWED_MOVES: dict[RequestState, frozenset[RequestState]] = {
    RequestState.QUEUED: frozenset({RequestState.RUNNING, RequestState.CANCELLED}),
    RequestState.RUNNING: frozenset(
        {RequestState.SUCCEEDED, RequestState.FAILED, RequestState.CANCELLED}
    ),
    RequestState.SUCCEEDED: frozenset(),
    RequestState.FAILED: frozenset(),
    RequestState.CANCELLED: frozenset(),
}


@dataclass(slots=True)
class FalRequest:
    """One accepted submission and everything that has happened to it since."""

    request_id: str
    owner: str
    app: str
    #: The full endpoint submitted to, subpath included (``fal-ai/flux-pro/kontext``).
    endpoint: str
    arguments: KontextInput
    webhook_url: str | None
    #: Where URLs handed back for this request start (``http://host:port``).
    base_url: str
    created_at: float = field(default_factory=time.time)
    state: RequestState = RequestState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: ModelError | None = None
    #: The hex sha256 of the source image as downloaded; None until then, or if it failed.
    source_sha256: str | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    webhook_attempts: int = 0
    webhook_deliveries: int = 0

    @property
    def queue_url(self) -> str:
        """The request's URL, without the endpoint's subpath (fal's rule for queue URLs)."""
        return f"{self.base_url}/{self.owner}/{self.app}/requests/{self.request_id}"

    def log(self, message: str) -> None:
        """Append a log line in fal's ``{message, level, source, timestamp}`` shape."""
        stamp = datetime.now(UTC).isoformat()
        self.logs.append(
            {"message": message, "level": "INFO", "source": "user", "timestamp": stamp}
        )

    def summary(self) -> dict[str, Any]:
        """What the admin listing shows about this request."""
        return {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": self.state.wire_status,
            "state": self.state.value,
            "webhook_url": self.webhook_url,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "error_type": self.error.error_type if self.error else None,
            "source_sha256": self.source_sha256,
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
    cancelled: int = 0
    webhooks_sent: int = 0
    webhook_failures: int = 0
    webhooks_dropped: int = 0


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An output image served at ``/files/{token}`` until ``expires_at`` (unix seconds)."""

    data: bytes
    content_type: str
    expires_at: float


class RequestStore:
    """Every accepted request, every output file, and the counters, in memory."""

    def __init__(self) -> None:
        self.stats = Stats()
        self._requests: dict[str, FalRequest] = {}
        self._files: dict[str, StoredFile] = {}
        self._expired: set[str] = set()

    def add(
        self,
        owner: str,
        app: str,
        endpoint: str,
        *,
        arguments: KontextInput,
        webhook_url: str | None,
        base_url: str,
    ) -> FalRequest:
        """Record a newly accepted request in the QUEUED state (see :class:`FalRequest`)."""
        request = FalRequest(
            request_id=str(uuid.uuid4()),
            owner=owner,
            app=app,
            endpoint=endpoint,
            arguments=arguments,
            webhook_url=webhook_url,
            base_url=base_url,
        )
        self._requests[request.request_id] = request
        self.stats.accepted += 1
        return request

    def find(self, owner: str, app: str, request_id: str) -> FalRequest | None:
        """The request, if it exists and was submitted to ``owner/app``."""
        request = self._requests.get(request_id)
        if request is None or (request.owner, request.app) != (owner, app):
            return None
        return request

    def all(self) -> list[FalRequest]:
        """Every accepted request, oldest first."""
        return list(self._requests.values())

    def mark_running(self, request: FalRequest) -> bool:
        """QUEUED to RUNNING, when it gets a slot."""
        if not self._move(request, RequestState.RUNNING):
            return False
        request.started_at = time.time()
        request.log("Request started")
        return True

    def record_source(self, request: FalRequest, source: bytes) -> None:
        """Remember the hash of the source image downloaded for ``request``."""
        request.source_sha256 = source_sha256(source)

    def mark_succeeded(self, request: FalRequest, result: dict[str, Any]) -> bool:
        """RUNNING to SUCCEEDED, with the output body."""
        if not self._move(request, RequestState.SUCCEEDED):
            return False
        request.result = result
        self.stats.completed += 1
        request.log("Request completed")
        return True

    def mark_failed(self, request: FalRequest, error: ModelError) -> bool:
        """RUNNING to FAILED, with the error its result will answer."""
        if not self._move(request, RequestState.FAILED):
            return False
        request.error = error
        self.stats.failed += 1
        request.log(f"Request failed: {error.message}")
        return True

    def mark_cancelled(self, request: FalRequest) -> bool:
        """QUEUED or RUNNING to CANCELLED. False if it had already finished."""
        if not self._move(request, RequestState.CANCELLED):
            return False
        self.stats.cancelled += 1
        request.log("Request cancelled")
        return True

    def put_file(self, data: bytes, content_type: str, ttl: float) -> str:
        """Keep an output file for ``ttl`` seconds; returns the token it is served under."""
        self._forget_expired(time.time())
        token = secrets.token_urlsafe(16)
        self._files[token] = StoredFile(data, content_type, time.time() + ttl)
        return token

    def file(self, token: str) -> StoredFile | None:
        """The file, if it exists and has not expired."""
        self._forget_expired(time.time())
        return self._files.get(token)

    def file_expired(self, token: str) -> bool:
        """Whether ``token`` named a file that has since expired."""
        return token in self._expired

    def _move(self, request: FalRequest, to: RequestState) -> bool:
        if to not in ALLOWED_MOVES[request.state]:
            return False
        request.state = to
        if to.is_terminal:
            request.finished_at = time.time()
        return True

    def _forget_expired(self, now: float) -> None:
        # Output bytes dominate memory in long benchmark runs, so they go as soon as they
        # expire; the token is remembered so its URL can answer 410 rather than 404. Files are
        # added with one fixed lifetime, so insertion order is expiry order and the scan can
        # stop at the first file still alive.
        while self._files:
            token, stored = next(iter(self._files.items()))
            if stored.expires_at > now:
                return
            del self._files[token]
            self._expired.add(token)


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()
