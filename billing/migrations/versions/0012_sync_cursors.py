"""Incremental reads of other systems remember how far they got.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-20

``sync_cursors`` holds, per source (``salesforce``) and object (``Account``,
``SBQQ__Subscription__c``...), the highest modification stamp among the records read and
the digest of the field mapping they were read with (`meterline customers
sync-salesforce`, docs/salesforce.md). It is written in the same transaction as what
the read stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("object_name", sa.String(length=80), nullable=False),
        sa.Column("high_water", INSTANT, nullable=False),
        sa.Column("mapping_digest", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("source", "object_name", name=op.f("pk_sync_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sync_cursors")
