"""Corrections of finalized periods become adjustment lines on the next open invoice,
linked to the lines they correct; the finalized invoice is never touched."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

import billing
from billing.models import InvoiceLine
from tests.billing.conftest import Ledger
from tests.billing.factories import (
    count_lines,
    invoice,
    period_of,
    standard_charges,
    usage,
    versions,
)

D = Decimal
MARCH = period_of("sub_00001", 2026, 3)
APRIL = period_of("sub_00001", 2026, 4)
MAY = period_of("sub_00001", 2026, 5)
GRACE = timedelta(days=3)


def post_and_finalize(ledger: Ledger, period: billing.Period, resolutions: int = 100) -> int:
    with ledger.Session.begin() as session:
        result = billing.post_charges(
            session, "sub_00001", period, standard_charges(session, resolutions=resolutions)
        )
    (invoice_id,) = result.invoice_ids.values()
    with ledger.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)
    return invoice_id


def adjust(ledger: Ledger, period: billing.Period, charges: list[billing.ChargeLine], **kw: object):  # type: ignore[no-untyped-def]
    with ledger.Session.begin() as session:
        return billing.post_adjustments(session, "sub_00001", period, charges, **kw)  # type: ignore[arg-type]


def adjustment_lines(ledger: Ledger, invoice_id: int) -> list[InvoiceLine]:
    with ledger.Session() as session:
        return list(
            session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice_id, InvoiceLine.kind == "adjustment")
                .order_by(InvoiceLine.id)
            )
        )


def test_late_usage_becomes_an_adjustment_on_the_next_draft(loaded: Ledger) -> None:
    march = post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        corrected = standard_charges(session, resolutions=130)
        originals = {
            line.price_id: line.id
            for line in session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == march))
        }
    result = adjust(loaded, MARCH, corrected)
    assert (result.created, result.unchanged, result.target_period) == (1, 0, APRIL)
    (line,) = adjustment_lines(loaded, result.invoice_id)
    assert line.adjusts_line_id == originals["fin_resolution"]
    assert (line.quantity, line.amount_minor, line.amount_precise) == (D(30), 2970, D("29.70"))
    assert (line.service_period_start, line.service_period_end) == (MARCH.start, MARCH.end)
    assert line.breakdown["billed"]["amount_minor"] == 9900
    assert line.breakdown["corrected"]["amount_minor"] == 12870
    with loaded.Session() as session:
        april = invoice(session, result.invoice_id)
        assert (april.status, april.period_start, april.adjustment_minor, april.total_minor) == (
            "draft",
            APRIL.start,
            2970,
            2970,
        )
        march_invoice = invoice(session, march)
        assert (march_invoice.status, march_invoice.total_minor) == ("finalized", 39600)
        assert count_lines(session, march) == 2
    # April's own charges land beside the adjustment; re-rating April keeps it.
    with loaded.Session.begin() as session:
        own = billing.post_charges(session, "sub_00001", APRIL, standard_charges(session))
        assert own.invoice_ids == {("sub_00001", APRIL.start): result.invoice_id}
    with loaded.Session.begin() as session:
        billing.post_charges(
            session, "sub_00001", APRIL, standard_charges(session, resolutions=5), rerate=True
        )
    assert len(adjustment_lines(loaded, result.invoice_id)) == 1
    with loaded.Session() as session:
        assert invoice(session, result.invoice_id).total_minor == 2970 + 495 + 29700


def test_reposting_the_same_correction_is_a_no_op(loaded: Ledger) -> None:
    post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        corrected = standard_charges(session, resolutions=130)
    first = adjust(loaded, MARCH, corrected)
    again = adjust(loaded, MARCH, corrected)
    assert (again.created, again.unchanged, again.changed) == (0, 1, False)
    assert again.lines == first.lines
    # The uncorrected charges need no adjustment at all... but one is already posted:
    # going back is a different correction of the same draft, which needs rerate.
    with loaded.Session() as session:
        original = standard_charges(session)
    with pytest.raises(billing.PostingConflict, match="rerate=True"):
        adjust(loaded, MARCH, original)
    reverted = adjust(loaded, MARCH, original, rerate=True)
    assert (reverted.removed, reverted.lines) == (1, {})
    with loaded.Session() as session:
        assert invoice(session, first.invoice_id).total_minor == 0


def test_a_second_correction_on_the_same_draft_needs_rerate(loaded: Ledger) -> None:
    post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        first, second = (
            standard_charges(session, resolutions=130),
            standard_charges(session, resolutions=150),
        )
    adjust(loaded, MARCH, first)
    with pytest.raises(billing.PostingConflict):
        adjust(loaded, MARCH, second)
    result = adjust(loaded, MARCH, second, rerate=True)
    assert result.replaced == 1
    (line,) = adjustment_lines(loaded, result.invoice_id)
    assert line.amount_minor == 4950


def test_corrections_skip_finalized_periods_and_count_earlier_adjustments(loaded: Ledger) -> None:
    post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        plus30 = standard_charges(session, resolutions=130)
        plus50 = standard_charges(session, resolutions=150)
    april_result = adjust(loaded, MARCH, plus30)  # on April's draft
    with loaded.Session.begin() as session:
        billing.post_charges(session, "sub_00001", APRIL, standard_charges(session))
        billing.finalize(session, april_result.invoice_id, as_of=APRIL.end + GRACE, grace=GRACE)
    # A further correction of March: April is finalized, so it goes to May, for only the
    # part not adjusted yet (150 - 130 resolutions).
    may_result = adjust(loaded, MARCH, plus50)
    assert may_result.target_period == MAY
    (line,) = adjustment_lines(loaded, may_result.invoice_id)
    assert (line.quantity, line.amount_minor) == (D(20), 1980)
    assert adjust(loaded, MARCH, plus50).changed is False


def test_removed_and_new_charges(loaded: Ledger) -> None:
    march = post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        v = versions(session, "standard", "USD")
        fin = standard_charges(session)[0]
    expert = usage(
        "seat_expert", v["seat_expert"], 1, "139", group="seat_type=expert", meter="seats"
    )
    result = adjust(loaded, MARCH, [fin, expert])  # seats advanced gone, expert new
    lines = {line.price_id: line for line in adjustment_lines(loaded, result.invoice_id)}
    assert lines["seat_advanced"].amount_minor == -29700
    assert lines["seat_advanced"].quantity == D(-3)
    assert lines["seat_advanced"].adjusts_line_id is not None
    assert lines["seat_expert"].amount_minor == 13900
    assert lines["seat_expert"].adjusts_line_id is None
    assert (
        lines["seat_expert"].adjusts_key is not None
        and "seat_expert" in lines["seat_expert"].adjusts_key
    )
    with loaded.Session() as session:
        assert invoice(session, result.invoice_id).total_minor == 13900 - 29700
        assert invoice(session, march).total_minor == 39600


def test_adjustments_only_correct_finalized_periods(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
    with pytest.raises(billing.LedgerError, match="not invoiced yet"):
        adjust(loaded, MARCH, charges)
    with loaded.Session.begin() as session:
        billing.post_charges(session, "sub_00001", MARCH, charges)
    with pytest.raises(billing.LedgerError, match="still a draft"):
        adjust(loaded, MARCH, charges)


def test_a_draft_holding_only_corrections_waits_for_its_period_to_be_rated(loaded: Ledger) -> None:
    """April's draft exists only to carry March's correction: finalizing it before close
    rated April would bill April with the correction alone and April's usage never."""
    post_and_finalize(loaded, MARCH)
    with loaded.Session() as session:
        corrected = standard_charges(session, resolutions=130)
    carrier = adjust(loaded, MARCH, corrected).invoice_id
    after_april = APRIL.end + GRACE
    with loaded.Session.begin() as session:
        assert billing.finalize_due(session, as_of=after_april, grace=GRACE) == []
    with (
        pytest.raises(billing.LedgerError, match="only adjustment lines"),
        loaded.Session.begin() as session,
    ):
        billing.finalize(session, carrier, as_of=after_april, grace=GRACE)
    # Close rates April onto the same draft; now it is finalized with both.
    with loaded.Session.begin() as session:
        posted = billing.post_charges(session, "sub_00001", APRIL, standard_charges(session))
    assert list(posted.invoice_ids.values()) == [carrier]
    with loaded.Session.begin() as session:
        assert billing.finalize_due(session, as_of=after_april, grace=GRACE) == [carrier]
    with loaded.Session() as session:
        assert invoice(session, carrier).total_minor == 39600 + 2970
