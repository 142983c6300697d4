"""Delivering an emulator's webhooks: retries on a schedule, deliberate drops and duplicates.

Every emulator signs its callbacks its own way; this module only sends them. ``sign`` is
called for every attempt, so a provider whose signature carries a timestamp signs each
retry afresh and a late retry still falls inside a receiver's tolerance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from emulators.faults import FaultInjector

logger = logging.getLogger(__name__)

Signer = Callable[[bytes], Mapping[str, str]]


@dataclass
class DeliveryCounts:
    """What happened to one webhook: attempts made and attempts the receiver accepted."""

    attempts: int = 0
    deliveries: int = 0
    failures: int = 0
    dropped: bool = False
    last_error: str | None = None


class WebhookDelivery:
    """Posts JSON webhooks with the current :class:`~emulators.faults.WebhookPolicy`."""

    def __init__(self, client: httpx.AsyncClient, injector: FaultInjector) -> None:
        self._client = client
        self._injector = injector

    async def deliver(self, url: str, raw: bytes, sign: Signer) -> DeliveryCounts:
        """Send ``raw`` to ``url`` until an attempt succeeds or the retries run out.

        Then send the configured number of duplicates. A dropped webhook is never sent.
        """
        counts = DeliveryCounts()
        if self._injector.drop_webhook():
            counts.dropped = True
            return counts
        policy = self._injector.config.webhook
        for delay in (0.0, *policy.retry_delays):
            await asyncio.sleep(delay)
            if await self._attempt(url, raw, sign, policy.timeout, counts):
                break
        else:
            return counts
        for _ in range(policy.duplicates):
            await self._attempt(url, raw, sign, policy.timeout, counts)
        return counts

    async def _attempt(
        self, url: str, raw: bytes, sign: Signer, timeout: float, counts: DeliveryCounts
    ) -> bool:
        headers = {**sign(raw), "Content-Type": "application/json"}
        counts.attempts += 1
        try:
            response = await self._client.post(url, content=raw, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return _failed(counts, url, f"{type(exc).__name__}: {exc}")
        if not response.is_success:
            return _failed(counts, url, f"HTTP {response.status_code}")
        counts.deliveries += 1
        return True


def _failed(counts: DeliveryCounts, url: str, reason: str) -> bool:
    counts.failures += 1
    counts.last_error = reason
    logger.info("webhook to %s failed: %s", url, reason)
    return False
