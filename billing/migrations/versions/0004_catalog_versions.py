"""One catalog: every `meterline catalog load FILE` is kept as a catalog version.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08

``catalog_versions`` holds each load's file text, its content hash, where it came from,
when it was loaded and what the load changed. The newest row is the catalog that
ingest, rollup, close and the audit read (billing.catalog.current_catalog). A ledger
migrated from an earlier revision has none: its commands ask for `meterline catalog
load FILE` once (loading the same catalog again creates no price version).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "catalog_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("loaded_at", INSTANT, nullable=False),
        sa.Column("summary", DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_versions")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("catalog_versions")
