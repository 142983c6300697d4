"""Several schedulers on one PostgreSQL: one leads, the others stand by and take over.

The lease is the database's: these tests run real scheduler loops in threads against the
test database, each with its own lease holder, and watch who dispatches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool

from models.state import JobState
from tests.factories import job_request
from tests.waiting import wait_until
from worker.database import Database
from worker.pipeline import scheduler
from worker.pipeline.leadership import Leadership, schedulers
from worker.values.schedulers import Schedulers
from worker.wiring import Container

pytestmark = pytest.mark.integration

LEASE = 1.0
TICK = 0.2


def _leader(container: Container) -> Schedulers:
    return schedulers(container.database("test"), LEASE)


def test_one_scheduler_leads_and_the_others_stand_by(container: Container) -> None:
    first, second = (Leadership(container.database("scheduler"), LEASE, "listen") for _ in "ab")

    assert first.renew() and first.leading
    assert not second.renew() and not second.leading
    since = _leader(container).since
    assert first.renew()  # a renewal keeps the lease, and when it was taken

    seen = _leader(container)
    assert seen.leader == first.me and seen.since == since
    assert seen.expires_in is not None and 0 < seen.expires_in <= LEASE
    assert [(s.id, s.leads) for s in seen.running] == [(first.me, True), (second.me, False)]


def test_a_standby_takes_the_lease_only_once_it_has_expired(container: Container) -> None:
    first, second = (Leadership(container.database("scheduler"), LEASE, "listen") for _ in "ab")
    assert first.renew()
    assert not second.renew()  # the lease is live: no takeover

    # The leader stops renewing (killed); the standby's next tries win once it expires.
    taken = wait_until(second.renew, timeout=10 * LEASE, interval=TICK, what="the takeover")

    assert taken and _leader(container).leader == second.me
    assert not first.renew()  # the old leader, back, stands by
    assert not first.leading


def test_a_leader_that_stops_cleanly_hands_over_at_the_next_tick(container: Container) -> None:
    first, second = (Leadership(container.database("scheduler"), LEASE, "listen") for _ in "ab")
    assert first.renew()

    first.release()

    assert second.renew()
    seen = _leader(container)
    assert seen.leader == second.me and [s.id for s in seen.running] == [second.me]


@contextmanager
def _loop(container: Container, leadership: Leadership) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(
        target=scheduler.run,
        args=(container.pipeline("scheduler"), container.batches("scheduler"), TICK, stop),
        kwargs={"leadership": leadership},
        daemon=True,
    )
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(10)


def _cuttable(container: Container, cut: threading.Event) -> Database:
    """Transactions on a fresh connection each, refused once ``cut`` is set (the host has
    lost the database)."""
    url = make_url(container.settings.database_url).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)

    def connect() -> psycopg.Connection[object]:
        if cut.is_set():
            raise psycopg.OperationalError("connection refused: the network is down")
        return psycopg.connect(dsn)

    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=NullPool)
    return Database(sessionmaker(engine, expire_on_commit=False), "scheduler")


def test_a_leader_cut_off_from_the_database_is_replaced_and_stands_by_once_back(
    container: Container,
) -> None:
    cut = threading.Event()
    cut_off = Leadership(_cuttable(container, cut), LEASE, "listen")
    standby = Leadership(container.database("scheduler"), LEASE, "listen")
    with _loop(container, cut_off):
        wait_until(lambda: _leader(container).leader == cut_off.me, what="the first leader")
        with _loop(container, standby):
            wait_until(lambda: len(_leader(container).running) == 2, what="the standby")
            assert _leader(container).leader == cut_off.me

            cut.set()
            wait_until(lambda: _leader(container).leader == standby.me, what="the takeover")
            assert not cut_off.leading  # its own clock told it to stop acting

            # Jobs go on being dispatched by the new leader.
            job, _ = container.jobs("test").create(job_request())
            wait_until(
                lambda: container.jobs("test").get(job.id).job.state is not JobState.QUEUED,
                what="the new leader to dispatch",
            )

            cut.clear()
            wait_until(
                lambda: _leader(container).running[-1].seen_seconds_ago < LEASE,
                what="the old leader to be heard from again",
            )
            assert _leader(container).leader == standby.me
            assert not cut_off.leading


def test_a_scheduler_that_stops_leaves_the_list_and_gives_up_its_lease(
    container: Container,
) -> None:
    leadership = Leadership(container.database("scheduler"), LEASE, "poll")
    with _loop(container, leadership):
        seen = wait_until(
            lambda: (s := _leader(container)).leader == leadership.me and s, what="it to lead"
        )
        assert [s.wakeups for s in seen.running] == ["poll"]
    seen = _leader(container)
    assert seen.leader is None and seen.running == ()
