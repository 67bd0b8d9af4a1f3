"""What the ledger can hold, checked before anything is written (issue 11 item 3): a line
or an invoice total beyond the signed 64-bit minor-unit columns is refused with
AmountOutOfRange, never left to the database to overflow; the largest amount is stored
exactly. And the bookkeeping close relies on: a rating run's watermark, the run that
re-derived a draft's lines, a draft kept open by finalize_due."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

import billing
from billing.bulk import MAX_AMOUNT_MINOR, AmountOutOfRange
from billing.models import Invoice, InvoiceLine, RatingRun
from billing.posting import ChargeBatch, check_batch
from tests.billing.conftest import Ledger
from tests.billing.factories import count_lines, period_of, usage, utc, versions

MARCH = period_of("sub_00001", 2026, 3)
LIMIT = Decimal(MAX_AMOUNT_MINOR).scaleb(-2)  # USD 92,233,720,368,547,758.07


def fin(session: object, amount: Decimal, quantity: int = 1) -> billing.ChargeLine:
    """A fin_resolution line of `quantity` at a unit price making `amount` (USD)."""
    v = versions(session, "standard", "USD")  # type: ignore[arg-type]
    return usage("fin_resolution", v["fin_resolution"], quantity, str(amount / quantity))


def seats(session: object, amount: Decimal) -> billing.ChargeLine:
    v = versions(session, "standard", "USD")  # type: ignore[arg-type]
    return usage(
        "seat_advanced",
        v["seat_advanced"],
        1,
        str(amount),
        group="seat_type=advanced",
        meter="seats",
    )


def test_the_largest_amount_is_stored_exactly(loaded: Ledger) -> None:
    assert MAX_AMOUNT_MINOR == 9_223_372_036_854_775_807
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, [fin(session, LIMIT)])
    with loaded.Session() as session:
        (line_id,) = result.lines.values()
        line = session.get(InvoiceLine, line_id)
        assert line is not None and line.amount_minor == MAX_AMOUNT_MINOR
        inv = session.get(Invoice, line.invoice_id)
        assert inv is not None and inv.total_minor == MAX_AMOUNT_MINOR


def test_a_line_beyond_the_limit_is_refused_before_writing(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = [fin(session, LIMIT + Decimal("0.01"))]
    with loaded.Session.begin() as session, pytest.raises(AmountOutOfRange) as refused:
        billing.post_charges(session, "sub_00001", MARCH, charges)
    assert str(refused.value) == (
        "line sub_00001|2026-03-01T05:00:00Z|fin_resolution|"
        f"{charges[0].price_version}|usage is 9,223,372,036,854,775,808 minor units, beyond"
        " the ledger's limit of 9,223,372,036,854,775,807 (signed 64-bit)"
    )
    assert isinstance(refused.value, billing.LedgerError)
    with loaded.Session() as session:
        assert count_lines(session) == 0
        assert session.scalar(select(Invoice.id)) is None


def test_an_invoice_total_beyond_the_limit_is_refused(loaded: Ledger) -> None:
    """Two lines that each fit, whose sum does not: the new invoice's total is checked
    (check_batch before posting, and posting itself)."""
    half = Decimal(2**62).scaleb(-2)  # two halves: 2^63 minor units, one past the limit
    with loaded.Session() as session:
        charges = [fin(session, half), seats(session, half)]
    with pytest.raises(AmountOutOfRange, match="subtotal is 9,223,372,036,854,775,808 minor"):
        check_batch(ChargeBatch("sub_00001", MARCH, charges))
    with loaded.Session.begin() as session, pytest.raises(AmountOutOfRange, match="subtotal"):
        billing.post_charges(session, "sub_00001", MARCH, charges)
    with loaded.Session() as session:
        assert count_lines(session) == 0


def test_a_line_added_to_a_draft_is_checked_with_the_lines_it_already_has(
    loaded: Ledger,
) -> None:
    half = Decimal(2**62).scaleb(-2)
    with loaded.Session.begin() as session:
        billing.post_charges(session, "sub_00001", MARCH, [fin(session, half)])
    with loaded.Session.begin() as session, pytest.raises(AmountOutOfRange, match="invoice"):
        billing.post_charges(
            session, "sub_00001", MARCH, [fin(session, half), seats(session, half)]
        )
    with loaded.Session() as session:
        assert count_lines(session) == 1


def test_a_rating_run_keeps_its_watermark(loaded: Ledger) -> None:
    with loaded.Session.begin() as session:
        run = billing.record_rating_run(
            session,
            period_start=utc(2026, 3, 1),
            period_end=utc(2026, 4, 1),
            run_at=utc(2026, 4, 4),
            code_version="test",
            inputs_hash="0" * 64,
            events_watermark=utc(2026, 4, 3, 0, 30),
            stale_days={date(2026, 3, 30): utc(2026, 3, 31, 0, 30)},
        )
    with loaded.Session() as session:
        stored = session.get(RatingRun, run)
        assert stored is not None
        assert stored.events_watermark == utc(2026, 4, 3, 0, 30)
        assert [(d.day, d.watermark) for d in stored.stale_days] == [
            (date(2026, 3, 30), utc(2026, 3, 31, 0, 30))
        ]


def test_an_unchanged_line_takes_the_run_that_rated_it_again(loaded: Ledger) -> None:
    """Late means not seen by the run that produced the line: a draft re-rated by a later
    run without change is that run's line now (what it saw is what the line counts)."""
    runs = []
    with loaded.Session.begin() as session:
        for day in (2, 3):
            runs.append(
                billing.record_rating_run(
                    session,
                    period_start=MARCH.start,
                    period_end=MARCH.end,
                    run_at=utc(2026, 4, day),
                    code_version="test",
                    inputs_hash="0" * 64,
                )
            )
    with loaded.Session.begin() as session:
        charges = [fin(session, Decimal("9.90"), 10)]
        first = billing.post_charges(session, "sub_00001", MARCH, charges, rating_run_id=runs[0])
    with loaded.Session.begin() as session:
        again = billing.post_charges(
            session, "sub_00001", MARCH, charges, rerate=True, rating_run_id=runs[1]
        )
    assert (again.created, again.unchanged) == (0, 1) and again.lines == first.lines
    with loaded.Session() as session:
        (line_id,) = again.lines.values()
        line = session.get(InvoiceLine, line_id)
        assert line is not None and line.rating_run_id == runs[1]


def test_finalize_due_keeps_the_drafts_it_is_told_to(loaded: Ledger) -> None:
    april = period_of("sub_00001", 2026, 4)
    with loaded.Session.begin() as session:
        ids = [
            next(
                iter(
                    billing.post_charges(
                        session, "sub_00001", p, [fin(session, Decimal(1))]
                    ).invoice_ids.values()
                )
            )
            for p in (MARCH, april)
        ]
    with loaded.Session.begin() as session:
        done = billing.finalize_due(
            session,
            as_of=april.end + timedelta(days=3),
            grace=timedelta(days=3),
            keep_open={ids[1]},
        )
    assert done == [ids[0]]
    with loaded.Session() as session:
        assert [session.get(Invoice, i).status for i in ids] == ["finalized", "draft"]  # type: ignore[union-attr]
