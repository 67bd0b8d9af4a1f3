"""Spend and usage alerts, and outbox events that are not about an invoice.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

``alerts`` holds each alert (docs/alerts.md): for one customer or every customer on a
plan, thresholds on a meter's usage quantity or on rated spend in a currency.
``alert_states`` what was announced for one (alert, subscription, threshold, billing
period): fired, then possibly retracted, each once (the unique key), with the outbox
events that announced them.

``outbox_events`` takes the kinds ``alert.fired`` and ``alert.retracted``, whose
``invoice_id`` is NULL: the column becomes nullable and the kind CHECK is widened. On
PostgreSQL by ALTER; on SQLite by editing the table's CREATE statement in place
(billing.sqlite_schema, the procedure of migrations 0007 and 0009: outbox_deliveries'
foreign keys forbid a rebuild).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from billing.sqlite_schema import edit_table

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "outbox_events"
KIND = "ck_outbox_events_kind"
# Spelled out, not imported from billing.models (a migration's schema never changes).
OLD_KINDS = "kind IN ('invoice.finalized', 'invoice.voided', 'invoice.adjustments_posted')"
NEW_KINDS = (
    "kind IN ('invoice.finalized', 'invoice.voided', 'invoice.adjustments_posted',"
    " 'alert.fired', 'alert.retracted')"
)


def _outbox(kinds: str, old_kinds: str, *, nullable: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.drop_constraint(op.f(KIND), TABLE, type_="check")
        op.create_check_constraint(op.f(KIND), TABLE, kinds)
        op.alter_column(TABLE, "invoice_id", existing_type=sa.Integer(), nullable=nullable)
    elif dialect == "sqlite":
        old_null, new_null = (
            ("invoice_id INTEGER NOT NULL,", "invoice_id INTEGER,")
            if nullable
            else ("invoice_id INTEGER,", "invoice_id INTEGER NOT NULL,")
        )
        edit_table(
            op.get_bind(),
            TABLE,
            [
                (old_null, new_null),
                (f"CONSTRAINT {KIND} CHECK ({old_kinds})", f"CONSTRAINT {KIND} CHECK ({kinds})"),
            ],
        )
    else:
        raise NotImplementedError(f"no alerts migration for {dialect}")


def upgrade() -> None:
    _outbox(NEW_KINDS, OLD_KINDS, nullable=True)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("plan_id", sa.String(length=64), nullable=True),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("thresholds", DOC, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.CheckConstraint("metric IN ('usage', 'spend')", name=op.f("ck_alerts_metric")),
        sa.CheckConstraint(
            "(customer_id IS NULL) <> (plan_id IS NULL)", name=op.f("ck_alerts_one_target")
        ),
        sa.CheckConstraint(
            "(metric = 'usage' AND meter IS NOT NULL AND currency IS NULL)"
            " OR (metric = 'spend' AND currency IS NOT NULL AND meter IS NULL)",
            name=op.f("ck_alerts_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_alerts_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_alerts_plan_id_plans")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_customer_id"), "alerts", ["customer_id"])
    op.create_index(op.f("ix_alerts_plan_id"), "alerts", ["plan_id"])
    op.create_table(
        "alert_states",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("threshold", sa.String(length=64), nullable=False),
        sa.Column("period_start", INSTANT, nullable=False),
        sa.Column("period_end", INSTANT, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fired_amount", sa.String(length=64), nullable=False),
        sa.Column("retracted_amount", sa.String(length=64), nullable=True),
        sa.Column("fired_at", INSTANT, nullable=False),
        sa.Column("retracted_at", INSTANT, nullable=True),
        sa.Column("fired_event_id", EVENT_ID, nullable=False),
        sa.Column("retracted_event_id", EVENT_ID, nullable=True),
        sa.CheckConstraint("state IN ('fired', 'retracted')", name=op.f("ck_alert_states_state")),
        sa.ForeignKeyConstraint(
            ["alert_id"], ["alerts.id"], name=op.f("fk_alert_states_alert_id_alerts")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_alert_states_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["fired_event_id"],
            ["outbox_events.id"],
            name=op.f("fk_alert_states_fired_event_id_outbox_events"),
        ),
        sa.ForeignKeyConstraint(
            ["retracted_event_id"],
            ["outbox_events.id"],
            name=op.f("fk_alert_states_retracted_event_id_outbox_events"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_states")),
        sa.UniqueConstraint(
            "alert_id",
            "subscription_id",
            "threshold",
            "period_start",
            name=op.f("uq_alert_states_alert_subscription_threshold_period"),
        ),
    )


def downgrade() -> None:
    held = (
        op.get_bind()
        .exec_driver_sql(f"SELECT count(*) FROM {TABLE} WHERE invoice_id IS NULL")
        .scalar_one()
    )
    if held:
        raise RuntimeError(
            f"{held} outbox event(s) are alerts: the schema before 0011 cannot hold them"
        )
    op.drop_table("alert_states")
    op.drop_index(op.f("ix_alerts_plan_id"), table_name="alerts")
    op.drop_index(op.f("ix_alerts_customer_id"), table_name="alerts")
    op.drop_table("alerts")
    _outbox(OLD_KINDS, NEW_KINDS, nullable=False)
