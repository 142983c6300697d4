"""Settings for the Runware emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emulators.faults import FaultConfig, WebhookPolicy

#: Runware retries a refused webhook with "exponential backoff capped at 8 s with jitter"
#: (its migration notes); how many times is not documented, so the emulator tries five more.
RUNWARE_WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 8.0)

#: How a webhook body is shaped: ``{"data": [item]}`` (Runware's SDK docs) or the item
#: itself (Runware's migration notes); receivers are told to accept both.
WebhookShape = Literal["data", "flat"]


def _runware_webhooks() -> WebhookPolicy:
    return WebhookPolicy(retry_delays=RUNWARE_WEBHOOK_RETRY_DELAYS)


@dataclass(frozen=True)
class RunwareEmulatorConfig(FaultConfig):
    """Everything the Runware emulator needs: the shared fault settings plus Runware's own.

    It inherits every :class:`~emulators.faults.FaultConfig` field, so it is built from flat
    keywords: ``RunwareEmulatorConfig(latency=0.1, concurrency=2, rate_429=0.1)``; only the
    webhook retry schedule defaults to Runware's. Output URLs stop working ``result_ttl``
    seconds after the image was made (a task's own ``ttl`` wins). ``api_key`` is the only key
    accepted (``None``: any bearer key or authentication task is accepted, but a call with
    neither is refused). URLs the emulator returns start with ``public_base_url`` (``None``:
    the base URL the request came in on). ``webhook_shape`` picks the callback body's shape.
    ``cost_per_image`` is reported in ``cost`` when a task asks for ``includeCost``.
    """

    webhook: WebhookPolicy = field(default_factory=_runware_webhooks)
    result_ttl: float = 3600.0
    api_key: str | None = None
    public_base_url: str | None = None
    webhook_shape: WebhookShape = "data"
    cost_per_image: float = 0.04

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.result_ttl < 0 or self.cost_per_image < 0:
            raise ValueError("result_ttl and cost_per_image must not be negative")
        if self.webhook_shape not in ("data", "flat"):
            raise ValueError("webhook_shape must be 'data' or 'flat'")
        if self.public_base_url is not None and not self.public_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("public_base_url must be an http:// or https:// URL")
