"""Runflow callbacks: the event envelope, a record of each delivery, and sending them.

A delivery (the automatic one when a run ends, and one per ``callback-redeliveries``) freezes
its body and signing secret when it is created and has its own ``Runflow-Request-Id``. It is
sent through :class:`emulators.delivery.WebhookDelivery` (retries, drops, duplicates), and a
:class:`RecordingTransport` under the HTTP client records every attempt that really went out,
so ``GET /v1/runs/{id}/callback`` shows status codes, times and errors as Runflow does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulators.delivery import WebhookDelivery
from emulators.faults import FaultInjector
from emulators.outbound import outbound_client
from emulators.runflow.signing import CallbackSecret, SecretRing, signature
from emulators.runflow.state import Run, RunState, Stats, iso

REQUEST_ID_HEADER = "Runflow-Request-Id"


def callback_envelope(run: Run) -> dict[str, Any]:
    """The event envelope Runflow posts when ``run`` has ended."""
    succeeded = run.state is RunState.SUCCEEDED
    failure = run.failure.envelope() if run.failure else None
    return {
        "event": "run.completed" if succeeded else "run.failed",
        "run_id": run.run_id,
        "status": run.state.value,
        "output": run.output if succeeded else failure,
        "duration_ms": run.duration_ms,
        "created_at": iso(run.created_at),
        "completed_at": iso(run.completed_at),
        "metadata": run.request.metadata,
    }


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One HTTP attempt at delivering a callback, and how the receiver answered."""

    number: int
    created_at: float
    status_code: int | None
    response_time_ms: int
    error_message: str | None
    attempt_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(slots=True)
class CallbackDelivery:
    """One callback delivery: its frozen body, its secret, and every attempt made so far.

    ``status`` is ``pending`` until an attempt gets a 2xx (``succeeded``) or the retries run
    out (``failed``); injected drops end ``failed`` with ``failure_reason_code`` ``DROPPED``.
    """

    run_id: str
    callback_url: str
    raw: bytes
    secret: CallbackSecret
    is_automatic: bool
    retry_delays: tuple[float, ...]
    delivery_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request_id: str = field(default_factory=lambda: f"req_{secrets.token_hex(12)}")
    created_at: float = field(default_factory=time.time)
    status: str = "pending"
    failure_reason_code: str | None = None
    failure_detail: str | None = None
    completed_at: float | None = None
    next_attempt_at: float | None = None
    attempts: list[DeliveryAttempt] = field(default_factory=list)

    @property
    def max_attempts(self) -> int:
        """The first attempt plus every retry the schedule allows."""
        return 1 + len(self.retry_delays)

    def record(self, status_code: int | None, elapsed: float, error: str | None) -> None:
        """Note one attempt's outcome (``status_code`` ``None``: no answer, see ``error``)."""
        now = time.time()
        number = len(self.attempts) + 1
        self.attempts.append(
            DeliveryAttempt(number, now, status_code, round(elapsed * 1000), error)
        )
        if self.status != "pending":
            return  # duplicates sent after a success change nothing
        if status_code is not None and 200 <= status_code < 300:
            self._end("succeeded", now)
        elif number < self.max_attempts:
            self.next_attempt_at = now + self.retry_delays[number - 1]
        else:
            self.failure_reason_code = "HTTP_ERROR" if status_code else "CONNECTION_ERROR"
            self.failure_detail = error or f"HTTP {status_code}"
            self._end("failed", now)

    def mark_dropped(self) -> None:
        """The emulator lost this callback on purpose; no attempt was made."""
        self.failure_reason_code = "DROPPED"
        self.failure_detail = "dropped by the emulator (injected fault)"
        self._end("failed", time.time())

    def _end(self, status: str, now: float) -> None:
        self.status = status
        self.completed_at = now
        self.next_attempt_at = None

    def wire(self) -> dict[str, Any]:
        """The delivery as ``GET /v1/runs/{id}/callback`` lists it."""
        return {
            "id": self.delivery_id,
            "run_id": self.run_id,
            "callback_url": self.callback_url,
            "payload_bytes": self.raw.decode(),
            "payload": json.loads(self.raw),
            "signing_secret_id": self.secret.secret_id,
            "is_automatic": self.is_automatic,
            "status_code": self.status,
            "failure_reason_code": self.failure_reason_code,
            "failure_detail": self.failure_detail,
            "attempt_count": len(self.attempts),
            "max_attempts": self.max_attempts,
            "next_attempt_at": iso(self.next_attempt_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(max([self.created_at, *(a.created_at for a in self.attempts)])),
            "completed_at": iso(self.completed_at),
            "attempts": [_attempt_wire(self.delivery_id, attempt) for attempt in self.attempts],
        }


def _attempt_wire(delivery_id: str, attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "id": attempt.attempt_id,
        "delivery_id": delivery_id,
        "attempt_number": attempt.number,
        "status_code": attempt.status_code,
        "response_body": None,
        "response_time_ms": attempt.response_time_ms,
        "error_message": attempt.error_message,
        "created_at": iso(attempt.created_at),
    }


class RecordingTransport(httpx.AsyncBaseTransport):
    """Sends through ``inner`` and records each exchange on the delivery it belongs to.

    ``deliveries`` maps a ``Runflow-Request-Id`` to the delivery in flight under it.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, deliveries: Mapping[str, CallbackDelivery]
    ) -> None:
        self._inner = inner
        self._deliveries = deliveries

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, noting its answer (or its failure) before passing it on."""
        delivery = self._deliveries.get(request.headers.get(REQUEST_ID_HEADER, ""))
        started = time.monotonic()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            if delivery is not None:
                delivery.record(None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
            raise
        if delivery is not None:
            delivery.record(response.status_code, time.monotonic() - started, None)
        return response

    async def aclose(self) -> None:
        """Close the transport underneath."""
        await self._inner.aclose()


class CallbackSender:
    """Creates, signs and sends runs' callbacks, counting outcomes in ``stats``.

    ``injector`` supplies the webhook policy and its faults; ``ring`` the signing secret.
    """

    def __init__(self, injector: FaultInjector, ring: SecretRing, stats: Stats) -> None:
        self._in_flight: dict[str, CallbackDelivery] = {}
        self._client = outbound_client(
            wrap=lambda bounded: RecordingTransport(bounded, self._in_flight)
        )
        self._delivery = WebhookDelivery(self._client, injector)
        self._injector = injector
        self._secrets = ring
        self._stats = stats
        self._tasks: set[asyncio.Task[None]] = set()

    def prepare(self, run: Run, *, automatic: bool) -> CallbackDelivery:
        """Freeze ``run``'s callback as it is now, signed with the current secret."""
        if run.request.callback_url is None:
            raise ValueError("the run has no callback_url")
        raw = json.dumps(callback_envelope(run), separators=(",", ":")).encode()
        delivery = CallbackDelivery(
            run_id=run.run_id,
            callback_url=run.request.callback_url,
            raw=raw,
            secret=self._secrets.current,
            is_automatic=automatic,
            retry_delays=self._injector.config.webhook.retry_delays,
        )
        run.deliveries.append(delivery)
        return delivery

    async def deliver(self, delivery: CallbackDelivery) -> None:
        """Send ``delivery`` until an attempt succeeds or the retries run out."""
        self._in_flight[delivery.request_id] = delivery

        def sign(body: bytes) -> dict[str, str]:
            return {
                "Runflow-Signature": signature(delivery.secret.plain, body),
                REQUEST_ID_HEADER: delivery.request_id,
            }

        try:
            counts = await self._delivery.deliver(delivery.callback_url, delivery.raw, sign)
        finally:
            self._in_flight.pop(delivery.request_id, None)
        self._stats.webhooks_sent += counts.deliveries
        self._stats.webhook_failures += counts.failures
        if counts.dropped:
            self._stats.webhooks_dropped += 1
            delivery.mark_dropped()

    def start(self, delivery: CallbackDelivery) -> None:
        """Send ``delivery`` in the background (a redelivery answers before it is sent)."""
        task = asyncio.create_task(self.deliver(delivery), name=f"callback-{delivery.run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Stop background deliveries and close the HTTP client."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._client.aclose()
