"""Plan changes of subscriptions mid-period.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

``subscription_plan_changes`` records each change of a subscription's plan at an
instant: the plans before and after, whether cumulative tiers continue across the change
or restart, the direction as the person named it, who made it, why and when
(docs/rating.md, "Plan changes").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscription_plan_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("at", INSTANT, nullable=False),
        sa.Column("from_plan", sa.String(length=64), nullable=False),
        sa.Column("to_plan", sa.String(length=64), nullable=False),
        sa.Column("tiers", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("changed_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.CheckConstraint(
            "tiers IN ('continue', 'restart')", name=op.f("ck_subscription_plan_changes_tiers")
        ),
        sa.CheckConstraint(
            "direction IN ('upgrade', 'downgrade', 'lateral')",
            name=op.f("ck_subscription_plan_changes_direction"),
        ),
        sa.CheckConstraint(
            "from_plan <> to_plan", name=op.f("ck_subscription_plan_changes_changes_plan")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_plan_changes_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_plan_changes")),
        sa.UniqueConstraint("subscription_id", "at", name=op.f("uq_subscription_plan_changes_at")),
    )


def downgrade() -> None:
    op.drop_table("subscription_plan_changes")
