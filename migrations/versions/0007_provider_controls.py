"""Operator controls on each provider (paused, by whom and why; a capacity set at runtime),
and the indexes behind the console's lookups by external id and by metadata.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "provider_health", sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("provider_health", sa.Column("paused_by", sa.Text(), nullable=True))
    op.add_column("provider_health", sa.Column("paused_reason", sa.Text(), nullable=True))
    op.add_column("provider_health", sa.Column("capacity_override", sa.Integer(), nullable=True))
    op.create_index(
        "ix_jobs_external_id",
        "jobs",
        ["external_id"],
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "ix_jobs_metadata",
        "jobs",
        ["metadata"],
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_metadata", table_name="jobs")
    op.drop_index("ix_jobs_external_id", table_name="jobs")
    op.drop_column("provider_health", "capacity_override")
    op.drop_column("provider_health", "paused_reason")
    op.drop_column("provider_health", "paused_by")
    op.drop_column("provider_health", "paused_at")
