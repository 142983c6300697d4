"""Retention: finished jobs by completion time, for the pruning rounds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FINISHED = sa.text("state IN ('succeeded', 'failed', 'canceled')")


def upgrade() -> None:
    op.create_index("ix_jobs_completed", "jobs", ["completed_at"], postgresql_where=_FINISHED)


def downgrade() -> None:
    op.drop_index("ix_jobs_completed", table_name="jobs", postgresql_where=_FINISHED)
