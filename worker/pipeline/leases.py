"""Keeping the leases of live work alive, so that a dead worker's lease runs out in seconds.

A submitting or finalizing job holds a lease (``lease_expires_at``): past it, the reconcile
tick takes the job to be abandoned and repairs it. A lease long enough for the slowest
copy would leave a dead worker's job waiting minutes, long after the provider's output
URL expired; a short one would take live work away. So leases are short
(``EDITQ_LEASE_SECONDS``, 15 s by default) and renewed while the work is alive: each
process has one :class:`LeaseKeeper` thread, which renews every lease the process holds
in one statement, every third of a lease. When the process dies, so do its renewals.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from worker.database import Database

log = logging.getLogger("editq.leases")


class LeaseKeeper:
    """Renews, from a thread of its own, the leases this process's work holds.

    :param db: transactions for the renewals.
    :param lease_seconds: how long a renewal extends a lease.
    :param interval: seconds between renewals (a third of a lease by default).
    """

    def __init__(self, db: Database, lease_seconds: float, interval: float | None = None) -> None:
        self._db = db
        self._lease_seconds = lease_seconds
        self._interval = interval if interval is not None else lease_seconds / 3
        self._held: Counter[tuple[uuid.UUID, int]] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def holding(self, job_id: uuid.UUID, number: int) -> Iterator[None]:
        """Keep the lease of attempt ``number`` of a job alive while the block runs."""
        key = (job_id, number)
        with self._lock:
            self._held[key] += 1
            self._start()
        try:
            yield
        finally:
            with self._lock:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]

    def renew(self) -> int:
        """Renew every lease held now; returns how many rows were renewed."""
        with self._lock:
            held = list(self._held)
        if not held:
            return 0
        with self._db.transaction() as repo:
            return repo.renew_leases(held, self._lease_seconds)

    def close(self) -> None:
        """Stop renewing (the thread ends within one interval)."""
        self._stop.set()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.renew()
            except Exception:  # noqa: BLE001 - a failed renewal is retried next interval
                log.warning("could not renew leases; trying again in %.1f s", self._interval)
