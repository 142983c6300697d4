"""Waking the scheduler when a dispatch round has work: a slot freed or a job queued.

Every transaction that takes a job out of flight (the provider finished, failed, or the
job was canceled) or queues one (a new job or batch, a retry) sends
``NOTIFY editq_dispatch`` with its writes, so the wake-up exists exactly when they commit,
and no broker message is needed. The scheduler listens between ticks and runs a dispatch
round when one arrives, after a short pause that lets a burst share one round.
PostgreSQL folds the notifications of one transaction into one, and the scheduler drains
whatever queued up, so a thousand completions cost a few dispatch rounds, not a
thousand. Without notifications (a lost connection) the tick still dispatches every
``tick_seconds``.

LISTEN needs a session of its own, which PgBouncer's transaction pooling does not give: a
notification would reach whichever client holds the server connection at that moment, or
no one. Behind such a pooler the scheduler LISTENs on ``EDITQ_DATABASE_DIRECT_URL`` when
it is set, and otherwise :class:`PollingWakeups` runs a dispatch round every
``EDITQ_DISPATCH_POLL_SECONDS`` instead (the NOTIFYs are still sent, and cost nothing).
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import psycopg
from sqlalchemy.engine import make_url

from worker.repository.sql import CHANNEL

log = logging.getLogger("editq.scheduler")


class Wakeups(Protocol):
    """What wakes the scheduler between ticks to run a dispatch round."""

    #: ``listen`` or ``poll``, as ``editq providers`` shows it.
    mode: str

    def wait(self, timeout: float) -> bool:
        """Block until a dispatch round is due (True) or ``timeout`` seconds pass (False)."""
        ...

    def drain(self) -> None:
        """Forget wake-ups that queued up meanwhile: one dispatch round serves them all."""
        ...

    def close(self) -> None:
        """Release what waiting holds (the next wait takes it again)."""
        ...


class ListeningWakeups:
    """A LISTEN connection of its own; reopened after it breaks."""

    mode = "listen"

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._conn: psycopg.Connection[object] | None = None

    def wait(self, timeout: float) -> bool:
        """Block until a notification arrives (True) or ``timeout`` seconds pass (False)."""
        try:
            conn = self._connect()
            return any(True for _ in conn.notifies(timeout=timeout, stop_after=1))
        except psycopg.Error as exc:
            log.warning("dispatch notifications unavailable (%s); ticks carry on", exc)
            self.close()
            return False

    def drain(self) -> None:
        """Forget notifications that queued up meanwhile: one dispatch round serves them all."""
        if self._conn is None:
            return
        try:
            for _ in self._conn.notifies(timeout=0):
                pass
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        """Close the connection (the next wait reopens it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[object]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._dsn, autocommit=True)
            self._conn.execute(f"LISTEN {CHANNEL}")
        return self._conn


class PollingWakeups:
    """No notifications: a dispatch round is due every ``every`` seconds."""

    mode = "poll"

    def __init__(self, every: float) -> None:
        self._every = every
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Wait ``every`` seconds (True), or less when ``timeout`` is shorter (False)."""
        self._closed.clear()
        if timeout < self._every:
            self._closed.wait(timeout)
            return False
        return not self._closed.wait(self._every)

    def drain(self) -> None:
        """Nothing queues up."""

    def close(self) -> None:
        """Cut a wait short."""
        self._closed.set()
