"""What every use case shares: a transaction opener, the task queue, and best-effort publish."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from worker.repository import Repository
from worker.values.observations import Observation

log = logging.getLogger("editq")


class TaskQueue(Protocol):
    """Where use cases send work for the workers (Celery in production).

    Messages carry ids only. A lost message loses nothing: the scheduler's ticks find every
    row whose message went missing.
    """

    def submit(self, job_id: uuid.UUID, attempt: int) -> None:
        """Send attempt ``attempt`` of a job to its provider."""
        ...

    def poll(self, job_id: uuid.UUID, attempt: int) -> None:
        """Ask the provider where attempt ``attempt`` of a job is."""
        ...

    def finalize(self, job_id: uuid.UUID, attempt: int) -> None:
        """Copy the outputs of a finished attempt to storage."""
        ...

    def cancel_at_provider(self, job_id: uuid.UUID, attempt: int) -> None:
        """Ask the provider to stop an attempt of a canceled job."""
        ...

    def finish_batch(self, batch_id: uuid.UUID) -> None:
        """Write the result files of a batch whose jobs have all finished."""
        ...

    def deliver_callback(self, callback_id: uuid.UUID, attempt: int) -> None:
        """Make try number ``attempt`` of a producer callback."""
        ...


class Database:
    """Opens transactions that hand out a :class:`Repository`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        actor: str,
        observe: Callable[[Sequence[Observation]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self.actor = actor
        self._observe = observe

    @contextmanager
    def transaction(self) -> Iterator[Repository]:
        """One transaction: committed when the block ends, rolled back if it raises.

        What it did is handed to ``observe`` (the metrics) once it has committed.
        """
        with self._sessions.begin() as session:
            repo = Repository(session, self.actor)
            yield repo
        if self._observe is not None and repo.observed:
            self._observe(repo.observed)


def publish(send: Callable[..., None], *args: object) -> bool:
    """Send a message, tolerating a broker outage; False when it could not be sent.

    A message that could not be sent is found by the scheduler's ticks later; a caller that
    can tell the tick to look at once (:meth:`Repository.lease_due_now`) does so.
    """
    try:
        send(*args)
    except Exception:  # noqa: BLE001 - any broker failure is covered by the periodic ticks
        log.warning("could not publish %s%r; the scheduler tick will pick it up", send, args)
        return False
    return True
