"""Tax through the tax sink: customers' billing addresses and tax ids, and the tax an
invoice was charged.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-21

``customers`` gain ``billing_address`` (a JSON object: line1..3, city, region,
postal_code, country) and ``tax_ids`` (a JSON list of {type, value}), from the customers
file (docs/ledger.md). ``invoice_taxes`` holds the tax state of each invoice finalized
while the tax sink was enabled: ``pending`` from finalization until the tax sink records
the tax, then ``recorded`` (the tax and the total with it) or ``voided``.
``tax_documents`` holds each tax transaction the sink committed for an invoice (its own
lines, and one per earlier invoice its adjustment lines correct, referencing that
invoice's), ``tax_lines`` the tax of each of its lines as the tax engine returned it, in
minor units (docs/tax.md). A finalized invoice's own row never changes: the tax lives
beside it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
LINE_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("billing_address", DOC, nullable=True))
        batch.add_column(sa.Column("tax_ids", DOC, nullable=True))
    op.create_table(
        "invoice_taxes",
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("recorded_at", INSTANT, nullable=True),
        sa.Column("voided_at", INSTANT, nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'recorded', 'voided')", name=op.f("ck_invoice_taxes_status")
        ),
        sa.CheckConstraint(
            "status <> 'recorded' OR (tax_minor IS NOT NULL AND total_minor IS NOT NULL)",
            name=op.f("ck_invoice_taxes_recorded_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_taxes_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_invoice_taxes")),
    )
    op.create_table(
        "tax_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("reference_code", sa.String(length=50), nullable=True),
        sa.Column("transaction_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("document_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("voided_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.id"], name=op.f("fk_tax_documents_invoice_id_invoices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_documents")),
        sa.UniqueConstraint("code", "type", name=op.f("uq_tax_documents_code_type")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_tax_documents_invoice_id"), "tax_documents", ["invoice_id"])
    op.create_table(
        "tax_lines",
        sa.Column("id", LINE_ID, nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("invoice_line_id", LINE_ID, nullable=True),
        sa.Column("line_number", sa.String(length=50), nullable=False),
        sa.Column("tax_code", sa.String(length=25), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("taxable_minor", sa.BigInteger(), nullable=False),
        sa.Column("exempt_minor", sa.BigInteger(), nullable=False),
        sa.Column("tax_minor", sa.BigInteger(), nullable=False),
        sa.Column("details", DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["tax_documents.id"],
            name=op.f("fk_tax_lines_document_id_tax_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_tax_lines_invoice_line_id_invoice_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tax_lines")),
        sa.UniqueConstraint(
            "document_id", "line_number", name=op.f("uq_tax_lines_document_id_line_number")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_tax_lines_document_id"), "tax_lines", ["document_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tax_lines_document_id"), table_name="tax_lines")
    op.drop_table("tax_lines")
    op.drop_index(op.f("ix_tax_documents_invoice_id"), table_name="tax_documents")
    op.drop_table("tax_documents")
    op.drop_table("invoice_taxes")
    # Not a batch (SQLite would copy the table and drop it, which rows of subscriptions
    # referencing customers forbid): both dialects drop a column in place (SQLite 3.35+).
    for column in ("tax_ids", "billing_address"):
        op.execute(f"ALTER TABLE customers DROP COLUMN {column}")
