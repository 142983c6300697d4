"""Routing: each job's and batch's routing choice, each provider's learned limit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUCCEEDED = sa.text("outcome = 'succeeded'")


def upgrade() -> None:
    # Jobs queued before this revision keep the routing they were queued under.
    op.add_column(
        "jobs", sa.Column("routing", sa.Text(), server_default="failover", nullable=False)
    )
    op.add_column("batches", sa.Column("routing", sa.Text(), nullable=True))
    op.add_column("provider_health", sa.Column("learned_limit", sa.Float(), nullable=True))
    op.add_column(
        "provider_health", sa.Column("limit_cut_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_attempts_finished",
        "attempts",
        ["finished_at"],
        unique=False,
        postgresql_where=_SUCCEEDED,
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_finished", table_name="attempts", postgresql_where=_SUCCEEDED)
    op.drop_column("provider_health", "limit_cut_at")
    op.drop_column("provider_health", "learned_limit")
    op.drop_column("batches", "routing")
    op.drop_column("jobs", "routing")
