"""The running schedulers and which one leads, as ``editq providers`` and ``/readyz`` show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SchedulerSeen:
    """One ``editq scheduler`` as it last reported itself."""

    id: str
    host: str
    pid: int
    #: ``listen`` or ``poll`` (see :mod:`worker.pipeline.wakeups`).
    wakeups: str
    started_at: datetime
    #: Seconds since its last tick.
    seen_seconds_ago: float
    leads: bool


@dataclass(frozen=True, slots=True)
class Schedulers:
    """Who holds the dispatch lease, and every scheduler heard from lately."""

    #: The holder of an unexpired lease; None when none leads (none runs, or a handover).
    leader: str | None
    #: When the leader took the lease.
    since: datetime | None
    #: Seconds left of the leader's lease.
    expires_in: float | None
    running: tuple[SchedulerSeen, ...]

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``/readyz``'s ``scheduler`` and ``editq providers --json``."""
        return {
            "leader": self.leader,
            "since": self.since.isoformat() if self.since else None,
            "lease_expires_in": self.expires_in,
            "schedulers": [
                {
                    "id": s.id,
                    "host": s.host,
                    "pid": s.pid,
                    "wakeups": s.wakeups,
                    "leads": s.leads,
                    "started_at": s.started_at.isoformat(),
                    "seen_seconds_ago": s.seen_seconds_ago,
                }
                for s in self.running
            ],
        }
