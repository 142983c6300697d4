"""The scheduler lease: one row, taken by a single upsert that only wins when it is free.

Every statement is a plain short transaction, valid through PgBouncer in transaction
pooling: no advisory lock outlives its transaction, and time is the database's clock, so
hosts whose clocks disagree still agree on who leads.
"""

from __future__ import annotations

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from models.tables import Scheduler, SchedulerLease
from worker.repository.base import SessionBound, seconds_from_now
from worker.repository.sql import NOW
from worker.values.schedulers import Schedulers, SchedulerSeen

#: The one lease's name.
DISPATCH = "dispatch"


class LeadershipRows(SessionBound):
    """Take, renew and give up the dispatch lease; list the schedulers."""

    def hold_lease(self, me: str, seconds: float) -> bool:
        """Take the lease if it is free or expired, or renew it if ``me`` holds it; whether
        ``me`` holds it now, for ``seconds`` more."""
        new = insert(SchedulerLease).values(
            name=DISPATCH, holder=me, expires_at=seconds_from_now(seconds)
        )
        mine = SchedulerLease.holder == me
        statement = new.on_conflict_do_update(
            index_elements=[SchedulerLease.name],
            set_={
                "holder": new.excluded.holder,
                "since": case((mine, SchedulerLease.since), else_=NOW),
                "renewed_at": NOW,
                "expires_at": new.excluded.expires_at,
            },
            where=or_(mine, SchedulerLease.expires_at < NOW),
        ).returning(SchedulerLease.holder)
        return self.run(statement).first() is not None

    def release_lease(self, me: str) -> None:
        """Give the lease up at once (a clean stop), and leave the list of schedulers."""
        self.run(
            update(SchedulerLease)
            .where(SchedulerLease.name == DISPATCH, SchedulerLease.holder == me)
            .values(expires_at=NOW)
        )
        self.run(delete(Scheduler).where(Scheduler.id == me))

    def report_scheduler(self, me: str, host: str, pid: int, wakeups: str) -> None:
        """Say that scheduler ``me`` is running now."""
        new = insert(Scheduler).values(id=me, host=host, pid=pid, wakeups=wakeups)
        self.run(
            new.on_conflict_do_update(
                index_elements=[Scheduler.id],
                set_={"seen_at": NOW, "wakeups": new.excluded.wakeups},
            )
        )

    def forget_schedulers(self, unseen_seconds: float) -> int:
        """Drop the schedulers not heard from for ``unseen_seconds``; how many."""
        gone = self.run(
            delete(Scheduler)
            .where(Scheduler.seen_at < seconds_from_now(-unseen_seconds))
            .returning(Scheduler.id)
        )
        return len(gone.all())

    def schedulers(self, seen_within: float) -> Schedulers:
        """The lease's holder (if unexpired), and the schedulers seen within ``seen_within``
        seconds, the leader first."""
        lease = self.run(
            select(
                SchedulerLease.holder,
                SchedulerLease.since,
                func.extract("epoch", SchedulerLease.expires_at - NOW),
            ).where(SchedulerLease.name == DISPATCH)
        ).first()
        leader, since, left = (None, None, None) if lease is None else lease
        if left is not None and left <= 0:
            leader, since = None, None
        ago = func.extract("epoch", NOW - Scheduler.seen_at)
        rows = self.run(
            select(
                Scheduler.id,
                Scheduler.host,
                Scheduler.pid,
                Scheduler.wakeups,
                Scheduler.started_at,
                ago,
            )
            .where(Scheduler.seen_at > seconds_from_now(-seen_within))
            .order_by(Scheduler.started_at)
        ).all()
        running = tuple(
            SchedulerSeen(id_, host, pid, wakeups, started, round(float(a), 1), id_ == leader)
            for id_, host, pid, wakeups, started, a in rows
        )
        return Schedulers(
            leader,
            since,
            round(float(left), 1) if leader is not None and left is not None else None,
            tuple(sorted(running, key=lambda s: not s.leads)),
        )
