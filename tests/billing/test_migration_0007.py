"""Migration 0007 (credit lines): the kind CHECK widened in place on both databases, the
triggers of migrations 0002 and 0006 and the partial indexes kept, and down again."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from billing import migrate
from billing.db import create_ledger_engine
from tests.billing.test_migrations import _triggers

LINE_TRIGGERS = {"ledger_lines_insert", "ledger_lines_update", "ledger_lines_delete"}
PARTIAL = {
    "ix_invoice_lines_adjusts_key",
    "ix_invoice_lines_adjusts_line_id",
    "ix_invoice_lines_credit_grant_id",
}
# Refused by a CHECK before any foreign key is looked at.
INSERT = (
    "INSERT INTO invoice_lines (invoice_id, idempotency_key, content_hash, kind, price_id,"
    " price_version, description, quantity, currency, amount_minor, amount_precise,"
    " breakdown, service_period_start, service_period_end, credit_grant_id, pays_key)"
    " VALUES (1, 'k', 'h', :kind, 'p', 'v', '', '1', 'USD', -1, '-0.01', '{}',"
    " '2026-01-01', '2026-02-01', :grant, :pays)"
)


def _refused(engine: Engine, kind: str, grant: str | None, pays: str | None) -> bool:
    sql, params = INSERT, {"kind": kind, "grant": grant, "pays": pays}
    if grant is None and pays is None:  # also before 0007
        sql = INSERT.replace(", credit_grant_id, pays_key", "").replace(", :grant, :pays", "")
        params = {"kind": kind}
    with engine.connect() as conn:
        try:
            conn.execute(text(sql), params)
        except DBAPIError as error:
            return "check" in str(error).lower()
        finally:
            conn.rollback()
    return False


def test_credit_lines_keep_triggers_and_indexes(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        migrate.upgrade(engine, "0006")
        before = _triggers(engine)
        assert before >= LINE_TRIGGERS
        migrate.upgrade(engine, "0007")
        assert _triggers(engine) == before
        assert {i["name"] for i in inspect(engine).get_indexes("invoice_lines")} >= PARTIAL
        assert _refused(engine, "bogus", None, None)
        assert _refused(engine, "credit", None, "a|key")  # a credit line names its grant
        assert _refused(engine, "credit", "g1", None)  # and the line it pays
        assert _refused(engine, "usage", "g1", None)  # only credits and adjustments name one
        assert _refused(engine, "adjustment", None, "a|key")  # only credits pay a line

        migrate.downgrade(engine, "0006")
        assert _triggers(engine) == before
        columns = {c["name"] for c in inspect(engine).get_columns("invoice_lines")}
        assert not {"credit_grant_id", "pays_key"} & columns
        assert _refused(engine, "credit", None, None)
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["usage", "adjustment"])
def test_lines_other_than_credits_are_not_refused_by_the_new_checks(
    ledger_url: str, kind: str
) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        migrate.upgrade(engine)
        # invoice 1 does not exist: the foreign key refuses it, not a CHECK.
        assert not _refused(engine, kind, None, None)
    finally:
        engine.dispose()
