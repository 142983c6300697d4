"""Delivering Runware webhooks: one unsigned callback per generation, in either body shape."""

from __future__ import annotations

import json
from typing import Any

import httpx

from emulators.delivery import WebhookDelivery
from emulators.faults import FaultInjector
from emulators.runware.config import WebhookShape
from emulators.runware.protocol import TaskError
from emulators.runware.state import RunwareTask, Stats


def webhook_body(outcome: dict[str, Any] | TaskError, shape: WebhookShape) -> dict[str, Any]:
    """The JSON posted when one generation finishes: its result item, or its error.

    ``shape`` ``data`` wraps it as ``{"data": [item]}`` (``{"errors": [error]}`` for a
    failure); ``flat`` sends the object itself.
    """
    if isinstance(outcome, TaskError):
        error = outcome.wire()
        return {"errors": [error]} if shape == "data" else error
    return {"data": [outcome]} if shape == "data" else outcome


def _unsigned(_: bytes) -> dict[str, str]:
    # Runware does not sign its webhooks; receivers put a secret in the URL instead.
    return {}


class WebhookSender:
    """Posts Runware's callbacks through a :class:`~emulators.delivery.WebhookDelivery`.

    ``shape`` is the body shape; ``stats`` counts every attempt's outcome.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        injector: FaultInjector,
        stats: Stats,
        shape: WebhookShape,
    ) -> None:
        self._delivery = WebhookDelivery(client, injector)
        self._stats = stats
        self._shape = shape

    async def deliver(self, task: RunwareTask, outcome: dict[str, Any] | TaskError) -> None:
        """Send one generation's callback until an attempt succeeds or the retries run out."""
        url = task.task.webhook_url
        if url is None:
            return
        raw = json.dumps(webhook_body(outcome, self._shape), separators=(",", ":")).encode()
        counts = await self._delivery.deliver(url, raw, _unsigned)
        task.webhook_attempts += counts.attempts
        task.webhook_deliveries += counts.deliveries
        self._stats.webhooks_sent += counts.deliveries
        self._stats.webhook_failures += counts.failures
        if counts.dropped:
            self._stats.webhooks_dropped += 1
