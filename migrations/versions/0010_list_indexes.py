"""Large histories: the jobs list's filters checked in the index, a batch's jobs in order,
and a batch's queue read in claim order without a sort.

``ix_jobs_list`` replaces ``ix_jobs_created`` (its first two columns): with the state,
provider and error code as keys too, a filtered list passes over the jobs it leaves out
in the index rather than reading each one's row. ``ix_jobs_batch_list`` replaces
``ix_jobs_batch_state``: a batch's jobs in the list's order, with their state, so listing
an old batch no longer walks every newer job. ``ix_jobs_dispatch`` gains ``created_at``,
the last key of the claim order: a batch's rows share the others, so a dispatch round
sorted the batch's whole queue to take its head.

And ``jobs`` is analyzed once 1 % of it has changed, not PostgreSQL's 10 %: the planner
finds queued jobs by what the statistics say of them, and with a large history of
finished jobs the statistics of a table analyzed before a batch arrived say there are
none, so a dispatch round would read the whole queue until the next ANALYZE (100,000
changes later at a million jobs).

The indexes are built with ``CONCURRENTLY``, outside the migration's transaction: on a
deployment with a long history a plain build would hold the jobs table against writes
for as long as it reads it, seconds a million jobs, and the API would stand still
meanwhile. The new dispatch index is built beside the old one and takes its name after,
so dispatch always has one. A build that is interrupted leaves an invalid index behind;
drop it (``DROP INDEX CONCURRENTLY ix_jobs_...``) and run ``editq db upgrade`` again.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_IN_A_BATCH = sa.text("batch_id IS NOT NULL")
_QUEUED = sa.text("state = 'queued'")
_DISPATCH = ["batch_id", sa.literal_column("priority DESC"), sa.literal_column("step DESC")]


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_jobs_list",
            "jobs",
            ["created_at", "id", "state", "provider", "error_code"],
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_jobs_batch_list",
            "jobs",
            ["batch_id", "created_at", "id", "state"],
            postgresql_where=_IN_A_BATCH,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_jobs_dispatch_0010",
            "jobs",
            [*_DISPATCH, "run_after", "created_at"],
            postgresql_where=_QUEUED,
            postgresql_concurrently=True,
        )
        for old in ("ix_jobs_created", "ix_jobs_batch_state", "ix_jobs_dispatch"):
            op.drop_index(old, table_name="jobs", postgresql_concurrently=True)
    op.execute("ALTER INDEX ix_jobs_dispatch_0010 RENAME TO ix_jobs_dispatch")
    op.execute("ALTER TABLE jobs SET (autovacuum_analyze_scale_factor = 0.01)")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs RESET (autovacuum_analyze_scale_factor)")
    op.drop_index("ix_jobs_dispatch", table_name="jobs", postgresql_where=_QUEUED)
    op.create_index("ix_jobs_dispatch", "jobs", [*_DISPATCH, "run_after"], postgresql_where=_QUEUED)
    op.create_index("ix_jobs_batch_state", "jobs", ["batch_id", "state"])
    op.create_index("ix_jobs_created", "jobs", ["created_at", "id"])
    op.drop_index("ix_jobs_batch_list", table_name="jobs", postgresql_where=_IN_A_BATCH)
    op.drop_index("ix_jobs_list", table_name="jobs")
