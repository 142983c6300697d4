"""Delivering fal webhooks: body, signature, retries, and deliberate duplicates and drops."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx

from emulators.fal.signing import KeyRing, webhook_headers
from emulators.fal.state import FalRequest, Stats
from emulators.faults import FaultInjector

logger = logging.getLogger(__name__)


def webhook_body(request: FalRequest) -> dict[str, Any]:
    """The JSON fal posts when ``request`` finishes, successfully or not."""
    body: dict[str, Any] = {
        "request_id": request.request_id,
        # fal sends the id of the gateway request too; the emulator has only one id per request.
        "gateway_request_id": request.request_id,
    }
    if request.error is None:
        return {**body, "status": "OK", "payload": request.result}
    return {
        **body,
        "status": "ERROR",
        "error": f"Invalid status code: {request.error.status_code}",
        "payload": request.error.body,
    }


class WebhookSender:
    """Posts signed webhooks, retrying failed attempts on the configured schedule.

    ``client`` makes the calls; ``keys`` sign them for ``user_id``; ``injector`` supplies the
    current :class:`~emulators.faults.WebhookPolicy` and decides which webhooks are dropped;
    ``stats`` counts every attempt's outcome.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: KeyRing,
        user_id: str,
        injector: FaultInjector,
        stats: Stats,
    ) -> None:
        self._client = client
        self._keys = keys
        self._user_id = user_id
        self._injector = injector
        self._stats = stats

    async def deliver(self, request: FalRequest) -> None:
        """Send ``request``'s webhook until one attempt succeeds or the retries run out."""
        if request.webhook_url is None:
            return
        if self._injector.drop_webhook():
            self._stats.webhooks_dropped += 1
            request.log("Webhook dropped (injected fault)")
            return
        policy = self._injector.config.webhook
        raw = json.dumps(webhook_body(request), separators=(",", ":")).encode()
        for delay in (0.0, *policy.retry_delays):
            await asyncio.sleep(delay)
            if await self._attempt(request, request.webhook_url, raw, policy.timeout):
                break
        else:
            request.log("Webhook delivery gave up after all retries")
            return
        for _ in range(policy.duplicates):
            await self._attempt(request, request.webhook_url, raw, policy.timeout)

    async def _attempt(self, request: FalRequest, url: str, raw: bytes, timeout: float) -> bool:
        # Each attempt is signed afresh, so a late retry still falls inside a receiver's
        # timestamp tolerance (fal's receivers allow about five minutes).
        headers = webhook_headers(
            self._keys.current, request.request_id, self._user_id, raw, time.time()
        )
        headers["Content-Type"] = "application/json"
        request.webhook_attempts += 1
        try:
            response = await self._client.post(url, content=raw, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return self._failed(request, f"{type(exc).__name__}: {exc}")
        if not response.is_success:
            return self._failed(request, f"HTTP {response.status_code}")
        self._stats.webhooks_sent += 1
        request.webhook_deliveries += 1
        return True

    def _failed(self, request: FalRequest, reason: str) -> bool:
        self._stats.webhook_failures += 1
        request.log(f"Webhook attempt failed: {reason}")
        logger.info("webhook for %s failed: %s", request.request_id, reason)
        return False
