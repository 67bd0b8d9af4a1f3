"""Ledger schema: customers, subscriptions, catalog versions, rating runs, invoices, lines.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Types are spelled out here rather than imported from billing.types, so this migration
keeps producing the same schema whatever later code does: exact decimals are NUMERIC on
PostgreSQL and decimal text on SQLite; instants are timestamptz (naive UTC text on
SQLite); documents are JSONB on PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

EXACT = sa.String().with_variant(postgresql.NUMERIC(), "postgresql")
INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
LINE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = sa.text("status <> 'void'")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("minimum_commitment", DOC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.create_table(
        "rating_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period_start", INSTANT, nullable=False),
        sa.Column("period_end", INSTANT, nullable=False),
        sa.Column("run_at", INSTANT, nullable=False),
        sa.Column("code_version", sa.String(length=100), nullable=False),
        sa.Column("inputs_hash", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rating_runs")),
    )
    op.create_table(
        "price_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("price_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=True),
        sa.Column("filter", DOC, nullable=True),
        sa.Column("body", DOC, nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_price_versions_plan_id_plans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_versions")),
        sa.UniqueConstraint(
            "plan_id",
            "price_id",
            "currency",
            "effective_from",
            "content_hash",
            name="uq_price_versions_identity",
        ),
        sa.UniqueConstraint(
            "plan_id", "price_id", "currency", "version", name="uq_price_versions_label"
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billing_anchor_day", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "billing_anchor_day BETWEEN 1 AND 31", name=op.f("ck_subscriptions_anchor_day")
        ),
        sa.CheckConstraint(
            "end_date IS NULL OR end_date > start_date",
            name=op.f("ck_subscriptions_end_after_start"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriptions_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("external_id", name=op.f("uq_subscriptions_external_id")),
    )
    op.create_index(
        op.f("ix_subscriptions_customer_id"), "subscriptions", ["customer_id"], unique=False
    )
    op.create_table(
        "subscription_discounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("price_id", sa.String(length=64), nullable=False),
        sa.Column("percent_off", EXACT, nullable=True),
        sa.Column("amount_off", EXACT, nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)",
            name=op.f("ck_subscription_discounts_percent_xor_amount"),
        ),
        sa.CheckConstraint(
            "valid_to IS NULL OR valid_to > valid_from",
            name=op.f("ck_subscription_discounts_valid_range"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_discounts_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_discounts")),
    )
    op.create_index(
        op.f("ix_subscription_discounts_subscription_id"),
        "subscription_discounts",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("period_start", INSTANT, nullable=False),
        sa.Column("period_end", INSTANT, nullable=False),
        sa.Column("period_start_local", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("adjustment_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("finalized_at", INSTANT, nullable=True),
        sa.Column("voided_at", INSTANT, nullable=True),
        sa.Column("reissue_of_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(status = 'draft') OR finalized_at IS NOT NULL OR voided_at IS NOT NULL",
            name=op.f("ck_invoices_closed_has_time"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'finalized', 'void')", name=op.f("ck_invoices_status")
        ),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_invoices_period_order")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_invoices_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["reissue_of_id"], ["invoices.id"], name=op.f("fk_invoices_reissue_of_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_invoices_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_invoices_customer_id"), "invoices", ["customer_id"], unique=False)
    op.create_index(
        "ix_invoices_subscription_period", "invoices", ["subscription_id", "period_start"]
    )
    op.create_index("ix_invoices_period_start_local", "invoices", ["period_start_local"])
    op.create_index(
        "uq_invoices_live_period",
        "invoices",
        ["subscription_id", "period_start"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", LINE_ID, nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=400), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("price_id", sa.String(length=64), nullable=False),
        sa.Column("price_version", sa.String(length=64), nullable=False),
        sa.Column("price_version_id", sa.Integer(), nullable=True),
        sa.Column("meter", sa.String(length=64), nullable=True),
        sa.Column("dimension_group", sa.String(length=200), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", EXACT, nullable=False),
        sa.Column("unit_amount", EXACT, nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_precise", EXACT, nullable=False),
        sa.Column("breakdown", DOC, nullable=False),
        sa.Column("service_period_start", INSTANT, nullable=False),
        sa.Column("service_period_end", INSTANT, nullable=False),
        sa.Column("adjusts_line_id", LINE_ID, nullable=True),
        sa.Column("adjusts_key", sa.String(length=400), nullable=True),
        sa.Column("rating_run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'adjustment') OR (adjusts_line_id IS NULL AND adjusts_key IS NULL)",
            name=op.f("ck_invoice_lines_only_adjustments_adjust"),
        ),
        sa.CheckConstraint(
            "kind IN ('usage', 'flat', 'minimum_true_up', 'discount', 'adjustment')",
            name=op.f("ck_invoice_lines_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["adjusts_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_invoice_lines_adjusts_line_id_invoice_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_lines_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(
            ["price_version_id"],
            ["price_versions.id"],
            name=op.f("fk_invoice_lines_price_version_id_price_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["rating_run_id"],
            ["rating_runs.id"],
            name=op.f("fk_invoice_lines_rating_run_id_rating_runs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
        sa.UniqueConstraint("invoice_id", "idempotency_key", name="uq_invoice_lines_key"),
        sqlite_autoincrement=True,
    )
    for column in ("adjusts_key", "adjusts_line_id"):
        not_null = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_invoice_lines_{column}",
            "invoice_lines",
            [column],
            postgresql_where=not_null,
            sqlite_where=not_null,
        )


def downgrade() -> None:
    op.drop_table("invoice_lines")
    op.drop_table("invoices")
    op.drop_table("subscription_discounts")
    op.drop_table("subscriptions")
    op.drop_table("price_versions")
    op.drop_table("rating_runs")
    op.drop_table("plans")
    op.drop_table("customers")
