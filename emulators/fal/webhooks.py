"""Delivering fal webhooks: body, signature, retries, and deliberate duplicates and drops."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

from emulators.delivery import WebhookDelivery
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
    """Posts fal's signed webhooks through a :class:`~emulators.delivery.WebhookDelivery`.

    ``keys`` sign them for ``user_id``; ``stats`` counts every attempt's outcome.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: KeyRing,
        user_id: str,
        injector: FaultInjector,
        stats: Stats,
    ) -> None:
        self._delivery = WebhookDelivery(client, injector)
        self._keys = keys
        self._user_id = user_id
        self._stats = stats

    async def deliver(self, request: FalRequest) -> None:
        """Send ``request``'s webhook until one attempt succeeds or the retries run out."""
        if request.webhook_url is None:
            return
        raw = json.dumps(webhook_body(request), separators=(",", ":")).encode()

        def sign(body: bytes) -> dict[str, str]:
            return webhook_headers(
                self._keys.current, request.request_id, self._user_id, body, time.time()
            )

        counts = await self._delivery.deliver(request.webhook_url, raw, sign)
        request.webhook_attempts += counts.attempts
        request.webhook_deliveries += counts.deliveries
        self._stats.webhooks_sent += counts.deliveries
        self._stats.webhook_failures += counts.failures
        if counts.dropped:
            self._stats.webhooks_dropped += 1
            request.log("Webhook dropped (injected fault)")
        elif counts.deliveries == 0:
            request.log(f"Webhook delivery gave up after all retries ({counts.last_error})")
