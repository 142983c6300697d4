"""Producer callbacks: checking a ``callback_url``, delivering, listing and redelivering.

The rows are written by the transitions that end a job (and by a batch that completes);
the scheduler's tick publishes those that are due (:func:`publish_due`), and a worker
makes one try per message (:meth:`Callbacks.deliver`). Each try is one HTTP POST, signed
to the Standard Webhooks spec, and one transaction that logs it and applies its verdict.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from standardwebhooks import Webhook
from structlog.contextvars import bind_contextvars

from worker.database import Database, TaskQueue, publish
from worker.errors import CallbackNotFound, CallbacksNotConfigured, CallbackUrlRefused
from worker.fetch import Fetcher, FetchError
from worker.logs import redact
from worker.metrics import CALLBACKS
from worker.storage.base import Storage
from worker.values.callback_events import (
    CallbackDetail,
    CallbackFilter,
    CallbackPolicy,
    CallbackRecord,
    encode,
    judge,
    signed_headers,
    with_output_urls,
)

log = logging.getLogger("editq.callbacks")

#: Most callbacks one tick sends.
_TICK_BATCH = 500
#: How much of a receiver's answer is kept in ``last_error`` (the rest is not even read).
_ANSWER_BYTES = 512


class CallbackTargets:
    """Whether a producer's ``callback_url`` can be accepted, checked when a job is created."""

    def __init__(self, *, signing: bool, fetcher: Fetcher) -> None:
        self._signing = signing
        self._fetcher = fetcher

    def check(self, url: str | None) -> None:
        """Raise unless callbacks to ``url`` can be signed and sent (None needs nothing)."""
        if url is None:
            return
        if not self._signing:
            unsigned = "no EDITQ_CALLBACK_SECRET is set here, so no callback could be signed"
            raise CallbacksNotConfigured(fields=[_field(CallbacksNotConfigured.code, unsigned)])
        try:
            self._fetcher.check_url(url)
        except FetchError as exc:
            # An address that does not resolve now may resolve later; delivery checks again.
            if exc.permanent:
                raise CallbackUrlRefused(
                    f"callback_url: {exc}", fields=[_field(CallbackUrlRefused.code, str(exc))]
                ) from exc


def _field(rule: str, message: str) -> dict[str, str]:
    return {"field": "callback_url", "rule": rule, "message": message}


def publish_due(db: Database, queue: TaskQueue, policy: CallbackPolicy) -> int:
    """Send a delivery message for every callback that is due; returns how many."""
    with db.transaction() as repo:
        due = repo.due_callbacks(_TICK_BATCH, policy.lease_seconds)
    for callback_id, attempt in due:
        publish(queue.deliver_callback, callback_id, attempt)
    return len(due)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one POST came back with."""

    status: int | None
    error: str | None
    #: True when trying again cannot help (a refused address).
    permanent: bool = False


class Callbacks:
    """Delivering callbacks, and the ops use cases over them."""

    def __init__(
        self,
        db: Database,
        storage: Storage,
        fetcher: Fetcher,
        http: httpx.Client,
        signer: Webhook | None,
        policy: CallbackPolicy,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._storage = storage
        self._fetcher = fetcher
        self._http = http
        self._signer = signer
        self._policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def deliver(self, callback_id: uuid.UUID, attempt: int) -> str:
        """Make try number ``attempt`` of a callback; returns what became of it."""
        with self._db.transaction() as repo:
            callback = repo.start_callback_try(callback_id, attempt, self._policy.lease_seconds)
        if callback is None:
            return "stale"
        ids = {"job_id": callback.job_id, "batch_id": callback.batch_id}
        bind_contextvars(**{name: str(value) for name, value in ids.items() if value})
        started = time.monotonic()
        answer = self._post(callback)
        duration_ms = round((time.monotonic() - started) * 1000)
        decision = judge(
            answer.status, attempt, self._policy, self._rng, permanent=answer.permanent
        )
        with self._db.transaction() as repo:
            repo.finish_callback_try(
                callback.id, attempt, answer.status, answer.error, duration_ms, decision
            )
        CALLBACKS.labels(callback.event, decision.verdict.value).inc()
        log.info(
            "callback %s %s to %s: try %d answered %s in %d ms; %s",
            callback.id,
            callback.event,
            urlsplit(callback.url).hostname,
            attempt,
            answer.status if answer.status is not None else answer.error,
            duration_ms,
            decision.verdict.value,
        )
        return decision.verdict.value

    def _post(self, callback: CallbackRecord) -> _Answer:
        if self._signer is None:
            return _Answer(None, "this worker has no EDITQ_CALLBACK_SECRET to sign with")
        try:
            self._fetcher.check_url(callback.url)
        except FetchError as exc:
            return _Answer(None, str(exc), permanent=exc.permanent)
        payload = with_output_urls(
            callback.payload,
            lambda key: self._storage.presign_get(key, self._policy.url_seconds),
        )
        body = encode(payload)
        headers = signed_headers(self._signer, callback.webhook_id, body, datetime.now(UTC))
        try:
            with self._http.stream(
                "POST",
                callback.url,
                content=body.encode(),
                headers=headers,
                timeout=self._policy.timeout_seconds,
            ) as response:
                if 200 <= response.status_code < 300:
                    return _Answer(response.status_code, None)
                said = _read_some(response)
        except httpx.HTTPError as exc:
            return _Answer(None, redact(f"{type(exc).__name__}: {exc}")[:_ANSWER_BYTES])
        error = f"answered {response.status_code}" + (f": {said}" if said else "")
        return _Answer(response.status_code, error)

    # -- ops ------------------------------------------------------------------------------

    def list(self, where: CallbackFilter, limit: int = 50) -> list[CallbackRecord]:
        """Callbacks matching ``where``, newest first."""
        with self._db.transaction() as repo:
            return repo.list_callbacks(where, limit)

    def get(self, callback_id: uuid.UUID) -> CallbackDetail:
        """A callback with its delivery log."""
        with self._db.transaction() as repo:
            detail = repo.callback_detail(callback_id)
        if detail is None:
            raise CallbackNotFound(callback_id=str(callback_id))
        return detail

    def redeliver(self, where: CallbackFilter) -> int:
        """Send the matching callbacks again, with a fresh budget of tries and the same ids.

        Raises :class:`CallbackNotFound` (changing nothing) when an id in ``where`` names no
        callback; an empty filter is refused, since it would resend every callback ever made.
        """
        if where.is_empty():
            raise ValueError("redeliver needs ids or a filter")
        with self._db.transaction() as repo:
            unknown = repo.unknown_callbacks(where.ids)
            if unknown:
                raise CallbackNotFound(
                    f"no callback has the id {unknown[0]}", callback_id=str(unknown[0])
                )
            return len(repo.redeliver_callbacks(where))


def _read_some(response: httpx.Response) -> str:
    """The start of a receiver's answer, for the delivery log; the rest is left unread."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _ANSWER_BYTES:
            break
    text = b"".join(chunks)[:_ANSWER_BYTES].decode("utf-8", "replace")
    return " ".join(text.split())
