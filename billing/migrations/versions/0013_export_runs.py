"""The data-lake export's runs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-21

``export_runs`` holds one row per run of `meterline export` (and the billing_close DAG's
export task) that wrote files: the month, where to (passwords redacted), when it started
and finished (wall clock) and the sha256 of the manifest it wrote last. Its id is the
``row_version`` of every row the run wrote (docs/export.md): ids only grow and are never
reused, so a later export of a row always carries a larger version.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "export_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("started_at", INSTANT, nullable=False),
        sa.Column("finished_at", INSTANT, nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_runs")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("export_runs")
