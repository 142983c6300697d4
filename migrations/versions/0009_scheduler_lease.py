"""Several schedulers, one dispatching: the running schedulers and the leader's lease.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedulers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("wakeups", sa.Text(), nullable=False),
        sa.Column("started_at", _WHEN, server_default=sa.func.now(), nullable=False),
        sa.Column("seen_at", _WHEN, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedulers"),
    )
    op.create_table(
        "scheduler_lease",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("since", _WHEN, server_default=sa.func.now(), nullable=False),
        sa.Column("renewed_at", _WHEN, server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_scheduler_lease"),
    )


def downgrade() -> None:
    op.drop_table("scheduler_lease")
    op.drop_table("schedulers")
