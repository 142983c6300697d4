"""The quality gate: each output's checks, each job's policy, and what it keeps of its source.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("quality", postgresql.JSONB(), nullable=True))
    op.add_column(
        "jobs", sa.Column("quality_retries", sa.SmallInteger(), server_default="0", nullable=False)
    )
    op.add_column("jobs", sa.Column("source_facts", postgresql.JSONB(), nullable=True))
    op.add_column("batches", sa.Column("quality", postgresql.JSONB(), nullable=True))
    op.add_column("job_outputs", sa.Column("quality", postgresql.JSONB(), nullable=True))
    op.add_column("attempts", sa.Column("quality", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "quality")
    op.drop_column("job_outputs", "quality")
    op.drop_column("batches", "quality")
    op.drop_column("jobs", "source_facts")
    op.drop_column("jobs", "quality_retries")
    op.drop_column("jobs", "quality")
