"""Migration 0009 (credit rollover): the CHECKs of a credit ledger entry's kind and
accounts widened to ``rollover`` (available -> rolled_over) in place on both databases,
with ledger rows in it; migration 0006's triggers kept and still refusing; down again
only while no rollover entry exists."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from billing import migrate
from tests.billing.conftest import Ledger
from tests.billing.test_credits_ledger import load, row, view
from tests.billing.test_migrations import _triggers

CREDIT_TRIGGERS = {
    "ledger_credit_entries_insert",
    "ledger_credit_entries_update",
    "ledger_credit_entries_delete",
    "ledger_credit_grants_update",
    "ledger_credit_grants_delete",
}
PG_CREDIT_TRIGGERS = {"ledger_credit_entries_guard", "ledger_credit_grants_guard"}
# A movement of the grant gr_commit (USD 1,000 available), as a program writing around
# billing.credits would insert it.
ENTRY = (
    "INSERT INTO credit_ledger_entries (grant_id, kind, from_account, to_account, amount,"
    " available_after, idempotency_key, effective_at, note) SELECT id, :kind, :src, :dst,"
    " :amount, :after, :key, expires_at, 'n' FROM credit_grants WHERE grant_id = 'gr_commit'"
)


def _insert(engine: Engine, kind: str, src: str, dst: str, amount: str = "10") -> str | None:
    """None when the entry was written (and kept), else the database's refusal."""
    after = str(Decimal(1000) - Decimal(amount))
    params = {"kind": kind, "src": src, "dst": dst, "amount": amount, "after": after}
    try:
        with engine.begin() as conn:
            conn.execute(text(ENTRY), {**params, "key": f"{kind}|{src}|{dst}|{amount}"})
    except DBAPIError as error:
        return str(error).lower()
    return None


def test_rollover_entries_are_allowed_and_the_triggers_kept(loaded: Ledger) -> None:
    engine = loaded.engine
    load(loaded, row(rollover=True))
    migrate.downgrade(engine, "0008")
    before = _triggers(engine)
    assert before >= (PG_CREDIT_TRIGGERS if loaded.backend == "postgresql" else CREDIT_TRIGGERS)
    refused = _insert(engine, "rollover", "available", "rolled_over")
    assert refused is not None and "check" in refused  # not a kind before 0009

    migrate.upgrade(engine, "0009")
    assert _triggers(engine) == before
    # Only its own two accounts.
    for src, dst in (("available", "expired"), ("issuer", "rolled_over")):
        refused = _insert(engine, "rollover", src, dst)
        assert refused is not None and "check" in refused, (src, dst)
    refused = _insert(engine, "expire", "available", "rolled_over")
    assert refused is not None and "check" in refused
    # Migration 0006's triggers still refuse a balance below zero, an edit, a delete.
    refused = _insert(engine, "rollover", "available", "rolled_over", "2000")
    assert refused is not None and "ledger:" in refused
    for sql in ("UPDATE credit_ledger_entries SET note = 'x'", "DELETE FROM credit_ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    assert _insert(engine, "rollover", "available", "rolled_over") is None
    b = view(loaded).balance
    # Written around billing.credits (its stored balance says 990): the replay counts it.
    assert (b.rolled_over, b.remaining) == (Decimal(10), Decimal(990)) and b.balanced

    with pytest.raises(RuntimeError, match=r"1 credit ledger entr.* are rollovers"):
        migrate.downgrade(engine, "0008")
    assert migrate.current(engine) == "0009"  # nothing of the downgrade was done
    migrate.upgrade(engine)
