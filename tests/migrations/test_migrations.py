"""The migrations build exactly the schema the models describe, and go down and up again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from models.tables import Base
from worker.migrate import downgrade, upgrade

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database(service_env: dict[str, str]) -> Iterator[tuple[str, Engine]]:
    """A new, empty database on the test server, dropped afterwards."""
    server = make_url(service_env["EDITQ_DATABASE_URL"])
    name = f"editq_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_from_empty_matches_the_models(empty_database: tuple[str, Engine]) -> None:
    url, engine = empty_database
    upgrade(url)
    assert _differences(engine) == []


def test_downgrade_then_upgrade(empty_database: tuple[str, Engine]) -> None:
    url, engine = empty_database
    upgrade(url)
    downgrade(url, "base")
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM pg_type WHERE typname = 'job_state'")) == 0
    upgrade(url)
    assert _differences(engine) == []
    assert {"jobs", "attempts", "job_outputs", "job_events"} <= set(
        inspect(engine).get_table_names()
    )
