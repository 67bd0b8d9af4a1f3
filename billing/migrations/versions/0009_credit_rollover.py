"""Credit ledger entries of kind ``rollover``: a grant's unused balance moved to the next
term's grant.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

A grant that rolls over (docs/credits.md, "Rollover") ends its term by a ``rollover``
entry moving what is left from ``available`` to ``rolled_over``, an account of its own:
what rolled over is still the customer's (the next term's grant holds it), breakage
(``expired``) is not, and revenue recognition tells the two apart. The CHECKs of the
entry's kind and of its two accounts are widened to it: on PostgreSQL by dropping and
creating the named constraints; on SQLite by editing the table's CREATE statement in
place (billing.sqlite_schema, the procedure of migration 0007: a rebuild of
``credit_ledger_entries`` fails on the foreign keys of the entries that reverse others).
Migration 0006's triggers stay as they are on both: the table is never rebuilt.
"""

from __future__ import annotations

from alembic import op

from billing.sqlite_schema import edit_table

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLE = "credit_ledger_entries"
KIND = "ck_credit_ledger_entries_kind"
MOVES = "ck_credit_ledger_entries_moves"

# Spelled out, not imported from billing.models: a migration keeps producing the same
# schema whatever the code does later (migration 0006's, and the rollover after them).
OLD_KINDS = "kind IN ('grant', 'consume', 'reverse', 'expire', 'void')"
NEW_KINDS = "kind IN ('grant', 'consume', 'reverse', 'expire', 'void', 'rollover')"
OLD_MOVES = (
    "(kind = 'grant' AND from_account = 'issuer' AND to_account = 'available')"
    " OR (kind = 'consume' AND from_account = 'available' AND to_account = 'consumed')"
    " OR (kind = 'reverse' AND from_account = 'consumed' AND to_account = 'available')"
    " OR (kind = 'expire' AND from_account = 'available' AND to_account = 'expired')"
    " OR (kind = 'void' AND from_account = 'available' AND to_account = 'issuer')"
)
NEW_MOVES = (
    OLD_MOVES
    + " OR (kind = 'rollover' AND from_account = 'available' AND to_account = 'rolled_over')"
)


def _swap(kinds: str, moves: str, old_kinds: str, old_moves: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, rule in ((KIND, kinds), (MOVES, moves)):
            op.drop_constraint(op.f(name), TABLE, type_="check")
            op.create_check_constraint(op.f(name), TABLE, rule)
    elif op.get_bind().dialect.name == "sqlite":
        edit_table(
            op.get_bind(),
            TABLE,
            [
                (f"CONSTRAINT {KIND} CHECK ({old_kinds})", f"CONSTRAINT {KIND} CHECK ({kinds})"),
                (f"CONSTRAINT {MOVES} CHECK ({old_moves})", f"CONSTRAINT {MOVES} CHECK ({moves})"),
            ],
        )
    else:
        raise NotImplementedError(f"no credit rollover migration for {op.get_bind().dialect.name}")


def upgrade() -> None:
    _swap(NEW_KINDS, NEW_MOVES, OLD_KINDS, OLD_MOVES)


def downgrade() -> None:
    held = (
        op.get_bind()
        .exec_driver_sql(f"SELECT count(*) FROM {TABLE} WHERE kind = 'rollover'")
        .scalar_one()
    )
    if held:
        raise RuntimeError(
            f"{held} credit ledger entr(y/ies) are rollovers: the schema before 0009 cannot"
            " hold them"
        )
    _swap(OLD_KINDS, OLD_MOVES, NEW_KINDS, NEW_MOVES)
