"""Batches with their rejected rows, jobs as batch rows, and producer callbacks.

Dispatch now orders each batch's backlog on its own, for round-robin across batches.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "validating", "running", "finalizing", "completed", "canceled", name="batch_state"
            ),
            nullable=False,
        ),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("providers", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("budget_usd", sa.Numeric(precision=12, scale=4), nullable=True),
        sa.Column("budget_exhausted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.Column("rows_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rows_accepted", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rows_rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("results_key", sa.Text(), nullable=True),
        sa.Column("errors_key", sa.Text(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_batches_idempotency_key")),
    )
    op.create_index("ix_batches_created", "batches", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_batches_open",
        "batches",
        ["state"],
        unique=False,
        postgresql_where=sa.text("state IN ('running', 'finalizing')"),
    )
    op.create_table(
        "batch_rejects",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_batch_rejects_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_rejects")),
    )
    op.create_index("ix_batch_rejects_batch", "batch_rejects", ["batch_id", "line"], unique=False)
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batches.id"],
            name=op.f("fk_callbacks_batch_id_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_callbacks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    op.create_index("ix_callbacks_batch", "callbacks", ["batch_id"], unique=False)
    op.create_index(
        "ix_callbacks_due",
        "callbacks",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("ix_callbacks_job", "callbacks", ["job_id"], unique=False)
    op.create_table(
        "callback_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("callback_id", sa.Uuid(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["callback_id"],
            ["callbacks.id"],
            name=op.f("fk_callback_attempts_callback_id_callbacks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    op.create_index(
        "ix_callback_attempts_callback", "callback_attempts", ["callback_id", "id"], unique=False
    )
    op.add_column("jobs", sa.Column("batch_id", sa.Uuid(), nullable=True))
    op.drop_index(
        op.f("ix_jobs_dispatch"),
        table_name="jobs",
        postgresql_where="(state = 'queued'::job_state)",
    )
    op.create_index(
        "ix_jobs_dispatch",
        "jobs",
        ["batch_id", sa.literal_column("priority DESC"), "run_after"],
        unique=False,
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_index("ix_jobs_batch_state", "jobs", ["batch_id", "state"], unique=False)
    op.create_index(
        "uq_jobs_batch_external_id",
        "jobs",
        ["batch_id", "external_id"],
        unique=True,
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_foreign_key(
        op.f("fk_jobs_batch_id_batches"),
        "jobs",
        "batches",
        ["batch_id"],
        ["id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_jobs_batch_id_batches"), "jobs", type_="foreignkey")
    op.drop_index(
        "uq_jobs_batch_external_id",
        table_name="jobs",
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.drop_index("ix_jobs_batch_state", table_name="jobs")
    op.drop_index(
        "ix_jobs_dispatch", table_name="jobs", postgresql_where=sa.text("state = 'queued'")
    )
    op.create_index(
        op.f("ix_jobs_dispatch"),
        "jobs",
        ["priority", "run_after"],
        unique=False,
        postgresql_where="(state = 'queued'::job_state)",
    )
    op.drop_column("jobs", "batch_id")
    op.drop_index("ix_callback_attempts_callback", table_name="callback_attempts")
    op.drop_table("callback_attempts")
    op.drop_index("ix_callbacks_job", table_name="callbacks")
    op.drop_index(
        "ix_callbacks_due", table_name="callbacks", postgresql_where=sa.text("state = 'pending'")
    )
    op.drop_index("ix_callbacks_batch", table_name="callbacks")
    op.drop_table("callbacks")
    op.drop_index("ix_batch_rejects_batch", table_name="batch_rejects")
    op.drop_table("batch_rejects")
    op.drop_index(
        "ix_batches_open",
        table_name="batches",
        postgresql_where=sa.text("state IN ('running', 'finalizing')"),
    )
    op.drop_index("ix_batches_created", table_name="batches")
    op.drop_table("batches")
    sa.Enum(name="batch_state").drop(op.get_bind(), checkfirst=False)
