"""Multi-turn edit chains: a job's later steps, the step it is on, and each row's step.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("state = 'queued'")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("step", sa.SmallInteger(), server_default="1", nullable=False))
    op.add_column(
        "jobs",
        sa.Column(
            "steps", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
    )
    op.add_column(
        "jobs",
        sa.Column(
            "callback_events",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
    )
    op.add_column(
        "attempts", sa.Column("step", sa.SmallInteger(), server_default="1", nullable=False)
    )
    op.add_column(
        "job_outputs", sa.Column("step", sa.SmallInteger(), server_default="1", nullable=False)
    )
    op.drop_constraint(op.f("pk_job_outputs"), "job_outputs", type_="primary")
    op.create_primary_key(op.f("pk_job_outputs"), "job_outputs", ["job_id", "step", "index"])
    op.drop_index("ix_jobs_dispatch", table_name="jobs", postgresql_where=_QUEUED)
    op.create_index(
        "ix_jobs_dispatch",
        "jobs",
        [
            "batch_id",
            sa.literal_column("priority DESC"),
            sa.literal_column("step DESC"),
            "run_after",
        ],
        unique=False,
        postgresql_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_dispatch", table_name="jobs", postgresql_where=_QUEUED)
    op.create_index(
        "ix_jobs_dispatch",
        "jobs",
        ["batch_id", sa.literal_column("priority DESC"), "run_after"],
        unique=False,
        postgresql_where=_QUEUED,
    )
    # Outputs of later steps have no place in the one-step table.
    op.execute("DELETE FROM job_outputs WHERE step > 1")
    op.drop_constraint(op.f("pk_job_outputs"), "job_outputs", type_="primary")
    op.create_primary_key(op.f("pk_job_outputs"), "job_outputs", ["job_id", "index"])
    op.drop_column("job_outputs", "step")
    op.drop_column("attempts", "step")
    op.drop_column("jobs", "callback_events")
    op.drop_column("jobs", "steps")
    op.drop_column("jobs", "step")
