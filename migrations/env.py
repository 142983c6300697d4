"""Alembic environment: the target metadata is models' metadata; the URL is EDITQ_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from models.tables import Base

config = context.config


def _url() -> str:
    # `editq db upgrade` passes the URL it was given; plain `alembic` reads the environment.
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("EDITQ_DATABASE_URL")
    if not url:
        raise SystemExit("EDITQ_DATABASE_URL is not set")
    return url


def run_offline() -> None:
    """Emit SQL without a connection (``alembic upgrade --sql``)."""
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate through a live connection."""
    engine = create_engine(_url())
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
