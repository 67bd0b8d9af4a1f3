"""Credit grants and their append-only double-entry ledger.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``credit_grants`` holds prepaid commitments and promotional credits (docs/credits.md);
``credit_ledger_entries`` every movement of a grant's value between its accounts
(issuer, available, consumed, expired). Triggers make the ledger append-only, as
migration 0002 does for finalized invoices: an entry is never updated or deleted, and
one that would move nothing or leave a grant's balance below zero is refused; a grant
is never deleted, and only its void columns are ever set, once. They raise an error
whose message starts with "ledger:".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INSTANT = sa.DateTime(timezone=True)
DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
EXACT = sa.String().with_variant(postgresql.NUMERIC(), "postgresql")
ENTRY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Spelled out, not imported from billing.models: a migration keeps producing the same
# schema whatever the code does later.
MOVES = {
    "grant": ("issuer", "available"),
    "consume": ("available", "consumed"),
    "reverse": ("consumed", "available"),
    "expire": ("available", "expired"),
    "void": ("available", "issuer"),
}
MOVES_CHECK = " OR ".join(
    f"(kind = '{kind}' AND from_account = '{src}' AND to_account = '{dst}')"
    for kind, (src, dst) in MOVES.items()
)

ENTRY_MSG = "ledger: credit ledger entries are append-only; post a reversing entry instead"
AMOUNT_MSG = (
    "ledger: a credit ledger entry moves a positive amount and leaves the"
    " grant balance at zero or above"
)
GRANT_MSG = "ledger: a credit grant never changes, except being voided once"
GRANT_DELETE_MSG = "ledger: credit grants are never deleted; void them"

# Every column of a grant but the void columns.
FROZEN = (
    "id",
    "grant_id",
    "customer_id",
    "subscription_id",
    "kind",
    "currency",
    "amount",
    "meter",
    "priority",
    "effective_from",
    "expires_at",
    "applies_to",
    "applies_to_ids",
    "price_paid",
    "rollover",
    "rolled_over_from_id",
    "created_at",
    "created_by",
    "reason",
)

PG_ENTRIES_FN = f"""
CREATE FUNCTION ledger_credit_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION '{ENTRY_MSG}' USING ERRCODE = 'restrict_violation';
  END IF;
  IF NEW.amount <= 0 OR NEW.available_after < 0 THEN
    RAISE EXCEPTION '{AMOUNT_MSG}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$
"""

# JSONB has no equality operator problem; ROW(...) IS DISTINCT FROM compares them all.
_pg_old = ", ".join(f"OLD.{c}" for c in FROZEN)
_pg_new = ", ".join(f"NEW.{c}" for c in FROZEN)
PG_GRANTS_FN = f"""
CREATE FUNCTION ledger_credit_grants_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION '{GRANT_DELETE_MSG}' USING ERRCODE = 'restrict_violation';
  END IF;
  IF OLD.voided_at IS NOT NULL OR ROW({_pg_new}) IS DISTINCT FROM ROW({_pg_old}) THEN
    RAISE EXCEPTION '{GRANT_MSG}' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$
"""

_sqlite_changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN)
# SQLite keeps exact decimals as text (billing.types.ExactDecimal): the sign is read
# through a cast, which is exact enough to tell a value from zero.
SQLITE_TRIGGERS = {
    "ledger_credit_entries_insert": (
        "BEFORE INSERT ON credit_ledger_entries WHEN CAST(NEW.amount AS REAL) <= 0"
        " OR CAST(NEW.available_after AS REAL) < 0",
        AMOUNT_MSG,
    ),
    "ledger_credit_entries_update": ("BEFORE UPDATE ON credit_ledger_entries", ENTRY_MSG),
    "ledger_credit_entries_delete": ("BEFORE DELETE ON credit_ledger_entries", ENTRY_MSG),
    "ledger_credit_grants_update": (
        f"BEFORE UPDATE ON credit_grants WHEN OLD.voided_at IS NOT NULL OR {_sqlite_changed}",
        GRANT_MSG,
    ),
    "ledger_credit_grants_delete": ("BEFORE DELETE ON credit_grants", GRANT_DELETE_MSG),
}


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", EXACT, nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_from", INSTANT, nullable=False),
        sa.Column("expires_at", INSTANT, nullable=True),
        sa.Column("applies_to", sa.String(length=16), nullable=False),
        sa.Column("applies_to_ids", DOC, nullable=False),
        sa.Column("price_paid", EXACT, nullable=True),
        sa.Column("rollover", sa.Boolean(), nullable=False),
        sa.Column("rolled_over_from_id", sa.Integer(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("voided_at", INSTANT, nullable=True),
        sa.Column("voided_by", sa.String(length=200), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('paid_commit', 'promotional')", name=op.f("ck_credit_grants_kind")
        ),
        sa.CheckConstraint(
            "applies_to IN ('all_usage', 'prices', 'meters')",
            name=op.f("ck_credit_grants_applies_to"),
        ),
        sa.CheckConstraint("priority BETWEEN 0 AND 100", name=op.f("ck_credit_grants_priority")),
        sa.CheckConstraint(
            "expires_at IS NULL OR expires_at > effective_from",
            name=op.f("ck_credit_grants_validity"),
        ),
        sa.CheckConstraint(
            "(kind = 'paid_commit') = (price_paid IS NOT NULL)",
            name=op.f("ck_credit_grants_price_paid_commit"),
        ),
        sa.CheckConstraint(
            "(voided_at IS NULL) = (voided_by IS NULL) AND (voided_at IS NULL) = "
            "(void_reason IS NULL)",
            name=op.f("ck_credit_grants_void_complete"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_credit_grants_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_credit_grants_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["rolled_over_from_id"],
            ["credit_grants.id"],
            name=op.f("fk_credit_grants_rolled_over_from_id_credit_grants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_grants")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_credit_grants_grant_id")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_credit_grants_customer", "credit_grants", ["customer_id", "id"])
    op.create_table(
        "credit_ledger_entries",
        sa.Column("id", ENTRY_ID, nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("from_account", sa.String(length=16), nullable=False),
        sa.Column("to_account", sa.String(length=16), nullable=False),
        sa.Column("amount", EXACT, nullable=False),
        sa.Column("available_after", EXACT, nullable=False),
        sa.Column("value_minor", sa.BigInteger(), nullable=True),
        sa.Column("invoice_line_id", ENTRY_ID, nullable=True),
        sa.Column("reverses_entry_id", ENTRY_ID, nullable=True),
        sa.Column("idempotency_key", sa.String(length=400), nullable=False),
        sa.Column("effective_at", INSTANT, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('grant', 'consume', 'reverse', 'expire', 'void')",
            name=op.f("ck_credit_ledger_entries_kind"),
        ),
        sa.CheckConstraint(MOVES_CHECK, name=op.f("ck_credit_ledger_entries_moves")),
        sa.CheckConstraint(
            "(kind IN ('consume', 'reverse')) OR (invoice_line_id IS NULL AND value_minor IS NULL)",
            name=op.f("ck_credit_ledger_entries_only_consumption_funds"),
        ),
        sa.CheckConstraint(
            "(kind = 'reverse') = (reverses_entry_id IS NOT NULL)",
            name=op.f("ck_credit_ledger_entries_reverses"),
        ),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["credit_grants.id"],
            name=op.f("fk_credit_ledger_entries_grant_id_credit_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoice_lines.id"],
            name=op.f("fk_credit_ledger_entries_invoice_line_id_invoice_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_entry_id"],
            ["credit_ledger_entries.id"],
            name=op.f("fk_credit_ledger_entries_reverses_entry_id_credit_ledger_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_ledger_entries")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_credit_ledger_entries_idempotency_key")
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_credit_ledger_entries_grant", "credit_ledger_entries", ["grant_id", "id"])
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_ENTRIES_FN)
        op.execute(PG_GRANTS_FN)
        op.execute(
            "CREATE TRIGGER ledger_credit_entries_guard BEFORE INSERT OR UPDATE OR DELETE"
            " ON credit_ledger_entries FOR EACH ROW EXECUTE FUNCTION ledger_credit_entries_guard()"
        )
        op.execute(
            "CREATE TRIGGER ledger_credit_grants_guard BEFORE UPDATE OR DELETE"
            " ON credit_grants FOR EACH ROW EXECUTE FUNCTION ledger_credit_grants_guard()"
        )
    elif dialect == "sqlite":
        for name, (when, message) in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{message}'); END")
    else:
        raise NotImplementedError(f"no credit ledger triggers for {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER ledger_credit_entries_guard ON credit_ledger_entries")
        op.execute("DROP TRIGGER ledger_credit_grants_guard ON credit_grants")
        op.execute("DROP FUNCTION ledger_credit_entries_guard()")
        op.execute("DROP FUNCTION ledger_credit_grants_guard()")
    elif dialect == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_index("ix_credit_ledger_entries_grant", table_name="credit_ledger_entries")
    op.drop_table("credit_ledger_entries")
    op.drop_index("ix_credit_grants_customer", table_name="credit_grants")
    op.drop_table("credit_grants")
