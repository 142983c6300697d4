"""Behind a transaction pooler: how the scheduler wakes, what psycopg is told, and the
lease setting's rule."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from worker.cli.common import as_user_error
from worker.config import Settings
from worker.errors import SettingsInvalid
from worker.pipeline.wakeups import ListeningWakeups, PollingWakeups
from worker.wiring import build, connect_args

POOLED = "postgresql+psycopg://u:p@pgbouncer:6432/editq"
DIRECT = "postgresql+psycopg://u:p@postgres:5432/editq"


@pytest.mark.parametrize(
    ("changes", "kind", "where"),
    [
        ({}, ListeningWakeups, "pgbouncer"),  # session pooling: LISTEN works where it is
        ({"database_pooling": "transaction"}, PollingWakeups, None),
        (
            {"database_pooling": "transaction", "database_direct_url": DIRECT},
            ListeningWakeups,
            "postgres",
        ),
    ],
    ids=["session", "transaction", "transaction-with-direct-url"],
)
def test_the_scheduler_listens_where_it_can_and_polls_where_it_cannot(
    changes: dict[str, str], kind: type, where: str | None
) -> None:
    container = build(Settings(database_url=POOLED, **changes))  # type: ignore[arg-type]
    try:
        wakeups = container.wakeups()
        assert type(wakeups) is kind
        assert wakeups.mode == ("poll" if kind is PollingWakeups else "listen")
        if where is not None:
            assert f"@{where}:" in wakeups._dsn  # type: ignore[attr-defined]
    finally:
        container.close()


def test_no_prepared_statements_through_a_transaction_pooler() -> None:
    assert connect_args(Settings(database_pooling="transaction")) == {"prepare_threshold": None}
    assert connect_args(Settings()) == {}


def test_migrations_run_past_the_pooler_when_a_direct_url_is_set() -> None:
    assert Settings(database_url=POOLED).direct_url() == POOLED
    assert Settings(database_url=POOLED, database_direct_url=DIRECT).direct_url() == DIRECT


def test_polling_wakeups_come_every_interval_and_a_close_cuts_a_wait_short() -> None:
    wakeups = PollingWakeups(every=0.01)
    assert wakeups.wait(5) is True  # a round is due after `every`
    assert wakeups.wait(0.001) is False  # the tick comes first

    slow = PollingWakeups(every=60)
    threading.Timer(0.05, slow.close).start()
    assert slow.wait(120) is False  # closed: no round, and no minute's wait


def test_a_lease_shorter_than_two_ticks_is_refused_naming_both_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITQ_TICK_SECONDS", "2")
    monkeypatch.setenv("EDITQ_SCHEDULER_LEASE_SECONDS", "3")
    with pytest.raises(ValidationError) as caught:
        Settings()
    error = as_user_error(caught.value)
    assert isinstance(error, SettingsInvalid)
    assert "EDITQ_SCHEDULER_LEASE_SECONDS" in str(error) and "EDITQ_TICK_SECONDS" in str(error)


def test_an_unknown_pooling_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITQ_DATABASE_POOLING", "statement")
    with pytest.raises(ValidationError, match="database_pooling"):
        Settings()
