"""Voiding an invoice keeps every correction billed exactly once (docs/ledger.md,
"Voiding"): a void invoice bills nothing and its period is billed again in full; the
corrections it carried for earlier periods move to its period's new draft; corrections
of its own period are removed from drafts and reversed where a finalized invoice billed
them. The money: what a period is billed, over every live invoice, is its re-rated
amount, whatever the order of the voids."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

import billing
from billing.lifecycle import VoidBeforeFinalized
from billing.models import Invoice, InvoiceLine
from tests.billing.conftest import Ledger
from tests.billing.factories import invoice, period_of, standard_charges

D = Decimal
MARCH = period_of("sub_00001", 2026, 3)
APRIL = period_of("sub_00001", 2026, 4)
MAY = period_of("sub_00001", 2026, 5)
GRACE = timedelta(days=3)
# standard_charges: resolutions x 0.99 + 3 advanced seats x 99.00 (297.00)
SEATS = 29700


def rated(resolutions: int) -> int:
    """A period's re-rated amount in cents."""
    return resolutions * 99 + SEATS


def post(ledger: Ledger, period: billing.Period, resolutions: int, *, final: bool) -> int:
    """Post the period's charges (its live draft, or a new one) and maybe finalize it."""
    with ledger.Session.begin() as session:
        result = billing.post_charges(
            session, "sub_00001", period, standard_charges(session, resolutions=resolutions)
        )
    (invoice_id,) = result.invoice_ids.values()
    if final:
        with ledger.Session.begin() as session:
            billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)
    return invoice_id


def correct(ledger: Ledger, period: billing.Period, resolutions: int) -> billing.AdjustmentResult:
    """Late usage of a finalized period: its corrected charges, as close posts them."""
    with ledger.Session.begin() as session:
        return billing.post_adjustments(
            session,
            "sub_00001",
            period,
            standard_charges(session, resolutions=resolutions),
            rerate=True,
        )


def void(ledger: Ledger, invoice_id: int, period: billing.Period) -> None:
    with ledger.Session.begin() as session:
        billing.void(session, invoice_id, as_of=period.end + timedelta(days=40))


def billed_for(ledger: Ledger, period: billing.Period) -> int:
    """What the customer is billed for `period`, on every live invoice (its own lines and
    every adjustment of it, wherever carried)."""
    with ledger.Session() as session:
        return int(
            session.scalar(  # type: ignore[arg-type]
                select(func.coalesce(func.sum(InvoiceLine.amount_minor), 0))
                .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                .where(
                    Invoice.status != "void",
                    InvoiceLine.service_period_start == period.start,
                )
            )
        )


def live(ledger: Ledger, period: billing.Period) -> Invoice:
    with ledger.Session() as session:
        (found,) = session.scalars(
            select(Invoice).where(Invoice.period_start == period.start, Invoice.status != "void")
        ).all()
        session.expunge(found)
        return found


def lines(ledger: Ledger, invoice_id: int) -> list[tuple[str, str, Decimal, int]]:
    """(kind, corrected period start, quantity, amount) of an invoice's lines."""
    with ledger.Session() as session:
        return sorted(
            (ln.kind, ln.service_period_start.date().isoformat(), ln.quantity, ln.amount_minor)
            for ln in session.scalars(
                select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
            )
        )


def test_a_void_period_is_billed_its_re_rated_amount_once(loaded: Ledger) -> None:
    """March's late usage was billed on April's finalized invoice; March is voided and
    billed again with yet more usage: March totals exactly the re-rated amount."""
    march = post(loaded, MARCH, 100, final=True)
    assert correct(loaded, MARCH, 130).target_period == APRIL  # + 30 x 0.99 on April
    april = post(loaded, APRIL, 100, final=True)
    assert billed_for(loaded, MARCH) == rated(130)

    void(loaded, march, MARCH)
    # Billed so far: April's 29.70 correction only; the new March draft reverses it.
    reissue = live(loaded, MARCH)
    assert (reissue.status, reissue.reissue_of_id, reissue.total_minor) == ("draft", march, -2970)
    assert billed_for(loaded, MARCH) == 0
    with loaded.Session() as session:  # waits for close to post March's own charges
        assert billing.finalize_due(session, as_of=MAY.end + GRACE, grace=GRACE) == []
        session.rollback()

    # The next close re-rates March (140 resolutions now) onto its new draft.
    assert post(loaded, MARCH, 140, final=True) == reissue.id
    assert billed_for(loaded, MARCH) == rated(140)
    assert invoice_total(loaded, reissue.id) == rated(140) - 2970
    assert billed_for(loaded, APRIL) == rated(100)
    assert invoice_total(loaded, april) == rated(100) + 2970  # April never changes

    # A later correction of March counts what March's new invoice and April billed.
    result = correct(loaded, MARCH, 150)
    assert result.target_period == MAY and result.invoice_id is not None
    assert lines(loaded, result.invoice_id) == [("adjustment", "2026-03-01", D(10), 990)]
    assert billed_for(loaded, MARCH) == rated(150)
    # ... once: the same correction again is a no-op
    assert not correct(loaded, MARCH, 150).changed


def invoice_total(ledger: Ledger, invoice_id: int) -> int:
    with ledger.Session() as session:
        return invoice(session, invoice_id).total_minor


def test_voiding_the_carrier_moves_its_corrections_to_its_period_s_new_draft(
    loaded: Ledger,
) -> None:
    post(loaded, MARCH, 100, final=True)
    correct(loaded, MARCH, 130)
    april = post(loaded, APRIL, 100, final=True)

    void(loaded, april, APRIL)
    reissue = live(loaded, APRIL)
    assert reissue.reissue_of_id == april
    assert lines(loaded, reissue.id) == [("adjustment", "2026-03-01", D(30), 2970)]
    assert billed_for(loaded, MARCH) == rated(130)  # still billed, once

    assert post(loaded, APRIL, 110, final=True) == reissue.id
    assert (billed_for(loaded, MARCH), billed_for(loaded, APRIL)) == (rated(130), rated(110))
    # Nothing left to correct for March: the moved line is March's correction.
    assert correct(loaded, MARCH, 130).invoice_id is None


def test_voiding_a_draft_carrier_keeps_its_corrections(loaded: Ledger) -> None:
    post(loaded, MARCH, 100, final=True)
    carrier = correct(loaded, MARCH, 130).invoice_id
    assert carrier is not None
    with loaded.Session.begin() as session:
        billing.void(session, carrier, as_of=APRIL.start)
    reissue = live(loaded, APRIL)
    assert (reissue.status, reissue.reissue_of_id) == ("draft", carrier)
    assert lines(loaded, reissue.id) == [("adjustment", "2026-03-01", D(30), 2970)]
    assert billed_for(loaded, MARCH) == rated(130)


def test_voiding_a_corrected_invoice_drops_its_corrections_from_drafts(loaded: Ledger) -> None:
    march = post(loaded, MARCH, 100, final=True)
    carrier = correct(loaded, MARCH, 130).invoice_id
    assert carrier is not None
    void(loaded, march, MARCH)
    assert lines(loaded, carrier) == []  # April's draft no longer carries March's
    assert invoice_total(loaded, carrier) == 0
    with loaded.Session() as session:  # nothing to carry: no March draft yet
        assert (
            session.scalar(
                select(func.count()).where(
                    Invoice.period_start == MARCH.start, Invoice.status != "void"
                )
            )
            == 0
        )
    post(loaded, MARCH, 130, final=True)
    assert billed_for(loaded, MARCH) == rated(130)


@pytest.mark.parametrize("first", ["march", "april"])
def test_voiding_both_in_either_order_bills_each_period_once(loaded: Ledger, first: str) -> None:
    ids = {"march": post(loaded, MARCH, 100, final=True)}
    correct(loaded, MARCH, 130)
    ids["april"] = post(loaded, APRIL, 100, final=True)
    periods = {"march": MARCH, "april": APRIL}
    for name in (first, "april" if first == "march" else "march"):
        void(loaded, ids[name], periods[name])
    post(loaded, MARCH, 140, final=True)
    post(loaded, APRIL, 120, final=True)
    assert (billed_for(loaded, MARCH), billed_for(loaded, APRIL)) == (rated(140), rated(120))
    assert correct(loaded, MARCH, 140).invoice_id is None


def test_void_refuses_a_time_before_the_finalization(loaded: Ledger) -> None:
    march = post(loaded, MARCH, 100, final=True)
    finalized_at = MARCH.end + GRACE
    with (
        pytest.raises(VoidBeforeFinalized, match=r"was finalized at .* before that"),
        loaded.Session.begin() as session,
    ):
        billing.void(session, march, as_of=finalized_at - timedelta(seconds=1))
    with loaded.Session() as session:
        assert invoice(session, march).status == "finalized"
    with loaded.Session.begin() as session:
        assert billing.void(session, march, as_of=finalized_at).voided_at == finalized_at
