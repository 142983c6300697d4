"""The whole pipeline through a real PgBouncer in transaction pooling.

Every process (API, worker, scheduler) reaches PostgreSQL through PgBouncer, whose pool
has fewer server connections than editq opens, so each transaction may run on a different
server connection than the one before: a prepared statement, a session setting or a
LISTEN kept across transactions would break. The scheduler ticks only once a minute here,
so a chain whose next steps are dispatched within seconds shows the wake-ups work: LISTEN
on the direct URL when one is set, fast polling when not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.acceptance.conftest import PROVIDERS, Running, start_stack
from tests.factories import data_uri
from tests.pgbouncer import POOL_SIZE, Bouncer, pgbouncer
from tests.waiting import wait_until

pytestmark = pytest.mark.acceptance

#: Between two ticks: anything dispatched sooner was woken, not ticked.
TICK_SECONDS = 60


@pytest.fixture(scope="module")
def bouncer(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bouncer]:
    with pgbouncer(test_env["EDITQ_DATABASE_URL"], tmp_path_factory.mktemp("pgbouncer")) as b:
        yield b


@pytest.fixture(scope="module", params=["poll", "listen"])
def pooled_stack(
    request: pytest.FixtureRequest,
    test_env: dict[str, str],
    bouncer: Bouncer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Running]]:
    """A stack whose every process uses PgBouncer; the scheduler LISTENs on the direct URL
    (``listen``) or, without one, polls (``poll``)."""
    pooled = {
        "EDITQ_DATABASE_URL": bouncer.url.replace("postgresql://", "postgresql+psycopg://", 1),
        "EDITQ_DATABASE_POOLING": "transaction",
        "EDITQ_TICK_SECONDS": str(TICK_SECONDS),
        "EDITQ_SCHEDULER_LEASE_SECONDS": str(3 * TICK_SECONDS),
    }
    if request.param == "listen":
        pooled["EDITQ_DATABASE_DIRECT_URL"] = test_env["EDITQ_DATABASE_URL"]
    logs = tmp_path_factory.mktemp(f"logs-{request.param}")
    for running in start_stack(test_env, logs, webhooks=True, extra_env=pooled):
        yield request.param, running


def _listening(test_env: dict[str, str]) -> int:
    """Sessions of the test database that LISTEN (straight to PostgreSQL, not pooled)."""
    engine = create_engine(test_env["EDITQ_DATABASE_URL"], poolclass=NullPool)
    with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query ILIKE 'LISTEN %'"
        )
        found = int(conn.execute(text(query)).scalar_one())
    engine.dispose()
    return found


def test_a_batch_of_chains_runs_through_pgbouncer_woken_without_waiting_for_a_tick(
    pooled_stack: tuple[str, Running], bouncer: Bouncer, test_env: dict[str, str]
) -> None:
    mode, stack = pooled_stack
    rows = [
        {
            "external_id": f"{mode}-{i:02d}",
            "image_url": data_uri(i),
            "prompt": "Remove the background",
            "providers": [PROVIDERS[i % 3]],
            "steps": [{"prompt": "Put it on a beach"}, {"prompt": "Warm colour grade"}],
        }
        for i in range(30)
    ]
    batch_id = stack.post_batch(rows)["id"]

    def all_done() -> dict[str, Any] | None:
        batch: dict[str, Any] = stack.api.get(f"/v1/batches/{batch_id}").json()
        return batch if batch["done"] + batch["failed"] == 30 else None

    # Each step after the first is queued by a finalize and must be dispatched by a
    # wake-up: a tick would come only after TICK_SECONDS (and writes the result files).
    batch = wait_until(all_done, timeout=TICK_SECONDS * 0.75, interval=0.5, what="the chains")

    assert batch["done"] == 30 and batch["failed"] == 0
    assert batch["steps"] == {"total": 90, "done": 90}
    # PgBouncer multiplexed editq's connections over its few server connections.
    [pool] = [p for p in bouncer.show("POOLS") if p["database"] != "pgbouncer"]
    servers = sum(
        int(pool[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    )
    clients = [c for c in bouncer.show("CLIENTS") if c["database"] != "pgbouncer"]
    assert servers <= POOL_SIZE < len(clients)
    # The scheduler says how it wakes, and LISTENs only where it may.
    shown = stack.editq("schedulers", "--json")
    assert shown.returncode == 0, shown.stderr
    seen = json.loads(shown.stdout)
    [leader] = [s for s in seen["schedulers"] if s["leads"]]
    assert seen["leader"] == leader["id"] and leader["wakeups"] == mode
    assert leader["pid"] == stack.stack.procs["scheduler"].pid
    assert _listening(test_env) == (1 if mode == "listen" else 0)
    ready = stack.api.get("/readyz").json()
    assert ready["status"] == "ready" and ready["scheduler"]["leader"] == seen["leader"]
    for log in Path(stack.stack.logs).glob("*.log"):
        assert "prepared statement" not in log.read_text(), log
