"""The fal emulator's use cases: what submit, status, result and cancel do, apart from HTTP.

Routes parse the request, call one method here and format what it returns. A refusal is raised
as :class:`RequestRejectedError`, which carries fal's status code, body and headers.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

import httpx

from emulators.fal.config import FalEmulatorConfig
from emulators.fal.protocol import (
    InvalidInputError,
    KontextInput,
    detail_item,
    parse_input,
    request_error,
)
from emulators.fal.runner import Runner
from emulators.fal.signing import KeyRing
from emulators.fal.state import FalRequest, RequestState, RequestStore
from emulators.fal.webhooks import WebhookSender
from emulators.faults import ConcurrencyGate, FaultConfig, FaultInjector, SubmitFault, patched
from emulators.outbound import outbound_client

Reply = tuple[int, dict[str, Any]]


class RequestRejectedError(Exception):
    """The emulator refused the call; answer ``status_code`` with ``body`` and ``headers``."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(body.get("detail"))
        self.status_code = status_code
        self.body = body
        self.headers = dict(headers or {})


class FalEmulator:
    """One running fal emulator: its settings, requests, queue, faults and signing keys."""

    def __init__(self, config: FalEmulatorConfig) -> None:
        self.config = config
        self.store = RequestStore()
        self.injector = FaultInjector(config)
        self.gate = ConcurrencyGate(config.concurrency)
        self.keys = KeyRing()
        self._client: httpx.AsyncClient | None = None
        self._runner: Runner | None = None

    async def start(self) -> None:
        """Open the HTTP client and start accepting work; call from the serving event loop."""
        self._client = outbound_client(rewrite_hosts=self.config.rewrite_hosts)
        sender = WebhookSender(
            self._client, self.keys, self.config.user_id, self.injector, self.store.stats
        )
        self._runner = Runner(
            store=self.store,
            gate=self.gate,
            injector=self.injector,
            sender=sender,
            client=self._client,
            result_ttl=self.config.result_ttl,
        )

    async def stop(self) -> None:
        """Cancel the work in flight and close the HTTP client."""
        if self._runner is not None:
            await self._runner.close()
        if self._client is not None:
            await self._client.aclose()

    def check_key(self, authorization: str | None) -> None:
        """Refuse a call without a usable ``Authorization: Key <key>`` header (401)."""
        if not authorization:
            raise RequestRejectedError(401, {"detail": "Missing authorization header"})
        scheme, _, key = authorization.partition(" ")
        expected = self.config.api_key
        if scheme.lower() != "key" or not key.strip():
            raise RequestRejectedError(
                401, {"detail": "Invalid authorization header, expected 'Key <key>'"}
            )
        if expected is not None and not secrets.compare_digest(key.strip(), expected):
            raise RequestRejectedError(401, {"detail": "No user found for Key ID and Secret"})

    def submit(
        self,
        authorization: str | None,
        owner: str,
        app: str,
        endpoint: str,
        *,
        body: bytes,
        query: Mapping[str, str],
        base_url: str,
    ) -> FalRequest:
        """Accept a submission into the queue, or raise :class:`RequestRejectedError` (counted).

        ``endpoint`` is the full endpoint id (subpath included), ``query`` the submit's query
        string, ``base_url`` where the URLs handed back start.
        """
        try:
            self.check_key(authorization)
            self._inject_submit_fault()
            webhook_url, max_queue = _queue_options(query)
            arguments = _parse_input(body)
            if max_queue is not None and self.gate.is_full() and self.gate.waiting >= max_queue:
                raise RequestRejectedError(
                    429,
                    request_error(
                        f"Queue is full (fal_max_queue_length={max_queue})", "queue_full"
                    ),
                    {"X-Fal-Error-Type": "queue_full"},
                )
        except RequestRejectedError:
            self.store.stats.rejected += 1
            raise
        request = self.store.add(
            owner, app, endpoint, arguments=arguments, webhook_url=webhook_url, base_url=base_url
        )
        request.log("Request accepted")
        self.gate.join(request.request_id)
        self._started_runner().start(request)
        return request

    def queue_position(self, request: FalRequest) -> int:
        """``request``'s 0-based place in the queue (0 once it is admitted)."""
        return self.gate.position(request.request_id) or 0

    def status(self, request: FalRequest, *, with_logs: bool) -> Reply:
        """fal's status answer: 202 while queued or running, 200 once completed."""
        body: dict[str, Any] = {
            "status": request.state.wire_status,
            "request_id": request.request_id,
            "response_url": request.queue_url,
        }
        logs = list(request.logs) if with_logs else None
        if request.state is RequestState.QUEUED:
            return 202, {**body, "queue_position": self.queue_position(request)}
        if request.state is RequestState.RUNNING:
            return 202, {**body, "logs": logs}
        started = request.started_at or request.created_at
        inference_time = round((request.finished_at or started) - started, 3)
        body.update(logs=logs, metrics={"inference_time": inference_time})
        if request.error is not None:
            body.update(error=request.error.message, error_type=request.error.error_type)
        elif request.state is RequestState.CANCELLED:
            body.update(error=CANCELLED_BODY["detail"], error_type=CANCELLED_BODY["error_type"])
        return 200, body

    def result(self, request: FalRequest) -> Reply:
        """The result answer: the output, the model's error, or 400 while it is not done."""
        if request.state is RequestState.SUCCEEDED and request.result is not None:
            return 200, request.result
        if request.error is not None:
            return request.error.status_code, request.error.body
        if request.state is RequestState.CANCELLED:
            return 400, dict(CANCELLED_BODY)
        # fal does not document this case; 400 with a plain detail is the emulator's choice.
        return 400, {"detail": "Request is still in progress"}

    def cancel(self, request: FalRequest | None) -> Reply:
        """Cancel a queued or running request: 202, or 400/404 with fal's status words."""
        if request is None:
            return 404, {"status": "NOT_FOUND"}
        if not self.store.mark_cancelled(request):
            return 400, {"status": "ALREADY_COMPLETED"}
        self.gate.leave(request.request_id)
        self._started_runner().stop(request.request_id)
        return 202, {"status": "CANCELLATION_REQUESTED"}

    def update_faults(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Change latency, concurrency or fault rates from now on; returns the new settings."""
        updated = patched(self.injector.config, changes)
        self.injector.config = updated
        self.gate.set_limit(updated.concurrency)
        return updated

    def _inject_submit_fault(self) -> None:
        fault = self.injector.submit_fault(self.gate.running + self.gate.waiting)
        if fault is SubmitFault.SERVER_ERROR:
            error_type = "runner_scheduling_failure"
            raise RequestRejectedError(
                503,
                request_error("Failed to schedule a runner for the request", error_type),
                {"X-Fal-Error-Type": error_type, "X-Fal-Retryable": "true"},
            )
        if fault is SubmitFault.RATE_LIMITED:
            retry_after = str(math.ceil(self.injector.config.retry_after))
            raise RequestRejectedError(
                429,
                request_error("Too many requests, retry later", "rate_limited"),
                {"Retry-After": retry_after, "X-Fal-Error-Type": "rate_limited"},
            )
        if fault is SubmitFault.INVALID:
            msg = "Input rejected by the model (injected fault)"
            raise RequestRejectedError(422, {"detail": [detail_item(["body"], msg, "value_error")]})

    def _started_runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError("the emulator has not been started; serve it with its lifespan on")
        return self._runner


#: How a cancelled request reports itself; fal does not document this, so the emulator chose.
CANCELLED_BODY = {"detail": "Request was cancelled", "error_type": "request_cancelled"}


def _parse_input(body: bytes) -> KontextInput:
    try:
        return parse_input(body)
    except InvalidInputError as exc:
        raise RequestRejectedError(422, exc.body) from exc


def _queue_options(query: Mapping[str, str]) -> tuple[str | None, int | None]:
    """The ``fal_webhook`` URL and ``fal_max_queue_length`` from the submit's query string."""
    webhook_url = query.get("fal_webhook") or None
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        msg = "Webhook URL must be an http:// or https:// URL"
        raise RequestRejectedError(
            422, {"detail": [detail_item(["query", "fal_webhook"], msg, "url_parsing")]}
        )
    raw_max = query.get("fal_max_queue_length")
    if raw_max is None:
        return webhook_url, None
    if not raw_max.isdigit():
        msg = "Input should be a valid non-negative integer"
        loc: list[str | int] = ["query", "fal_max_queue_length"]
        raise RequestRejectedError(422, {"detail": [detail_item(loc, msg, "int_parsing")]})
    return webhook_url, int(raw_max)
