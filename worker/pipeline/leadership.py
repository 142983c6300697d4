"""Several schedulers, one dispatching: a lease in PostgreSQL, renewed every tick.

Any number of ``editq scheduler`` processes may run, on any hosts. Each tick, each one tries
to take or renew the lease (:mod:`worker.repository.leadership`); the one that holds it
runs the tick (dispatch, polls, repairs, batches, callbacks, pruning) and the others only
say they are alive. When the leader stops renewing (killed, frozen, or cut off from the
database) its lease expires after ``EDITQ_SCHEDULER_LEASE_SECONDS`` and the next standby
to tick takes it; a leader that stops cleanly gives it up at once.

Leading is an economy, not what keeps jobs safe: every dispatch round runs under an
advisory lock and every move of a job is a guarded transition, so even two schedulers
that both believed they led (a frozen leader waking after its lease went to another)
would pay nothing twice. A leader stops acting on its own once its lease has run out by
its own monotonic clock, counted from before its last renewal was sent.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

from worker.database import Database
from worker.values.schedulers import Schedulers

log = logging.getLogger("editq.scheduler")

#: A scheduler not heard from for this long leaves the list ``editq providers`` shows.
FORGET_SECONDS = 3600.0


def identity() -> tuple[str, str, int]:
    """This process's scheduler id (``host:pid:token``), host and pid."""
    host, pid = socket.gethostname(), os.getpid()
    return f"{host}:{pid}:{secrets.token_hex(3)}", host, pid


class Leadership:
    """This scheduler's hold on the dispatch lease."""

    def __init__(self, db: Database, lease_seconds: float, wakeups: str) -> None:
        self._db = db
        self.lease_seconds = lease_seconds
        self._wakeups = wakeups
        self.me, self._host, self._pid = identity()
        self._valid_until = 0.0
        self._led = False

    @property
    def leading(self) -> bool:
        """Whether this scheduler holds the lease now, by its own clock."""
        return time.monotonic() < self._valid_until

    def renew(self) -> bool:
        """Take or renew the lease and say this scheduler is alive; whether it leads.

        A database error propagates: the lease then runs out on its own.
        """
        sent = time.monotonic()
        with self._db.transaction() as repo:
            leads = repo.hold_lease(self.me, self.lease_seconds)
            repo.report_scheduler(self.me, self._host, self._pid, self._wakeups)
            if leads:
                repo.forget_schedulers(FORGET_SECONDS)
        self._valid_until = sent + self.lease_seconds if leads else 0.0
        if leads != self._led:
            if leads:
                log.info("scheduler %s leads: it dispatches from now on", self.me)
            else:
                log.info("scheduler %s stands by: another scheduler leads", self.me)
        self._led = leads
        return leads

    def release(self) -> None:
        """Give the lease up (a clean stop), so a standby takes over at its next tick."""
        self._valid_until = 0.0
        try:
            with self._db.transaction() as repo:
                repo.release_lease(self.me)
        except Exception:  # noqa: BLE001 - stopping anyway; the lease expires on its own
            log.warning("could not give up the scheduler lease; it expires on its own")


def schedulers(db: Database, lease_seconds: float) -> Schedulers:
    """Who leads, and every scheduler seen within three leases."""
    with db.transaction() as repo:
        return repo.schedulers(3 * lease_seconds)
