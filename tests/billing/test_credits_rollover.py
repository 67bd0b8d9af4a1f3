"""Rollover of a grant's unused balance to the next term's grant (docs/credits.md,
"Rollover"), in the ledger, on SQLite and PostgreSQL: the rollover entry and the new
grant, once; nothing left, nothing created; the share of the price paid; the next term
in the customer's timezone across daylight saving time; a term that ended inside a
period finalized since; a void after the term's end; the rows refused at load."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

import billing
from billing.credits import (
    GrantRow,
    audit_grants,
    expire_grants,
    grant_views,
    load_grants,
    record_consumption,
    reverse_consumption,
    void_grant,
)
from billing.credits.read import parse_grant_records
from billing.errors import LedgerError
from billing.models import CreditGrant, CreditLedgerEntry, InvoiceLine
from tests.billing.conftest import Ledger
from tests.billing.factories import standard_charges, utc
from tests.billing.test_credits_ledger import MARCH, NOW, finalize_march, load, row, view

D = Decimal
CLOSE = utc(2027, 3, 4)  # the close's logical time: recorded as the new grant's creation


def rolling(**overrides: Any) -> Any:
    """USD 1,000 paid 900, 2026-03-01..2027-03-01 (midnights in New York), rolls over."""
    return row(rollover=True, **overrides)


def consume(ledger: Ledger, line: int, amount: str, minor: int, key: str = "c1") -> None:
    with ledger.Session.begin() as session:
        record_consumption(
            session,
            "gr_commit",
            amount=D(amount),
            value_minor=minor,
            invoice_line_id=line,
            effective_at=MARCH.end,
            key=key,
        )


TERM_ENDED = utc(2027, 3, 2)


@pytest.fixture
def line_id(loaded: Ledger) -> int:
    """A line of sub_00001's March draft (tests/billing/test_credits_ledger.py's): grants
    load before `finalize_march` finalizes it."""
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
        (invoice_id,) = result.invoice_ids.values()
        return int(
            session.scalars(
                select(InvoiceLine.id).where(InvoiceLine.invoice_id == invoice_id)
            ).all()[0]
        )


def end_terms(ledger: Ledger, as_of: Any = TERM_ENDED) -> Any:
    with ledger.Session.begin() as session:
        return expire_grants(session, as_of=as_of, at=CLOSE)


def counts(ledger: Ledger) -> tuple[int, int]:
    """(grants, rollover entries)."""
    with ledger.Session() as session:
        grants = session.scalar(select(func.count()).select_from(CreditGrant))
        rolls = session.scalar(
            select(func.count())
            .select_from(CreditLedgerEntry)
            .where(CreditLedgerEntry.kind == "rollover")
        )
    return int(grants or 0), int(rolls or 0)


def test_the_rest_rolls_over_to_the_next_terms_grant_once(loaded: Ledger, line_id: int) -> None:
    load(loaded, rolling())
    finalize_march(loaded, line_id)
    consume(loaded, line_id, "396", 39600)
    assert end_terms(loaded, utc(2027, 3, 1)).rolled_over == []  # 05:00Z in New York
    ended = end_terms(loaded)
    assert (ended.expired, ended.rolled_over) == ([], [("gr_commit", "gr_commit:rollover")])

    parent, child = view(loaded), view(loaded, "gr_commit:rollover")
    b = parent.balance
    assert (b.granted, b.consumed, b.expired, b.voided, b.rolled_over, b.remaining) == (
        D(1000),
        D(396),
        0,
        0,
        D(604),
        0,
    )
    assert b.balanced and parent.rolled_over_to == "gr_commit:rollover"
    assert (child.rolled_over_from, child.rolled_over_to) == ("gr_commit", None)
    c = child.balance
    assert (c.granted, c.consumed, c.rolled_over, c.remaining) == (D(604), 0, 0, D(604))
    # Same customer, subscription, kind, currency, meter, priority and scope; the next
    # term, local midnights in New York; 900 x 604 / 1000 of the price; rolls over once.
    assert (child.customer, child.subscription, child.kind, child.currency, child.meter) == (
        parent.customer,
        parent.subscription,
        "paid_commit",
        "USD",
        None,
    )
    assert (child.priority, child.applies_to, child.applies_to_ids) == (50, "all_usage", ())
    assert (child.effective_from, child.expires_at) == (utc(2027, 3, 1, 5), utc(2028, 3, 1, 5))
    assert child.price_paid == D("543.60") and child.rollover is False
    assert child.reason == "rolled over from gr_commit's unused balance on 2027-03-01"
    assert (child.created_by, child.created_at) == ("meterline", CLOSE)
    with loaded.Session() as session:
        grant = session.scalars(select(CreditGrant).where(CreditGrant.id == child.id)).one()
        assert grant.rolled_over_from_id == parent.id
        entries = [
            (e.grant_id, e.kind, e.from_account, e.to_account, e.amount, e.available_after)
            for e in session.scalars(
                select(CreditLedgerEntry)
                .where(CreditLedgerEntry.kind.in_(("rollover", "grant")))
                .order_by(CreditLedgerEntry.id)
            )
        ]
        audits = audit_grants(session, start=utc(2027, 3, 1), end=utc(2027, 4, 1))
        keys = [
            (e.idempotency_key, e.effective_at)
            for e in session.scalars(
                select(CreditLedgerEntry)
                .where(CreditLedgerEntry.kind.in_(("rollover", "grant")))
                .order_by(CreditLedgerEntry.id)
            )
        ]
    assert entries[1:] == [
        (parent.id, "rollover", "available", "rolled_over", D(604), 0),
        (child.id, "grant", "issuer", "available", D(604), D(604)),
    ]
    assert keys[1:] == [
        ("rollover|gr_commit", utc(2027, 3, 1, 5)),
        ("grant|gr_commit:rollover", utc(2027, 3, 1, 5)),
    ]
    assert {a.grant.grant_id: a.replay.problems for a in audits} == {
        "gr_commit": [],
        "gr_commit:rollover": [],
    }
    assert parent.to_json()["rolled_over"] == "604.00"
    assert child.to_json()["rolled_over_from"] == "gr_commit"

    # Running the expiry again changes nothing: one grant, one rollover entry.
    again = end_terms(loaded, utc(2027, 3, 5))
    assert (again.expired, again.rolled_over) == ([], [])
    assert counts(loaded) == (2, 1)
    # As of before the term's end the grant still held its rest; the next term's grant
    # had issued nothing yet.
    with loaded.Session() as session:
        before = {g.grant_id: g.balance for g in grant_views(session, as_of=utc(2027, 2, 1))}
    assert before["gr_commit"].remaining == D(604) and before["gr_commit"].rolled_over == 0
    assert before["gr_commit:rollover"].granted == 0 and before["gr_commit:rollover"].balanced


def test_nothing_left_rolls_nothing_over(loaded: Ledger, line_id: int) -> None:
    load(loaded, rolling(amount="100", price_paid="90"))
    finalize_march(loaded, line_id)
    consume(loaded, line_id, "100", 10000)
    ended = end_terms(loaded)
    assert (ended.expired, ended.rolled_over) == ([], [])
    assert counts(loaded) == (1, 0)
    b = view(loaded).balance
    assert (b.consumed, b.rolled_over, b.remaining) == (D(100), 0, 0) and b.balanced
    assert view(loaded).rolled_over_to is None


@pytest.mark.parametrize(
    ("units", "paid", "used", "share"),
    [
        ("3", "100.00", "1", "66.67"),  # 100 x 2 / 3 = 66.666...
        ("2", "0.05", "1", "0.03"),  # 0.025: half-up, not to even (0.02)
        ("2", "0", "1", "0.00"),
    ],
)
def test_a_paid_commits_next_term_carries_its_share_of_the_price(
    loaded: Ledger, line_id: int, units: str, paid: str, used: str, share: str
) -> None:
    load(loaded, rolling(amount=None, units=units, meter="fin_resolution", price_paid=paid))
    finalize_march(loaded, line_id)
    consume(loaded, line_id, used, 1)
    end_terms(loaded)
    child = view(loaded, "gr_commit:rollover")
    assert (child.meter, child.balance.granted) == ("fin_resolution", D(units) - D(used))
    assert child.price_paid == D(share) and str(child.price_paid) == share


def test_a_promotional_grants_next_term_has_no_price(loaded: Ledger) -> None:
    load(loaded, rolling(kind="promotional", price_paid=None, applies_to="meters:fin_resolution"))
    end_terms(loaded)
    child = view(loaded, "gr_commit:rollover")
    assert (child.kind, child.price_paid, child.balance.remaining) == ("promotional", None, 1000)
    assert (child.applies_to, child.applies_to_ids) == ("meters", ("fin_resolution",))


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        # A year of New York midnights (UTC-5 in January) and the next.
        (("2026-01-01", "2027-01-01"), (utc(2027, 1, 1, 5), utc(2028, 1, 1, 5))),
        # Two months from EST into EDT: the next two months, midnights at UTC-4.
        (("2026-02-01", "2026-04-01"), (utc(2026, 4, 1, 4), utc(2026, 6, 1, 4))),
        # 14 days across the spring-forward night (March 8) are 13 days 23 hours of UTC;
        # the next term is 14 local days again, to a midnight (not 23:00 on March 28).
        (("2026-03-01", "2026-03-15"), (utc(2026, 3, 15, 4), utc(2026, 3, 29, 4))),
        # A term ending at a time of day, not a midnight: 14 days 12 hours again.
        (("2026-02-22", "2026-03-08T12:00:00-04:00"), (utc(2026, 3, 8, 16), utc(2026, 3, 23, 4))),
        # From EDT back into EST: the next term ends at a local midnight at UTC-5.
        (("2026-09-01", "2026-11-01"), (utc(2026, 11, 1, 4), utc(2027, 1, 1, 5))),
    ],
    ids=["year", "into-dst", "days-across-dst", "time-of-day", "out-of-dst"],
)
def test_the_next_term_is_as_long_in_the_customers_calendar(
    loaded: Ledger, term: tuple[str, str], expected: tuple[Any, Any]
) -> None:
    load(loaded, rolling(effective_from=term[0], expires_at=term[1]))
    end_terms(loaded, utc(2027, 3, 2))
    child = view(loaded, "gr_commit:rollover")
    assert (child.effective_from, child.expires_at) == expected


def test_a_term_ending_inside_a_finalized_period_rolls_into_the_first_open_one(
    loaded: Ledger, line_id: int
) -> None:
    """The term ends 2026-03-15, mid-March; March is finalized before the rollover is
    booked (close finalizes, then ends terms): the next term's grant could only pay
    periods not invoiced yet, so it takes effect when March ends (April 1, midnight in New
    York), and still expires a term after March 15."""
    load(loaded, rolling(effective_from="2026-02-15", expires_at="2026-03-15"))
    finalize_march(loaded, line_id)
    end_terms(loaded, utc(2026, 4, 5))
    child = view(loaded, "gr_commit:rollover")
    assert (child.effective_from, child.expires_at) == (utc(2026, 4, 1, 4), utc(2026, 4, 15, 4))
    assert child.balance.granted == D(1000)
    with loaded.Session() as session:
        (entry,) = session.scalars(
            select(CreditLedgerEntry).where(CreditLedgerEntry.kind == "rollover")
        ).all()
    assert entry.effective_at == utc(2026, 3, 15, 4)  # the parent's expires_at


def test_a_next_term_already_finalized_whole_expires_instead(loaded: Ledger, line_id: int) -> None:
    """A term of 2026-03-01..03-08 would roll into 03-08..03-15, all of it inside March,
    finalized when the rollover is booked: nothing could draw on it, the rest expires."""
    load(loaded, rolling(effective_from="2026-03-01", expires_at="2026-03-08"))
    finalize_march(loaded, line_id)
    ended = end_terms(loaded, utc(2026, 4, 5))
    assert (ended.expired, ended.rolled_over) == (["gr_commit"], [])
    b = view(loaded).balance
    assert (b.expired, b.rolled_over, b.remaining) == (D(1000), 0, 0)
    assert counts(loaded) == (1, 0)


def test_voiding_after_the_terms_end_rolls_over_first_and_voids_the_rest(
    loaded: Ledger, line_id: int
) -> None:
    load(loaded, rolling())
    finalize_march(loaded, line_id)
    consume(loaded, line_id, "396", 39600)
    with loaded.Session.begin() as session:
        voided = void_grant(
            session, "gr_commit", as_of=utc(2027, 3, 10), by="ops", reason="ended", at=NOW
        )
    b = voided.balance
    assert (b.consumed, b.rolled_over, b.voided, b.remaining) == (D(396), D(604), 0, 0)
    assert voided.voided_by == "ops" and voided.rolled_over_to == "gr_commit:rollover"
    child = view(loaded, "gr_commit:rollover")
    assert child.voided_at is None and child.balance.remaining == D(604)
    assert child.created_at == NOW  # booked by the void, the person's action
    # The close's expiry after it changes nothing; the next term's grant is voided as any.
    assert end_terms(loaded).rolled_over == []
    with loaded.Session.begin() as session:
        gone = void_grant(
            session,
            "gr_commit:rollover",
            as_of=utc(2027, 4, 1),
            by="ops",
            reason="refunded",
            at=NOW + timedelta(days=1),
        )
    assert (gone.balance.voided, gone.balance.remaining) == (D(604), 0)
    assert counts(loaded) == (2, 1)


def test_voiding_after_the_expiry_ran_voids_nothing_more(loaded: Ledger) -> None:
    load(loaded, rolling())
    end_terms(loaded)
    with loaded.Session.begin() as session:
        voided = void_grant(
            session, "gr_commit", as_of=utc(2027, 3, 10), by="ops", reason="ended", at=NOW
        )
    assert (voided.balance.rolled_over, voided.balance.voided) == (D(1000), 0)
    assert counts(loaded) == (2, 1)


def test_voiding_before_the_terms_end_voids_the_rest_and_nothing_rolls_over(
    loaded: Ledger,
) -> None:
    load(loaded, rolling())
    with loaded.Session.begin() as session:
        void_grant(session, "gr_commit", as_of=utc(2026, 6, 1), by="ops", reason="r", at=NOW)
    assert end_terms(loaded).rolled_over == []
    b = view(loaded).balance
    assert (b.voided, b.rolled_over) == (D(1000), 0) and counts(loaded) == (1, 0)


def test_a_grant_loaded_before_rollover_with_a_long_id_is_refused_at_its_end(
    loaded: Ledger,
) -> None:
    """Load refuses such an id now; one loaded before (written here around the check)
    stops the expiry with its reason rather than a database error."""
    longer = GrantRow.model_construct(**{**rolling().model_dump(), "grant_id": "g" * 60})
    with loaded.Session.begin() as session:
        load_grants(session, [(1, longer)], "grants", by="ops", at=NOW)
    with pytest.raises(LedgerError, match="would be longer than 64 characters"):
        end_terms(loaded)
    assert counts(loaded) == (1, 0)


def test_rows_that_cannot_roll_over_are_refused_naming_the_field() -> None:
    def problems(**fields: Any) -> list[str]:
        record = {
            "grant_id": "g",
            "customer_id": "c",
            "kind": "promotional",
            "currency": "USD",
            "amount": "10",
            "effective_from": "2026-01-01",
            "expires_at": "2027-01-01",
            "rollover": True,
            "reason": "r",
            **fields,
        }
        return [str(p) for p in parse_grant_records([(1, record)])[1]]

    assert problems(grant_id="g" * 55) == []
    assert problems(grant_id="g" * 56) == [
        "line 1: grant_id: a grant that rolls over has an id of at most 55 characters, not 56:"
        " its next term's grant is named <grant_id>:rollover, at most 64"
    ]
    assert problems(grant_id="g" * 56, rollover=False) == []
    assert problems(expires_at=None) == [
        "line 1: expires_at: a grant that rolls over needs the end of its term (its unused"
        " balance moves to the next term's grant then)"
    ]
    assert problems(grant_id="g:rollover", rollover=False) == [
        "line 1: grant_id: 'g:rollover' ends with ':rollover', which names the grant a"
        " rollover creates for the next term: choose another id"
    ]


@pytest.mark.parametrize("rolls", [True, False], ids=["rollover", "expiry"])
def test_value_returned_after_the_terms_end_is_breakage_once(
    loaded: Ledger, line_id: int, rolls: bool
) -> None:
    """A consumption returned after the term was booked (an invoice it paid voided, the
    re-issue drawing less) used to stop every later close with EntryConflict (the second
    expire|G, or a second rollover into a grant that never changes): it is breakage, once,
    effective when it came back, so no balance as of any instant goes below zero."""
    load(loaded, row(rollover=rolls))
    finalize_march(loaded, line_id)
    with loaded.Session.begin() as session:
        paid = record_consumption(
            session,
            "gr_commit",
            amount=D("396"),
            value_minor=39600,
            invoice_line_id=line_id,
            effective_at=MARCH.end,
            key="c1",
        )
    first = end_terms(loaded)
    assert (first.expired, len(first.rolled_over)) == (([], 1) if rolls else (["gr_commit"], 0))
    came_back = utc(2027, 3, 5)
    with loaded.Session.begin() as session:
        back = reverse_consumption(
            session, paid, amount=D("100"), effective_at=came_back, key="r1", note="voided"
        )
    again = end_terms(loaded, utc(2027, 3, 6))
    assert (again.expired, again.rolled_over) == (["gr_commit"], [])
    assert end_terms(loaded, utc(2027, 3, 7)) == end_terms(loaded, utc(2027, 3, 8))  # nothing
    b = view(loaded).balance
    assert (b.consumed, b.remaining, b.balanced) == (D(296), 0, True)
    assert (b.expired, b.rolled_over) == ((D(100), D(604)) if rolls else (D(704), 0))
    with loaded.Session() as session:
        late = session.scalars(
            select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key.like("expire|%|%"))
        ).one()
        assert (late.idempotency_key, late.amount, late.effective_at) == (
            f"expire|gr_commit|{back}",
            D(100),
            came_back,
        )
        audits = audit_grants(session, start=utc(2027, 3, 1), end=utc(2027, 4, 1))
    assert all(not a.replay.problems for a in audits)
    assert counts(loaded)[0] == (2 if rolls else 1)
