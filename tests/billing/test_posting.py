"""Idempotent posting: same key + same content is a no-op, different content a conflict
unless a draft is re-rated; totals are the sum of the rounded lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import func, select

import billing
import rating
from billing.models import Invoice, InvoiceLine, RatingRun
from tests.billing.conftest import Ledger
from tests.billing.factories import (
    count_lines,
    invoice,
    line_amount_sum,
    period_of,
    standard_charges,
    usage,
    utc,
    versions,
)

D = Decimal
MARCH = period_of("sub_00001", 2026, 3)


def post(ledger: Ledger, charges: list[billing.ChargeLine], **kw: object) -> billing.PostResult:
    with ledger.Session.begin() as session:
        return billing.post_charges(session, "sub_00001", MARCH, charges, **kw)  # type: ignore[arg-type]


def test_post_creates_a_draft_with_its_lines(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
    result = post(loaded, charges)
    assert (result.invoices_created, result.created, result.unchanged) == (1, 2, 0)
    (invoice_id,) = result.invoice_ids.values()
    with loaded.Session() as session:
        inv = invoice(session, invoice_id)
        assert inv.status == "draft"
        assert (inv.period_start, inv.period_end) == (MARCH.start, MARCH.end)
        assert inv.period_start_local.isoformat() == "2026-03-01"
        assert (inv.currency, inv.total_minor, inv.line_count) == ("USD", 9900 + 29700, 2)
        line = session.get(
            InvoiceLine, result.lines[billing.line_key("sub_00001", MARCH, charges[0])]
        )
        assert line is not None
        assert (line.quantity, line.unit_amount, line.amount_minor) == (D(100), D("0.99"), 9900)
        assert line.amount_precise == D("99.00")
        assert line.price_version_id is not None and line.service_period_start == MARCH.start
        assert line.breakdown[0]["kind"] == "tier"


def test_identical_repost_is_a_no_op_returning_the_same_lines(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
    first = post(loaded, charges)
    again = post(loaded, charges)
    assert (again.created, again.unchanged, again.invoices_created) == (0, 2, 0)
    assert again.lines == first.lines and again.invoice_ids == first.invoice_ids
    # The same numbers spelled differently are the same content.
    respelled = [replace(c, quantity=c.quantity + D("0.000")) for c in charges]
    assert post(loaded, respelled).unchanged == 2
    with loaded.Session() as session:
        assert count_lines(session) == 2
        assert session.scalar(select(func.count()).select_from(Invoice)) == 1


def test_conflicting_repost_is_rejected_and_changes_nothing(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
        changed = standard_charges(session, resolutions=120)
    first = post(loaded, charges)
    with pytest.raises(billing.PostingConflict) as info:
        post(loaded, changed)
    assert info.value.keys == [billing.line_key("sub_00001", MARCH, changed[0])]
    assert "rerate=True" in str(info.value)
    with loaded.Session() as session:
        (invoice_id,) = first.invoice_ids.values()
        assert invoice(session, invoice_id).total_minor == 9900 + 29700
        assert count_lines(session) == 2


def test_new_keys_are_added_to_the_draft(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
        v = versions(session, "standard", "USD")
    post(loaded, charges)
    discount = billing.ChargeLine(
        price_id="fin_resolution",
        price_version=v["fin_resolution"],
        kind="discount",
        quantity=D(1),
        amount=D("-9.90"),
        amount_precise=D("-9.9"),
        currency="USD",
        description="10% off Fin resolutions",
    )
    result = post(loaded, [*charges, discount])
    assert (result.created, result.unchanged) == (1, 2)
    with loaded.Session() as session:
        inv = invoice(session, next(iter(result.invoice_ids.values())))
        assert (inv.subtotal_minor, inv.discount_minor, inv.total_minor) == (39600, -990, 38610)


def test_rerate_of_a_draft_replaces_its_lines(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
        v = versions(session, "standard", "USD")
    first = post(loaded, charges)
    expert = usage(
        "seat_expert", v["seat_expert"], 2, "139", group="seat_type=expert", meter="seats"
    )
    rerated = [usage("fin_resolution", v["fin_resolution"], 150, "0.99"), expert]
    result = post(loaded, rerated, rerate=True)
    assert (result.created, result.replaced, result.removed, result.unchanged) == (1, 1, 1, 0)
    with loaded.Session() as session:
        (invoice_id,) = result.invoice_ids.values()
        assert first.invoice_ids == result.invoice_ids
        lines = session.scalars(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id)
        ).all()
        assert sorted(line.idempotency_key for line in lines) == sorted(result.lines)
        assert {line.price_id: line.amount_minor for line in lines} == {
            "fin_resolution": 14850,
            "seat_expert": 27800,
        }
        assert (
            invoice(session, invoice_id).total_minor
            == 14850 + 27800
            == line_amount_sum(session, invoice_id)
        )
    # Re-rating with the same set again is a no-op, and unchanged lines keep their ids.
    again = post(loaded, rerated, rerate=True)
    assert (again.unchanged, again.changed) == (2, False)
    assert again.lines == result.lines


def test_rerate_is_one_transaction(loaded: Ledger) -> None:
    """A conflict anywhere in a bulk post leaves every period as it was."""
    with loaded.Session() as session:
        charges = standard_charges(session)
        v = versions(session, "volume", "EUR")
    post(loaded, charges)
    april = period_of("sub_00001", 2026, 4)
    globex = period_of("sub_00002", 2026, 3)
    with pytest.raises(billing.PostingConflict), loaded.Session.begin() as session:
        billing.post_charges_bulk(
            session,
            [
                billing.ChargeBatch("sub_00001", april, charges),
                billing.ChargeBatch(
                    "sub_00002",
                    globex,
                    [usage("seat_advanced", v["seat_advanced"], 1, "79", "EUR", meter="seats")],
                ),
                billing.ChargeBatch("sub_00001", MARCH, standard_charges(session, resolutions=7)),
            ],
        )
    with loaded.Session() as session:
        assert count_lines(session) == 2
        assert session.scalar(select(func.count()).select_from(Invoice)) == 1


def test_total_is_the_sum_of_rounded_lines(loaded: Ledger) -> None:
    with loaded.Session() as session:
        v = versions(session, "standard", "USD")
    # Three lines of half a cent each: each rounds up to a cent (3 cents), while
    # rounding their precise sum once would give 2 cents.
    lines = [
        usage(
            "seat_essential",
            v["seat_essential"],
            D("0.5"),
            "0.01",
            group="seat_type=essential",
            meter="seats",
        ),
        usage(
            "seat_advanced",
            v["seat_advanced"],
            D("0.5"),
            "0.01",
            group="seat_type=advanced",
            meter="seats",
        ),
        usage("fin_resolution", v["fin_resolution"], D("0.5"), "0.01"),
    ]
    precise = sum((c.amount_precise for c in lines), D(0))
    result = post(loaded, lines)
    with loaded.Session() as session:
        inv = invoice(session, next(iter(result.invoice_ids.values())))
        assert (
            inv.total_minor
            == sum(c.amount_minor for c in lines)
            == line_amount_sum(session, inv.id)
        )
        assert inv.total_minor == 3
        assert (precise * 100).quantize(D(1), rounding=ROUND_HALF_UP) == 2


def test_bulk_posting_over_many_subscriptions(loaded: Ledger) -> None:
    with loaded.Session() as session:
        std = standard_charges(session)
        vol = versions(session, "volume", "EUR")
        com = versions(session, "committed", "USD")
    batches = [
        billing.ChargeBatch("sub_00001", period_of("sub_00001", 2026, month), std)
        for month in (2, 3, 4)
    ] + [
        billing.ChargeBatch(
            "sub_00002",
            period_of("sub_00002", 2026, 3),
            [
                usage(
                    "seat_advanced",
                    vol["seat_advanced"],
                    4,
                    "79",
                    "EUR",
                    group="seat_type=advanced",
                    meter="seats",
                )
            ],
        ),
        billing.ChargeBatch(
            "sub_00003",
            period_of("sub_00003", 2026, 3),
            [
                usage("platform_fee", com["platform_fee"], 1, "250", meter=None, kind="flat"),
                billing.ChargeLine(
                    price_id="minimum_commitment",
                    price_version="plan",
                    kind="minimum_true_up",
                    quantity=D(1),
                    amount=D("1750.00"),
                    amount_precise=D("1750"),
                    currency="USD",
                    description="Minimum commitment true-up",
                ),
            ],
        ),
    ]
    with loaded.Session.begin() as session:
        result = billing.post_charges_bulk(session, batches)
    assert (result.invoices, result.invoices_created, result.created) == (5, 5, 9)
    with loaded.Session.begin() as session:
        again = billing.post_charges_bulk(session, list(reversed(batches)))
    assert (again.created, again.unchanged, again.invoices_created) == (0, 9, 0)
    with loaded.Session() as session:
        totals = dict(
            session.execute(
                select(Invoice.id, Invoice.total_minor).where(Invoice.subscription_id.isnot(None))
            ).all()
        )
        assert sorted(totals.values()) == sorted([39600, 39600, 39600, 31600, 200000])
        true_up = session.scalars(
            select(InvoiceLine).where(InvoiceLine.kind == "minimum_true_up")
        ).one()
        assert true_up.price_version_id is None


def test_bad_input_is_refused_before_anything_is_written(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
        v = versions(session, "standard", "USD")
    cases: list[tuple[str, billing.Period, list[billing.ChargeLine], type[Exception], str]] = [
        ("sub_99999", MARCH, charges, billing.UnknownSubscription, "load the customers file"),
        (
            "sub_00001",
            billing.Period(MARCH.start, MARCH.end + timedelta(days=1)),
            charges,
            billing.LedgerError,
            "not a billing period",
        ),
        ("sub_00001", period_of("sub_00001", 2025, 12), charges, billing.LedgerError, "not active"),
        (
            "sub_00001",
            MARCH,
            [usage("fin_resolution", "2026-01-01#000000000000", 1, "0.99")],
            billing.UnknownPriceVersion,
            "not in plan standard",
        ),
        (
            "sub_00001",
            MARCH,
            [usage("fin_resolution", v["fin_resolution"], 1, "0.92", "EUR")],
            billing.LedgerError,
            "bills in USD",
        ),
        (
            "sub_00001",
            MARCH,
            [charges[0], charges[0]],
            billing.LedgerError,
            "share the idempotency key",
        ),
        (
            "sub_00001",
            MARCH,
            [usage("fin_resolution", v["fin_resolution"], 1, "0.99", kind="adjustment")],
            billing.LedgerError,
            "post_adjustments",
        ),
    ]
    for sub, period, batch, error, message in cases:
        with pytest.raises(error, match=message), loaded.Session.begin() as session:
            billing.post_charges(session, sub, period, batch)
    with loaded.Session() as session:
        assert count_lines(session) == 0


def test_lines_record_their_rating_run(loaded: Ledger) -> None:
    with loaded.Session.begin() as session:
        run = billing.record_rating_run(
            session,
            period_start=utc(2026, 4, 1),
            period_end=utc(2026, 4, 2),
            run_at=utc(2026, 4, 2, 1),
            code_version="abc123",
            inputs_hash="f" * 64,
        )
    with loaded.Session.begin() as session:
        result = billing.post_charges(
            session, "sub_00001", MARCH, standard_charges(session), rating_run_id=run
        )
    with loaded.Session() as session:
        lines = session.scalars(
            select(InvoiceLine).where(InvoiceLine.id.in_(result.lines.values()))
        ).all()
        assert {line.rating_run_id for line in lines} == {run}
        stored = session.get(RatingRun, run)
        assert stored is not None and stored.run_at == utc(2026, 4, 2, 1)


def test_void_then_reissue_links_the_new_invoice(loaded: Ledger) -> None:
    with loaded.Session() as session:
        charges = standard_charges(session)
    first = post(loaded, charges)
    (old_id,) = first.invoice_ids.values()
    with loaded.Session.begin() as session:
        billing.void(session, old_id, as_of=utc(2026, 3, 20))
    reissued = post(loaded, charges)
    (new_id,) = reissued.invoice_ids.values()
    assert new_id != old_id and reissued.invoices_created == 1 and reissued.created == 2
    with loaded.Session() as session:
        assert invoice(session, new_id).reissue_of_id == old_id
        assert invoice(session, old_id).status == "void"
        assert count_lines(session, old_id) == count_lines(session, new_id) == 2
        detail = billing.invoice_detail(session, old_id)
        assert detail["reissued_by"] == [new_id]


@pytest.mark.skipif(
    not all(hasattr(rating, name) for name in ("parse_price", "rate")),
    reason="the rating engine is not available",
)
def test_a_rated_charge_maps_onto_a_charge_line(loaded: Ledger) -> None:
    """What the pipeline does: price from the ledger's catalog, rate, post, show tiers."""
    globex = period_of("sub_00002", 2026, 3)
    with loaded.Session() as session:
        (fin,) = [
            v
            for v in billing.price_versions_in_effect(
                session, "volume", "EUR", globex.local_start("Europe/Dublin")
            )
            if v.price_id == "fin_resolution"
        ]
    price = rating.parse_price({**fin.body, "currency": fin.currency}, name=fin.price_id)
    rated = rating.rate(price, D(1500))
    charge = billing.ChargeLine(
        price_id=fin.price_id,
        price_version=fin.version,
        kind="usage",
        meter=fin.meter,
        quantity=rated.quantity,
        amount=rated.amount,
        amount_precise=rated.amount_precise,
        currency=rated.currency,
        breakdown=[e.model_dump(mode="json", exclude_none=True) for e in rated.breakdown],
        description=rated.explanation,
    )
    with loaded.Session.begin() as session:
        result = billing.post_charges(session, "sub_00002", globex, [charge])
    with loaded.Session() as session:
        detail = billing.invoice_detail(session, next(iter(result.invoice_ids.values())))
    (line,) = detail["lines"]
    assert line["amount"] == "1330.00"  # 1000 x 0.92 + 500 x 0.82
    assert [(t["tier"], t["units"]) for t in line["tiers"]] == [(1, "1000"), (2, "500")]
