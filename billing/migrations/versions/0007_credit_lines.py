"""Invoice lines of kind ``credit``: a credit grant paying for a usage line.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A credit line (docs/credits.md) is a negative line linked to the grant that pays
(``credit_grant_id``, the grant's own id) and to the line it pays (``pays_key``, that
line's idempotency key on the same invoice). An adjustment line that corrects a credit
line names the grant too, so that finalizing it consumes from or returns to that grant.

SQLite cannot alter a CHECK constraint, and rebuilding ``invoice_lines`` (create, copy,
drop, rename) fails as soon as a credit ledger entry or an adjustment line refers to a
line: dropping the table deletes what they refer to, and foreign keys are on in every
ledger connection, so the rebuild cannot run in a migration's transaction. SQLite
documents a simpler procedure for changes that do not touch how rows are stored
(removing or loosening a CHECK, removing a foreign key: "ALTER TABLE", section "Making
Other Kinds Of Table Schema Changes"): edit the table's CREATE statement in
``sqlite_schema`` under ``writable_schema`` and bump ``schema_version``. Upgrade widens
the kind CHECK that way and adds the two link CHECKs (every existing row satisfies them:
its new columns are NULL and no line is a credit line yet); the columns come by ``ADD
COLUMN``. Triggers (migration 0002) and partial indexes stay as they are: the table is
never rebuilt. (The procedure is billing.sqlite_schema's, which migration 0009 uses too.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing.sqlite_schema import edit_table

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('usage', 'flat', 'minimum_true_up', 'discount', 'adjustment')"
NEW_KINDS = "kind IN ('usage', 'flat', 'minimum_true_up', 'discount', 'adjustment', 'credit')"
# A credit line names its grant and the line it pays; only credit and adjustment lines
# name a grant; only credit lines pay a line.
CREDIT_LINK = "(kind = 'credit') = (pays_key IS NOT NULL)"
GRANT_LINK = (
    "(kind = 'credit' AND credit_grant_id IS NOT NULL)"
    " OR (kind <> 'credit' AND (credit_grant_id IS NULL OR kind = 'adjustment'))"
)
CHECKS = {
    "ck_invoice_lines_credit_pays": CREDIT_LINK,
    "ck_invoice_lines_credit_grant": GRANT_LINK,
}
GRANT_FK = "fk_invoice_lines_credit_grant_id_credit_grants"
SQLITE_GRANT_REF = " REFERENCES credit_grants (grant_id)"


def _sqlite_edit_table(replacements: list[tuple[str, str]]) -> None:
    """Rewrite invoice_lines' CREATE statement, each (old, new) exactly once."""
    edit_table(op.get_bind(), "invoice_lines", replacements)


def _sqlite_checks() -> str:
    return "".join(f", CONSTRAINT {name} CHECK ({rule})" for name, rule in CHECKS.items())


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.add_column("invoice_lines", sa.Column("credit_grant_id", sa.String(64), nullable=True))
        op.add_column("invoice_lines", sa.Column("pays_key", sa.String(400), nullable=True))
        op.create_foreign_key(
            op.f(GRANT_FK), "invoice_lines", "credit_grants", ["credit_grant_id"], ["grant_id"]
        )
        op.drop_constraint(op.f("ck_invoice_lines_kind"), "invoice_lines", type_="check")
        op.create_check_constraint(op.f("ck_invoice_lines_kind"), "invoice_lines", NEW_KINDS)
        for name, rule in CHECKS.items():
            op.create_check_constraint(op.f(name), "invoice_lines", rule)
    elif dialect == "sqlite":
        op.execute(
            "ALTER TABLE invoice_lines ADD COLUMN credit_grant_id VARCHAR(64)" + SQLITE_GRANT_REF
        )
        op.execute("ALTER TABLE invoice_lines ADD COLUMN pays_key VARCHAR(400)")
        _sqlite_edit_table([(OLD_KINDS + ")", NEW_KINDS + ")" + _sqlite_checks())])
    else:
        raise NotImplementedError(f"no credit lines migration for {dialect}")
    op.create_index(
        "ix_invoice_lines_credit_grant_id",
        "invoice_lines",
        ["credit_grant_id"],
        postgresql_where=sa.text("credit_grant_id IS NOT NULL"),
        sqlite_where=sa.text("credit_grant_id IS NOT NULL"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    held = bind.exec_driver_sql(
        "SELECT count(*) FROM invoice_lines WHERE credit_grant_id IS NOT NULL"
    ).scalar_one()
    if held:
        raise RuntimeError(
            f"{held} invoice line(s) are credit lines or name a grant: the schema before 0007"
            " cannot hold them"
        )
    op.drop_index("ix_invoice_lines_credit_grant_id", table_name="invoice_lines")
    if bind.dialect.name == "postgresql":
        for name in CHECKS:
            op.drop_constraint(op.f(name), "invoice_lines", type_="check")
        op.drop_constraint(op.f("ck_invoice_lines_kind"), "invoice_lines", type_="check")
        op.create_check_constraint(op.f("ck_invoice_lines_kind"), "invoice_lines", OLD_KINDS)
        op.drop_constraint(op.f(GRANT_FK), "invoice_lines", type_="foreignkey")
        op.drop_column("invoice_lines", "pays_key")
        op.drop_column("invoice_lines", "credit_grant_id")
    else:
        # DROP COLUMN refuses a column a CHECK or a foreign key names: remove those first.
        _sqlite_edit_table(
            [(NEW_KINDS + ")" + _sqlite_checks(), OLD_KINDS + ")"), (SQLITE_GRANT_REF, "")]
        )
        op.execute("ALTER TABLE invoice_lines DROP COLUMN pays_key")
        op.execute("ALTER TABLE invoice_lines DROP COLUMN credit_grant_id")
