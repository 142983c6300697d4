"""Settings for the fal.ai emulator."""

from __future__ import annotations

from dataclasses import dataclass

from emulators.faults import FaultConfig

#: The user id the emulator signs its webhooks for, unless told otherwise.
DEFAULT_USER_ID = "emulator-user"


@dataclass(frozen=True)
class FalEmulatorConfig(FaultConfig):
    """Everything the fal.ai emulator needs: the shared fault settings plus fal's own.

    It inherits every :class:`~emulators.faults.FaultConfig` field, so it is built from flat
    keywords: ``FalEmulatorConfig(latency=0.1, jitter=0.05, concurrency=2, rate_429=0.1)``.
    ``user_id`` is sent and signed in webhooks. Output file URLs stop working ``result_ttl``
    seconds after the request finished. ``api_key`` is the only key accepted (``None``: any
    ``Key <x>`` header is accepted, but a missing header is still refused). URLs the emulator
    returns start with ``public_base_url`` (``None``: the base URL the request came in on).
    """

    user_id: str = DEFAULT_USER_ID
    result_ttl: float = 3600.0
    api_key: str | None = None
    public_base_url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.result_ttl < 0:
            raise ValueError("result_ttl must not be negative")
        if self.public_base_url is not None and not self.public_base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("public_base_url must be an http:// or https:// URL")
