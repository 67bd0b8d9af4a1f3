"""Database triggers that refuse edits to finalized and void invoices and their lines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The ORM event hooks (billing.guards) refuse such edits from ORM sessions; these
triggers refuse them from everything else too (Core bulk statements, raw SQL, another
program). They raise an integrity error whose message starts with "ledger:".
PostgreSQL checks invoice lines once per statement through transition tables, so bulk
posting pays one join per statement, not one lookup per row.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LINES_MSG = "ledger: invoice is finalized or void; its lines are immutable"
INVOICE_MSG = "ledger: a finalized invoice can only be voided, and a void invoice never changes"
DELETE_MSG = "ledger: only draft invoices can be deleted"

# Columns a finalized invoice freezes; voiding may only set status and voided_at.
FROZEN = (
    "customer_id",
    "subscription_id",
    "period_start",
    "period_end",
    "period_start_local",
    "currency",
    "subtotal_minor",
    "discount_minor",
    "adjustment_minor",
    "total_minor",
    "line_count",
    "finalized_at",
    "reissue_of_id",
)

PG_LINES_FN = f"""
CREATE FUNCTION ledger_refuse_closed_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    IF EXISTS (SELECT 1 FROM ledger_new_rows n JOIN invoices i ON i.id = n.invoice_id
               WHERE i.status <> 'draft') THEN
      RAISE EXCEPTION '{LINES_MSG}' USING ERRCODE = 'restrict_violation';
    END IF;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    IF EXISTS (SELECT 1 FROM ledger_old_rows o JOIN invoices i ON i.id = o.invoice_id
               WHERE i.status <> 'draft') THEN
      RAISE EXCEPTION '{LINES_MSG}' USING ERRCODE = 'restrict_violation';
    END IF;
  END IF;
  RETURN NULL;
END $$
"""

_pg_old = ", ".join(f"OLD.{c}" for c in FROZEN)
_pg_new = ", ".join(f"NEW.{c}" for c in FROZEN)
PG_INVOICES_FN = f"""
CREATE FUNCTION ledger_refuse_closed_invoice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN
      RAISE EXCEPTION '{DELETE_MSG}' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.status = 'void'
     OR (OLD.status = 'finalized'
         AND (NEW.status <> 'void' OR ROW({_pg_new}) IS DISTINCT FROM ROW({_pg_old}))) THEN
    RAISE EXCEPTION '{INVOICE_MSG}' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$
"""

_sqlite_changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN)


def _status(ref: str) -> str:
    return f"(SELECT status FROM invoices WHERE id = {ref}.invoice_id) <> 'draft'"


SQLITE_TRIGGERS = {
    "ledger_lines_insert": (
        f"BEFORE INSERT ON invoice_lines WHEN {_status('NEW')}",
        LINES_MSG,
    ),
    "ledger_lines_update": (
        f"BEFORE UPDATE ON invoice_lines WHEN {_status('OLD')} OR {_status('NEW')}",
        LINES_MSG,
    ),
    "ledger_lines_delete": (
        f"BEFORE DELETE ON invoice_lines WHEN {_status('OLD')}",
        LINES_MSG,
    ),
    "ledger_invoices_update": (
        "BEFORE UPDATE ON invoices WHEN OLD.status = 'void' OR (OLD.status = 'finalized'"
        f" AND (NEW.status <> 'void' OR {_sqlite_changed}))",
        INVOICE_MSG,
    ),
    "ledger_invoices_delete": (
        "BEFORE DELETE ON invoices WHEN OLD.status <> 'draft'",
        DELETE_MSG,
    ),
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(PG_LINES_FN)
        op.execute(PG_INVOICES_FN)
        op.execute(
            "CREATE TRIGGER ledger_lines_insert AFTER INSERT ON invoice_lines"
            " REFERENCING NEW TABLE AS ledger_new_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_closed_lines()"
        )
        op.execute(
            "CREATE TRIGGER ledger_lines_update AFTER UPDATE ON invoice_lines"
            " REFERENCING OLD TABLE AS ledger_old_rows NEW TABLE AS ledger_new_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_closed_lines()"
        )
        op.execute(
            "CREATE TRIGGER ledger_lines_delete AFTER DELETE ON invoice_lines"
            " REFERENCING OLD TABLE AS ledger_old_rows"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_closed_lines()"
        )
        op.execute(
            "CREATE TRIGGER ledger_invoices_change BEFORE UPDATE OR DELETE ON invoices"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_closed_invoice()"
        )
    elif dialect == "sqlite":
        for name, (when, message) in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {when} BEGIN SELECT RAISE(ABORT, '{message}'); END")
    else:
        raise NotImplementedError(f"no immutability triggers for {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for name in ("ledger_lines_insert", "ledger_lines_update", "ledger_lines_delete"):
            op.execute(f"DROP TRIGGER {name} ON invoice_lines")
        op.execute("DROP TRIGGER ledger_invoices_change ON invoices")
        op.execute("DROP FUNCTION ledger_refuse_closed_lines()")
        op.execute("DROP FUNCTION ledger_refuse_closed_invoice()")
    elif dialect == "sqlite":
        for name in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
