"""Rating runs record the warehouse watermark they rated from; reconcile findings can be
acknowledged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

- ``rating_runs.events_watermark``: the run saw every event ingested up to it (NULL for
  runs recorded before: readers fall back to ``run_at``);
- ``rating_run_stale_days``: the days whose rollup was stale when the run read it, with
  the watermark the run saw of each;
- ``finding_acknowledgements``: who acknowledged which reconcile finding, when, and why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rating_runs") as batch:
        batch.add_column(sa.Column("events_watermark", INSTANT, nullable=True))
    op.create_table(
        "rating_run_stale_days",
        sa.Column("rating_run_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("watermark", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_run_id"],
            ["rating_runs.id"],
            name=op.f("fk_rating_run_stale_days_rating_run_id_rating_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rating_run_id", "day", name=op.f("pk_rating_run_stale_days")),
    )
    op.create_table(
        "finding_acknowledgements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=False),
        sa.Column("acknowledged_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_acknowledgements")),
    )
    op.create_index(
        op.f("ix_finding_acknowledgements_finding_id"),
        "finding_acknowledgements",
        ["finding_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_finding_acknowledgements_finding_id"), table_name="finding_acknowledgements"
    )
    op.drop_table("finding_acknowledgements")
    op.drop_table("rating_run_stale_days")
    with op.batch_alter_table("rating_runs") as batch:
        batch.drop_column("events_watermark")
