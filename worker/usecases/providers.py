"""An operator's controls on a provider: pause and resume it, set its capacity at runtime.

A paused provider is sent nothing; the jobs queued for it move on by their routing, as
when its breaker is open (a job listing no other provider waits). A capacity set here is
the provider's in-flight ceiling until it is reset, in every process at once, since it
lives on the provider's health row. Who did it, and why, is kept and logged.
"""

from __future__ import annotations

import logging

from worker.database import Database
from worker.errors import ProviderControlInvalid, UnknownProvider
from worker.values.breaker import Limits

log = logging.getLogger("editq.providers")

#: The largest capacity an operator may set: far above any provider account's limit.
MAX_CAPACITY = 10_000


class ProviderControls:
    """Pause, resume and size providers; every action names the operator who took it."""

    def __init__(self, db: Database, limits: Limits) -> None:
        self._db = db
        self._limits = limits

    def pause(self, provider: str, reason: str | None) -> bool:
        """Send ``provider`` nothing until resumed; False when it was paused already."""
        self._known(provider)
        if not reason or not reason.strip():
            raise ProviderControlInvalid("reason: say why the provider is paused")
        with self._db.transaction() as repo:
            changed = repo.set_paused(provider, self._db.actor, reason.strip())
            repo.wake_dispatch()  # its queued jobs may move on at once
        if changed:
            log.warning("%s paused %s: %s", self._db.actor, provider, reason.strip())
        return changed

    def resume(self, provider: str) -> bool:
        """Let dispatch send ``provider`` jobs again; False when it was not paused."""
        self._known(provider)
        with self._db.transaction() as repo:
            changed = repo.set_paused(provider, None, None)
            repo.wake_dispatch()
        if changed:
            log.warning("%s resumed %s", self._db.actor, provider)
        return changed

    def set_capacity(self, provider: str, capacity: int | None) -> None:
        """Make ``capacity`` the provider's in-flight ceiling (None: the configured one)."""
        self._known(provider)
        if capacity is not None and not 1 <= capacity <= MAX_CAPACITY:
            raise ProviderControlInvalid(
                f"capacity: {capacity} is not a whole number from 1 to {MAX_CAPACITY:,}"
                " (pause the provider to send it nothing)"
            )
        with self._db.transaction() as repo:
            repo.set_capacity(provider, capacity)
            repo.wake_dispatch()
        configured = self._limits.capacity.get(provider, 0)
        shown = f"{capacity}" if capacity is not None else f"the configured {configured}"
        log.warning("%s set %s's capacity to %s", self._db.actor, provider, shown)

    def _known(self, provider: str) -> None:
        if provider not in self._limits.order:
            configured = ", ".join(self._limits.order)
            raise UnknownProvider(
                f"provider: {provider!r} is not configured; the providers are {configured}",
                provider=provider,
            )
