"""Finalize after the grace period, frozen totals, immutability (ORM hooks and database
triggers), void and re-issue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

import billing
from billing.models import Invoice, InvoiceLine
from tests.billing.conftest import Ledger
from tests.billing.factories import (
    count_lines,
    invoice,
    period_of,
    standard_charges,
    usage,
    utc,
    versions,
)

D = Decimal
MARCH = period_of("sub_00001", 2026, 3)
GRACE = timedelta(days=3)


@pytest.fixture
def finalized(loaded: Ledger) -> int:
    """Id of sub_00001's finalized March invoice (2 lines, USD 396.00)."""
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
    (invoice_id,) = result.invoice_ids.values()
    with loaded.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=MARCH.end + GRACE, grace=GRACE)
    return invoice_id


def test_finalize_waits_for_the_grace_period(loaded: Ledger) -> None:
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
    (invoice_id,) = result.invoice_ids.values()
    too_early = MARCH.end + GRACE - timedelta(seconds=1)
    with (
        pytest.raises(billing.FinalizeTooEarly, match="grace period"),
        loaded.Session.begin() as session,
    ):
        billing.finalize(session, invoice_id, as_of=too_early, grace=GRACE)
    with loaded.Session.begin() as session:
        assert billing.finalize_due(session, as_of=too_early, grace=GRACE) == []
    with loaded.Session.begin() as session:
        assert billing.finalize_due(session, as_of=MARCH.end + GRACE, grace=GRACE) == [invoice_id]
    with loaded.Session() as session:
        inv = invoice(session, invoice_id)
        assert (inv.status, inv.finalized_at, inv.total_minor) == (
            "finalized",
            MARCH.end + GRACE,
            39600,
        )
    with loaded.Session.begin() as session:  # finalizing again is a no-op
        assert (
            billing.finalize(session, invoice_id, as_of=utc(2027, 1, 1)).finalized_at
            == MARCH.end + GRACE
        )
    with pytest.raises(ValueError, match="timezone-aware"), loaded.Session.begin() as session:
        billing.finalize(session, invoice_id, as_of=MARCH.end.replace(tzinfo=None))


def test_identical_repost_to_a_finalized_invoice_is_a_no_op(loaded: Ledger, finalized: int) -> None:
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
        assert (result.unchanged, result.created) == (2, 0)
        assert result.invoice_ids == {("sub_00001", MARCH.start): finalized}
    with loaded.Session.begin() as session:
        assert (
            billing.post_charges(
                session, "sub_00001", MARCH, standard_charges(session), rerate=True
            ).unchanged
            == 2
        )


@pytest.mark.parametrize("rerate", [False, True])
def test_changing_a_finalized_invoice_through_posting_is_refused(
    loaded: Ledger, finalized: int, rerate: bool
) -> None:
    with loaded.Session() as session:
        changed = standard_charges(session, resolutions=101)
        v = versions(session, "standard", "USD")
    extra = [
        *standard_charges_for(loaded),
        usage("seat_expert", v["seat_expert"], 1, "139", group="x", meter="seats"),
    ]
    for charges in (changed, extra):
        with (
            pytest.raises(billing.PostingConflict, match="post_adjustments"),
            loaded.Session.begin() as session,
        ):
            billing.post_charges(session, "sub_00001", MARCH, charges, rerate=rerate)
    with loaded.Session() as session:
        assert count_lines(session, finalized) == 2
        assert invoice(session, finalized).total_minor == 39600


def standard_charges_for(ledger: Ledger) -> list[billing.ChargeLine]:
    with ledger.Session() as session:
        return standard_charges(session)


def test_orm_hooks_refuse_edits_of_a_finalized_invoice(loaded: Ledger, finalized: int) -> None:
    edits = [
        lambda s: setattr(s.scalars(select(InvoiceLine)).first(), "amount_minor", 1),
        lambda s: setattr(invoice(s, finalized), "total_minor", 1),
        lambda s: setattr(invoice(s, finalized), "status", "draft"),
        lambda s: s.delete(s.scalars(select(InvoiceLine)).first()),
        lambda s: s.delete(invoice(s, finalized)),
        lambda s: s.add(
            InvoiceLine(
                invoice_id=finalized,
                idempotency_key="sneaky",
                content_hash="0" * 64,
                kind="usage",
                price_id="fin_resolution",
                price_version="x",
                description="",
                quantity=D(1),
                currency="USD",
                amount_minor=100,
                amount_precise=D(1),
                breakdown={},
                service_period_start=MARCH.start,
                service_period_end=MARCH.end,
            )
        ),
    ]
    for edit in edits:
        with pytest.raises(billing.InvoiceImmutable), loaded.Session.begin() as session:
            edit(session)
    with loaded.Session() as session:
        inv = invoice(session, finalized)
        assert (inv.status, inv.total_minor, count_lines(session, finalized)) == (
            "finalized",
            39600,
            2,
        )


def test_database_triggers_refuse_edits_from_any_sql(loaded: Ledger, finalized: int) -> None:
    statements = [
        update(InvoiceLine).where(InvoiceLine.invoice_id == finalized).values(amount_minor=1),
        delete(InvoiceLine).where(InvoiceLine.invoice_id == finalized),
        update(Invoice).where(Invoice.id == finalized).values(total_minor=1),
        update(Invoice).where(Invoice.id == finalized).values(status="draft"),
        delete(Invoice).where(Invoice.id == finalized),
        text(
            "INSERT INTO invoice_lines (invoice_id, idempotency_key, content_hash, kind, price_id,"
            " price_version, description, quantity, currency, amount_minor, amount_precise,"
            " breakdown, service_period_start, service_period_end)"
            " SELECT invoice_id, 'raw' || id, content_hash, kind, price_id, price_version, description,"
            " quantity, currency, amount_minor, amount_precise, breakdown, service_period_start,"
            " service_period_end FROM invoice_lines WHERE invoice_id = :id"
        ).bindparams(id=finalized),
    ]
    for statement in statements:
        with pytest.raises(DBAPIError, match="ledger: "), loaded.engine.begin() as conn:
            conn.execute(statement)
    with loaded.Session() as session:
        assert (invoice(session, finalized).total_minor, count_lines(session, finalized)) == (
            39600,
            2,
        )


def test_drafts_stay_editable_by_sql(loaded: Ledger) -> None:
    """The triggers only guard closed invoices (re-rating edits drafts)."""
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00001", MARCH, standard_charges(session))
    (invoice_id,) = result.invoice_ids.values()
    with loaded.engine.begin() as conn:
        conn.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id))
        conn.execute(delete(Invoice).where(Invoice.id == invoice_id))


def test_void_a_finalized_invoice_and_reissue(loaded: Ledger, finalized: int) -> None:
    with loaded.Session.begin() as session:
        voided = billing.void(session, finalized, as_of=utc(2026, 4, 10))
        assert (voided.status, voided.voided_at) == ("void", utc(2026, 4, 10))
    with loaded.Session.begin() as session:  # voiding twice is a no-op
        assert billing.void(session, finalized, as_of=utc(2026, 5, 1)).voided_at == utc(2026, 4, 10)
    with pytest.raises(billing.InvoiceImmutable), loaded.Session.begin() as session:
        billing.finalize(session, finalized, as_of=utc(2026, 5, 1))
    with pytest.raises(billing.InvoiceImmutable), loaded.Session.begin() as session:
        invoice(session, finalized).status = "finalized"
    # The period can be issued again, with corrected charges, as a new invoice.
    with loaded.Session.begin() as session:
        result = billing.post_charges(
            session, "sub_00001", MARCH, standard_charges(session, resolutions=90)
        )
    (new_id,) = result.invoice_ids.values()
    with loaded.Session() as session:
        new = invoice(session, new_id)
        assert (new.status, new.reissue_of_id, new.total_minor) == (
            "draft",
            finalized,
            8910 + 29700,
        )
        assert invoice(session, finalized).total_minor == 39600
        listed = billing.list_invoices(session, customer="cus_00001")
        assert [(i["id"], i["status"]) for i in listed] == [(finalized, "void"), (new_id, "draft")]
