"""Credit grants in the ledger (docs/credits.md): loading, the double-entry entries, void,
expiry (breakage), consumption and its return, and the append-only guards (ORM hooks and
database triggers), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

import billing
from billing.credits import (
    BalanceError,
    GrantRow,
    GrantsFileInvalid,
    audit_grants,
    expire_grants,
    grant_views,
    load_grants,
    record_consumption,
    reverse_consumption,
    void_grant,
)
from billing.errors import CreditLedgerImmutable, LedgerError, NotFound
from billing.models import CreditGrant, CreditLedgerEntry, InvoiceLine
from tests.billing.conftest import Ledger
from tests.billing.factories import period_of, standard_charges, utc

D = Decimal
NOW = utc(2026, 2, 20, 9, 30)
MARCH = period_of("sub_00001", 2026, 3)


def row(**overrides: Any) -> GrantRow:
    values: dict[str, Any] = {
        "grant_id": "gr_commit",
        "customer_id": "cus_00001",
        "kind": "paid_commit",
        "currency": "USD",
        "amount": "1000",
        "price_paid": "900",
        "effective_from": "2026-03-01",
        "expires_at": "2027-03-01",
        "reason": "annual commitment, order 42",
    }
    values.update(overrides)
    return GrantRow.model_validate(values)


def load(ledger: Ledger, *rows: GrantRow) -> billing.credits.GrantsLoadResult:
    with ledger.Session.begin() as session:
        return load_grants(session, list(enumerate(rows, start=1)), "grants", by="ops", at=NOW)


def view(ledger: Ledger, grant_id: str = "gr_commit") -> billing.credits.GrantView:
    with ledger.Session() as session:
        return grant_views(session, grant_id=grant_id)[0]


@pytest.fixture
def line_id(loaded: Ledger) -> int:
    """An invoice line of sub_00001 (March), for consumption to fund: a draft, so that a
    test loads its grants first (a grant is refused inside a period already invoiced),
    then finalizes it (`finalize_march`)."""
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
        (invoice_id,) = result.invoice_ids.values()
        return int(
            session.scalars(
                select(InvoiceLine.id).where(InvoiceLine.invoice_id == invoice_id)
            ).all()[0]
        )


def finalize_march(ledger: Ledger, line_id: int) -> None:
    with ledger.Session.begin() as session:
        invoice_id = session.scalar(select(InvoiceLine.invoice_id).where(InvoiceLine.id == line_id))
        assert invoice_id is not None
        billing.finalize(session, invoice_id, as_of=MARCH.end + timedelta(days=3))


def test_a_grant_inside_a_period_already_invoiced_is_refused(loaded: Ledger, line_id: int) -> None:
    """Re-rating a finalized period (a late correction, reconcile) must find what close
    found: a grant dated inside it would add a credit its invoice never had."""
    finalize_march(loaded, line_id)
    with pytest.raises(billing.credits.GrantsFileInvalid, match="inside a period already invoiced"):
        load(loaded, row())
    load(loaded, row(effective_from="2026-04-01"))


def test_a_grant_is_a_row_and_its_grant_entry(loaded: Ledger) -> None:
    result = load(loaded, row())
    assert (result.created, result.unchanged) == (1, 0)
    grant = view(loaded)
    # A date is midnight in the customer's timezone (America/New_York: UTC-5 in March).
    assert grant.effective_from == utc(2026, 3, 1, 5)
    assert grant.expires_at == utc(2027, 3, 1, 5)
    b = grant.balance
    assert (b.granted, b.consumed, b.expired, b.voided, b.remaining) == (D(1000), 0, 0, 0, D(1000))
    with loaded.Session() as session:
        (entry,) = session.scalars(select(CreditLedgerEntry)).all()
    assert (entry.kind, entry.from_account, entry.to_account, entry.amount) == (
        "grant",
        "issuer",
        "available",
        D(1000),
    )
    assert entry.available_after == D(1000) and entry.idempotency_key == "grant|gr_commit"
    assert grant.created_by == "ops" and grant.created_at == NOW


def test_loading_the_same_grant_again_changes_nothing_other_terms_are_refused(
    loaded: Ledger,
) -> None:
    load(loaded, row())
    assert load(loaded, row()).unchanged == 1
    with pytest.raises(GrantsFileInvalid) as caught:
        load(loaded, row(amount="2000"))
    assert "line 1: amount: grant gr_commit is in the ledger with other terms (amount)" in str(
        caught.value
    )
    assert view(loaded).balance.granted == D(1000)


def test_ledger_problems_name_line_and_field_and_nothing_is_written(loaded: Ledger) -> None:
    with pytest.raises(GrantsFileInvalid) as caught:
        load(
            loaded,
            row(grant_id="ok"),
            row(grant_id="g2", customer_id="nobody"),
            row(grant_id="g3", currency="EUR"),
            row(
                grant_id="g4",
                amount=None,
                units="10000",
                meter="nope",
                kind="promotional",
                price_paid=None,
            ),
            row(grant_id="g5", applies_to="prices:fin_resolutoin"),
            row(grant_id="g6", subscription_id="sub_00002"),
            row(grant_id="ok"),
        )
    problems = caught.value.problems
    assert problems == [
        "line 2: customer_id: no customer nobody in the ledger: load it first",
        "line 3: currency: customer cus_00001 is billed in USD; a grant pays for lines in"
        " its own currency, so it must be USD",
        "line 4: meter: no price of the catalog counts meter 'nope'",
        "line 5: applies_to: unknown price 'fin_resolutoin'; the catalog's are"
        " fin_resolution, platform_fee, seat_advanced, seat_essential, seat_expert",
        "line 6: subscription_id: no subscription sub_00002 of customer cus_00001 in the ledger",
        "line 7: grant_id: ok already on line 1",
    ]
    with loaded.Session() as session:
        assert session.scalars(select(CreditGrant)).all() == []


def test_void_returns_the_remaining_balance_to_the_issuer(loaded: Ledger, line_id: int) -> None:
    load(loaded, row())
    finalize_march(loaded, line_id)
    with loaded.Session.begin() as session:
        record_consumption(
            session,
            "gr_commit",
            amount=D("396"),
            value_minor=39600,
            invoice_line_id=line_id,
            effective_at=MARCH.end,
            key="consume|march",
        )
    with loaded.Session.begin() as session:
        voided = void_grant(
            session, "gr_commit", as_of=utc(2026, 5, 1), by="ops", reason="contract ended", at=NOW
        )
    b = voided.balance
    assert (b.granted, b.consumed, b.voided, b.remaining) == (D(1000), D(396), D(604), 0)
    assert b.balanced and voided.voided_by == "ops"
    with loaded.Session.begin() as session, pytest.raises(LedgerError, match="voided once"):
        void_grant(session, "gr_commit", as_of=utc(2026, 5, 2), by="ops", reason="again", at=NOW)
    with loaded.Session.begin() as session, pytest.raises(NotFound):
        void_grant(session, "nope", as_of=utc(2026, 5, 2), by="ops", reason="r", at=NOW)


def test_expiry_turns_the_rest_into_breakage_once(loaded: Ledger) -> None:
    load(
        loaded,
        row(expires_at="2026-04-01"),
        row(grant_id="later"),
        row(grant_id="rolls", rollover=True, expires_at="2026-04-01"),
    )
    with loaded.Session.begin() as session:
        nothing = expire_grants(session, as_of=utc(2026, 4, 1))  # 04-01 05:00Z in New York
        assert (nothing.expired, nothing.rolled_over) == ([], [])
        ended = expire_grants(session, as_of=utc(2026, 4, 2))
        assert (ended.expired, ended.rolled_over) == (["gr_commit"], [("rolls", "rolls:rollover")])
        again = expire_grants(session, as_of=utc(2026, 4, 2))
        assert (again.expired, again.rolled_over) == ([], [])
    b = view(loaded).balance
    assert (b.expired, b.remaining) == (D(1000), 0) and b.balanced
    rolls = view(loaded, "rolls").balance  # rollover: not expired, moved on
    assert (rolls.expired, rolls.rolled_over, rolls.remaining) == (0, D(1000), 0)
    # Before the expiry, the balance read as of then still holds it.
    with loaded.Session() as session:
        (before,) = grant_views(session, grant_id="gr_commit", as_of=utc(2026, 3, 31))
    assert before.balance.remaining == D(1000)


def test_consumption_never_takes_a_balance_below_zero(loaded: Ledger, line_id: int) -> None:
    load(loaded, row(amount="100", price_paid="100"))
    finalize_march(loaded, line_id)
    with loaded.Session.begin() as session:
        first = record_consumption(
            session,
            "gr_commit",
            amount=D("60"),
            value_minor=6000,
            invoice_line_id=line_id,
            effective_at=MARCH.end,
            key="c1",
        )
        # The same key again is the same movement.
        assert (
            record_consumption(
                session,
                "gr_commit",
                amount=D("60"),
                value_minor=6000,
                invoice_line_id=line_id,
                effective_at=MARCH.end,
                key="c1",
            )
            == first
        )
    with (
        loaded.Session.begin() as session,
        pytest.raises(BalanceError, match="remaining balance is 40"),
    ):
        record_consumption(
            session,
            "gr_commit",
            amount=D("40.01"),
            value_minor=4001,
            invoice_line_id=line_id,
            effective_at=MARCH.end,
            key="c2",
        )
    with loaded.Session.begin() as session:
        reverse_consumption(
            session, first, amount=D("10"), effective_at=MARCH.end, key="r1", note="corrected down"
        )
        reverse_consumption(session, first, effective_at=MARCH.end, key="r2", note="voided")
    with loaded.Session.begin() as session, pytest.raises(BalanceError, match="returned already"):
        reverse_consumption(
            session, first, amount=D("1"), effective_at=MARCH.end, key="r3", note="too much"
        )
    b = view(loaded).balance
    assert (b.consumed, b.remaining) == (0, D(100)) and b.balanced
    with loaded.Session() as session:
        (audit,) = audit_grants(session, start=utc(2026, 3, 1), end=utc(2026, 4, 1))
        values = [
            e.value_minor
            for e in session.scalars(select(CreditLedgerEntry).order_by(CreditLedgerEntry.id))
        ]
    assert audit.replay.problems == []
    assert values == [None, 6000, 1000, 5000]


def test_entries_are_append_only_for_the_orm(loaded: Ledger) -> None:
    load(loaded, row())
    with loaded.Session() as session:
        entry = session.scalars(select(CreditLedgerEntry)).one()
        entry.note = "changed"
        with pytest.raises(CreditLedgerImmutable):
            session.flush()
        session.rollback()
        session.delete(session.scalars(select(CreditLedgerEntry)).one())
        with pytest.raises(CreditLedgerImmutable):
            session.flush()
        session.rollback()
        grant = session.scalars(select(CreditGrant)).one()
        grant.amount = D(5)
        with pytest.raises(CreditLedgerImmutable, match="only ever voided"):
            session.flush()


SQL_REFUSED = [
    "UPDATE credit_ledger_entries SET note = 'x'",
    "DELETE FROM credit_ledger_entries",
    "UPDATE credit_grants SET amount = '5'",
    "UPDATE credit_grants SET priority = 1",
    "DELETE FROM credit_grants",
    # A movement that takes the balance below zero, or moves nothing.
    "INSERT INTO credit_ledger_entries (grant_id, kind, from_account, to_account, amount,"
    " available_after, idempotency_key, effective_at, note) SELECT id, 'consume',"
    " 'available', 'consumed', 2000, -1000, 'k', effective_from, 'n' FROM credit_grants",
    "INSERT INTO credit_ledger_entries (grant_id, kind, from_account, to_account, amount,"
    " available_after, idempotency_key, effective_at, note) SELECT id, 'consume',"
    " 'available', 'consumed', 0, 1000, 'k', effective_from, 'n' FROM credit_grants",
    # Accounts that are not the kind's.
    "INSERT INTO credit_ledger_entries (grant_id, kind, from_account, to_account, amount,"
    " available_after, idempotency_key, effective_at, note) SELECT id, 'consume',"
    " 'issuer', 'consumed', 1, 999, 'k', effective_from, 'n' FROM credit_grants",
]


@pytest.mark.parametrize("sql", SQL_REFUSED, ids=range(len(SQL_REFUSED)))
def test_database_refuses_edits_from_any_sql(loaded: Ledger, sql: str) -> None:
    load(loaded, row())
    with pytest.raises(DBAPIError), loaded.engine.begin() as conn:
        conn.execute(text(sql))
    assert view(loaded).balance.remaining == D(1000)


def test_database_lets_a_grant_be_voided_once(loaded: Ledger) -> None:
    load(loaded, row())
    void = "UPDATE credit_grants SET voided_at = :at, voided_by = 'a', void_reason = 'r'"
    with loaded.engine.begin() as conn:
        conn.execute(text(void), {"at": "2026-05-01 00:00:00"})
    with pytest.raises(DBAPIError), loaded.engine.begin() as conn:
        conn.execute(text(void), {"at": "2026-05-02 00:00:00"})


def test_a_partial_return_of_units_is_worth_its_share_rounded_half_up(
    loaded: Ledger, line_id: int
) -> None:
    units = row(
        amount=None, units="10", meter="fin_resolution", kind="promotional", price_paid=None
    )
    load(loaded, units)
    finalize_march(loaded, line_id)
    with loaded.Session.begin() as session:
        # 2 resolutions worth USD 0.05 together: one of them returned is worth 0.025.
        first = record_consumption(
            session,
            "gr_commit",
            amount=D(2),
            value_minor=5,
            invoice_line_id=line_id,
            effective_at=MARCH.end,
            key="c1",
        )
        back = reverse_consumption(
            session, first, amount=D(1), effective_at=MARCH.end, key="r1", note="one back"
        )
        assert session.get(CreditLedgerEntry, back).value_minor == 3  # half-up, not 2
    assert view(loaded).balance.remaining == D(9)
