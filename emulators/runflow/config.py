"""Settings for the Runflow emulator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from emulators.faults import FaultConfig, WebhookPolicy

#: Runflow retries a callback "on an exponential schedule" and stops "after a few attempts";
#: neither number is published, so the emulator retries five times over about 20 minutes.
RUNFLOW_CALLBACK_RETRY_DELAYS: tuple[float, ...] = (10.0, 30.0, 90.0, 270.0, 810.0)


def generate_callback_secret() -> str:
    """A fresh callback signing secret in Runflow's ``whsec_...`` form."""
    return "whsec_" + secrets.token_urlsafe(32)


def _runflow_webhook_policy() -> WebhookPolicy:
    return WebhookPolicy(retry_delays=RUNFLOW_CALLBACK_RETRY_DELAYS)


@dataclass(frozen=True)
class RunflowEmulatorConfig(FaultConfig):
    """Everything the Runflow emulator needs: the shared fault settings plus Runflow's own.

    It inherits every :class:`~emulators.faults.FaultConfig` field, so it is built from flat
    keywords: ``RunflowEmulatorConfig(latency=0.1, concurrency=2, rate_429=0.1)``; only the
    webhook policy's default differs (:data:`RUNFLOW_CALLBACK_RETRY_DELAYS`). Output URLs stop
    working ``result_ttl`` seconds after the run finished; each URL handed out (when the run
    is read, or in its callback) works ``url_ttl`` seconds (``None``: ``result_ttl``).
    ``api_key`` is the only key accepted (``None``: any ``Bearer <x>`` is accepted, but a call
    without one is still refused).
    ``callback_secret`` signs callbacks until ``POST /v1/callback-secrets`` issues a new one.
    URLs the emulator returns start with ``public_base_url`` (``None``: the base URL the
    request came in on).
    """

    webhook: WebhookPolicy = field(default_factory=_runflow_webhook_policy)
    result_ttl: float = 3600.0
    url_ttl: float | None = None
    api_key: str | None = None
    callback_secret: str = field(default_factory=generate_callback_secret)
    public_base_url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.result_ttl < 0 or (self.url_ttl is not None and self.url_ttl <= 0):
            raise ValueError("result_ttl must not be negative, nor url_ttl zero or less")
        if not self.callback_secret:
            raise ValueError("callback_secret must not be empty")
        if self.public_base_url is not None and not self.public_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("public_base_url must be an http:// or https:// URL")
