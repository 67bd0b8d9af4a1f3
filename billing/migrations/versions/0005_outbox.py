"""The transactional outbox, delivery state per sink, external ids, customer terms.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``outbox_events`` holds each fact another system must hear (an invoice finalized or
voided, adjustment lines posted), written in the same transaction as the fact;
``outbox_deliveries`` its delivery state per sink; ``external_refs`` the ids our
customers, invoices and lines have in another system (Stripe). Customers gain their
optional Stripe customer id and invoice terms (collection method, days until due).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("stripe_customer_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("collection_method", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("days_until_due", sa.Integer(), nullable=True))
    op.create_table(
        "outbox_events",
        sa.Column("id", EVENT_ID, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("payload", DOC, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.CheckConstraint(
            "kind IN ('invoice.finalized', 'invoice.voided', 'invoice.adjustments_posted')",
            name=op.f("ck_outbox_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_outbox_events_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_outbox_events_idempotency_key")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_events_customer_id", "outbox_events", ["customer", "id"])
    op.create_index(
        op.f("ix_outbox_events_invoice_id"), "outbox_events", ["invoice_id"], unique=False
    )
    op.create_table(
        "outbox_deliveries",
        sa.Column("event_id", EVENT_ID, nullable=False),
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", INSTANT, nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", INSTANT, nullable=True),
        sa.Column("delivered_at", INSTANT, nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'parked')",
            name=op.f("ck_outbox_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["outbox_events.id"],
            name=op.f("fk_outbox_deliveries_event_id_outbox_events"),
        ),
        sa.PrimaryKeyConstraint("event_id", "sink", name=op.f("pk_outbox_deliveries")),
    )
    op.create_index(
        "ix_outbox_deliveries_sink_status",
        "outbox_deliveries",
        ["sink", "status", "event_id"],
    )
    op.create_table(
        "external_refs",
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("local_id", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("parent_external_id", sa.String(length=200), nullable=True),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("sink", "kind", "local_id", name=op.f("pk_external_refs")),
    )


def downgrade() -> None:
    op.drop_table("external_refs")
    op.drop_index("ix_outbox_deliveries_sink_status", table_name="outbox_deliveries")
    op.drop_table("outbox_deliveries")
    op.drop_index(op.f("ix_outbox_events_invoice_id"), table_name="outbox_events")
    op.drop_index("ix_outbox_events_customer_id", table_name="outbox_events")
    op.drop_table("outbox_events")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("days_until_due")
        batch.drop_column("collection_method")
        batch.drop_column("stripe_customer_id")
