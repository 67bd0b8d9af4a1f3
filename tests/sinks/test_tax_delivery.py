"""The tax sink end to end (docs/tax.md): a ledger whose invoices are taxed through the
AvaTax stand-in by the official SDK, then delivered to the Stripe stand-in.

Finalization marks the tax pending and Stripe waits; the tax sink commits one
transaction per invoice (and one per corrected earlier invoice, referencing it), the
ledger records the tax as AvaTax returned it (checked against the rate table, computed
here on its own), and Stripe then gets the invoice. Faults on AvaTax's side (a timeout
after the transaction was committed, a 500, a dropped answer, a code AvaTax already
holds) never make a second transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import billing
from billing.db import session_factory
from billing.models import InvoiceLine, InvoiceTax, OutboxDelivery, OutboxEvent, TaxDocument
from billing.outbox.delivery import list_deliveries, replay
from billing.tax import customer_tax_profile
from meterline.audit.stripe import reconcile_stripe
from meterline.connections import invoice_sinks
from meterline.demo.avatax_standin import AvaTaxStandIn, Jurisdiction, RateTable
from meterline.demo.stripe_standin import StripeStandIn
from meterline.jobs.deliver import deliver
from meterline.settings import Settings, load_settings
from meterline.sinks.stripe import StripeConfig
from tests.billing.conftest import Ledger, ledger, ledger_url  # noqa: F401
from tests.billing.factories import CATALOG, CUSTOMERS, period_of, standard_charges, write_customers

MARCH = period_of("sub_00001", 2026, 3)
APRIL = period_of("sub_00001", 2026, 4)
GRACE = timedelta(days=3)
ACCOUNT, LICENSE = "2000000001", "standin-license-key"
NY = (Decimal("0.04"), Decimal("0.045"))
RATES = RateTable(
    places={
        ("US", "NY"): (
            Jurisdiction("NEW YORK", "STA", NY[0], "NY STATE TAX"),
            Jurisdiction("NEW YORK CITY", "CIT", NY[1], "NY CITY TAX"),
        ),
    }
)
ORIGIN = {
    "line1": "1 Main St",
    "city": "Albany",
    "region": "NY",
    "postal_code": "12207",
    "country": "US",
}
TAX_CODES = {"fin_resolution": "SW054000", "seat_advanced": "SW052000"}


def taxed_catalog(path: Path) -> Path:
    """The demo catalog with a tax code on two prices (in every plan that has them)."""
    text = CATALOG.read_text()
    for price, meter in (("fin_resolution", "fin_resolution"), ("seat_advanced", "seats")):
        head = f"      - id: {price}\n        meter: {meter}\n"
        text = text.replace(head, head + f"        tax_code: {TAX_CODES[price]}\n")
    path.write_text(text)
    return path


@dataclass
class TaxWorld:
    ledger: Ledger
    avatax: AvaTaxStandIn
    stripe: StripeStandIn
    settings: Settings
    Session: sessionmaker[Session]

    def post(self, period: billing.Period, resolutions: int = 100) -> int:
        with self.Session.begin() as session:
            result = billing.post_charges(
                session, "sub_00001", period, standard_charges(session, resolutions=resolutions)
            )
        (invoice_id,) = result.invoice_ids.values()
        return invoice_id

    def finalize(self, invoice_id: int, period: billing.Period) -> None:
        with self.Session.begin() as session:
            billing.finalize(session, invoice_id, as_of=period.end + GRACE, grace=GRACE)

    def tax(self, **kw: Any) -> Any:
        return deliver("avalara", config=self.settings, **kw)

    def to_stripe(self) -> Any:
        config = StripeConfig(api_key=SecretStr("sk_test_meterline"), api_base=self.stripe.base_url)
        return deliver("stripe", config=self.settings, stripe=config)

    def stripe_items(self, invoice_id: int) -> list[int]:
        """The amounts of the items of the ledger invoice's Stripe invoice."""
        store = self.stripe.store
        with store.lock:
            (found,) = [
                i
                for i in store.invoices.values()
                if i.metadata.get("meterline_invoice_id") == str(invoice_id)
            ]
            return [store.invoice_items[item].amount for item in found.item_ids]

    def line_amounts(self, invoice_id: int) -> list[int]:
        with self.ledger.Session() as session:
            return list(
                session.scalars(
                    select(InvoiceLine.amount_minor)
                    .where(InvoiceLine.invoice_id == invoice_id)
                    .order_by(InvoiceLine.id)
                )
            )

    def state(self, invoice_id: int) -> InvoiceTax:
        with self.ledger.Session() as session:
            found = session.get(InvoiceTax, invoice_id)
            assert found is not None
            return found


def expected_tax(world: TaxWorld, invoice_id: int) -> int:
    """The invoice's tax from the rate table, line by line and jurisdiction by
    jurisdiction, each rounded half-up to the cent (the stand-in's rule, computed here
    on its own)."""
    with world.ledger.Session() as session:
        amounts = session.scalars(
            select(InvoiceLine.amount_minor).where(InvoiceLine.invoice_id == invoice_id)
        ).all()
    cents = Decimal("0.01")
    return sum(
        int((Decimal(a) / 100 * rate).quantize(cents, ROUND_HALF_UP) * 100)
        for a in amounts
        for rate in NY
    )


#: AvaTax's side needs one ledger: these tests run on SQLite only.
ONE_LEDGER = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)


@pytest.fixture
def tax_world(ledger: Ledger, tmp_path: Path) -> Iterator[TaxWorld]:  # noqa: F811
    yield from make_world(ledger, tmp_path)


@pytest.fixture
def both_ledgers_world(ledger: Ledger, tmp_path: Path) -> Iterator[TaxWorld]:  # noqa: F811
    yield from make_world(ledger, tmp_path)


def make_world(ledger: Ledger, tmp_path: Path) -> Iterator[TaxWorld]:  # noqa: F811
    address = {
        "line1": "350 5th Ave",
        "city": "New York",
        "region": "NY",
        "postal_code": "10118",
        "country": "US",
    }
    row = {
        **CUSTOMERS[0],
        "billing_address": address,
        "tax_ids": [{"type": "us_ein", "value": "12-3456789"}],
    }
    path = write_customers(tmp_path / "customers.jsonl", [row])
    with ledger.Session.begin() as session:
        billing.load_catalog(session, taxed_catalog(tmp_path / "catalog.yaml"))
        billing.load_customers_file(session, path)
    with (
        AvaTaxStandIn(rates=RATES, accounts={ACCOUNT: LICENSE}) as avatax,
        StripeStandIn() as stripe,
    ):
        settings = load_settings(
            ledger_url=ledger.url,
            tax_sink="avalara",
            avalara_account_id=ACCOUNT,
            avalara_license_key=LICENSE,
            avalara_api_base=avatax.base_url,
            avalara_company_code="DEFAULT",
            avalara_origin_address=ORIGIN,
            avalara_timeout_s=0.5,
            avalara_request_attempts=2,
        )
        make = session_factory(ledger.engine, invoice_sinks=invoice_sinks(settings))
        yield TaxWorld(ledger, avatax, stripe, settings, make)


def test_finalized_waits_for_tax_then_reaches_stripe_and_void_voids(
    both_ledgers_world: TaxWorld,
) -> None:
    world = both_ledgers_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    assert world.state(march).status == "pending"
    with world.ledger.Session() as session:
        sinks = session.scalars(
            select(OutboxDelivery.sink).join(OutboxEvent).where(OutboxEvent.invoice_id == march)
        ).all()
    assert sorted(sinks) == ["avalara", "stripe"]

    waiting = world.to_stripe()
    assert waiting.delivered == 0 and waiting.left == 1 and world.stripe.store.invoices == {}
    assert waiting.waiting_for_tax == 1
    assert "1 left undelivered (1 waiting for their invoice's tax: `meterline outbox deliver" in (
        waiting.summary()
    )
    with world.ledger.Session() as session:  # `outbox list` says why Stripe waits
        rows = {row.sink: row for row in list_deliveries(session)}
    assert rows["stripe"].waiting_for_tax and not rows["avalara"].waiting_for_tax

    report = world.tax()
    assert report.ok and report.delivered == 1 and report.transactions_created == 1
    assert world.avatax.store.live() == [(f"meterline-{march}", "SalesInvoice", "Committed")]
    sent = world.avatax.store.transactions[("DEFAULT", f"meterline-{march}", "SalesInvoice")].model
    assert sent["addresses"]["shipTo"]["postalCode"] == "10118"
    assert sent["businessIdentificationNo"] == "12-3456789"
    assert {line.get("taxCode") for line in sent["lines"]} >= set(TAX_CODES.values())
    finalized_day = (MARCH.end + GRACE).astimezone(ZoneInfo("America/New_York")).date()
    assert sent["date"] == finalized_day.isoformat()

    tax = world.state(march)
    want = expected_tax(world, march)
    with world.ledger.Session() as session:
        invoice = session.get(billing.models.Invoice, march)
        assert invoice is not None
        total = invoice.total_minor
        doc = session.scalars(select(TaxDocument).where(TaxDocument.invoice_id == march)).one()
    assert (tax.status, tax.tax_minor, tax.total_minor) == ("recorded", want, total + want)
    assert doc.tax_minor == want and doc.status == "Committed"

    delivered = world.to_stripe()
    assert delivered.delivered == 1 and len(world.stripe.store.invoices) == 1
    # Stripe gets the lines and the tax as one more item: it collects lines + tax.
    assert world.stripe_items(march) == [*world.line_amounts(march), want]
    config = StripeConfig(api_key=SecretStr("sk_test_meterline"), api_base=world.stripe.base_url)
    reconciled = reconcile_stripe("2026-03", config=world.settings, stripe=config)
    assert reconciled.ok and reconciled.tax_lines == 1
    lines = len(world.line_amounts(march))
    assert f"{lines} line(s) and 1 of tax in the ledger; {lines + 1} item(s)" in (
        reconciled.summary()
    )
    with world.ledger.Session() as session:
        assert not any(row.waiting_for_tax for row in list_deliveries(session))

    with world.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE + timedelta(days=1))
    voided = world.tax()
    assert voided.ok and voided.transactions_voided == 1
    assert world.avatax.store.live() == [(f"meterline-{march}", "SalesInvoice", "Cancelled")]
    assert world.state(march).status == "voided"
    # Delivering again does nothing more: the events are delivered.
    again = world.tax()
    assert again.delivered == 0 and world.avatax.store.done["create"] == 1


@ONE_LEDGER
def test_late_usage_is_its_own_transaction_referencing_the_original(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH, resolutions=100)
    world.finalize(march, MARCH)
    world.tax()
    with world.Session.begin() as session:
        late = billing.post_adjustments(
            session, "sub_00001", MARCH, standard_charges(session, resolutions=130)
        )
    april = world.post(APRIL, resolutions=50)
    assert late.invoice_id == april
    world.finalize(april, APRIL)
    report = world.tax()
    assert report.ok and report.transactions_created == 2, report.summary()
    store = world.avatax.store
    adjustment = store.transactions[("DEFAULT", f"meterline-{april}-adj-{march}", "SalesInvoice")]
    assert adjustment.model["referenceCode"] == f"meterline-{march}"
    with world.ledger.Session() as session:
        lines = session.scalars(
            select(InvoiceLine).where(
                InvoiceLine.invoice_id == april, InvoiceLine.kind == "adjustment"
            )
        ).all()
    assert [line["lineAmount"] for line in adjustment.lines] == [
        Decimal(line.amount_minor) / 100 for line in lines
    ]
    tax = world.state(april).tax_minor
    assert tax == expected_tax(world, april)
    assert world.to_stripe().delivered == 3  # March, the draft's adjustments, April
    # April's own tax and its corrections' tax, each its document's item.
    with world.ledger.Session() as session:
        by_document = session.scalars(
            select(TaxDocument.tax_minor)
            .where(TaxDocument.invoice_id == april)
            .order_by(TaxDocument.id)
        ).all()
    assert sum(by_document) == tax and len(by_document) == 2
    assert world.stripe_items(april) == [*world.line_amounts(april), *by_document]


@ONE_LEDGER
@pytest.mark.parametrize(
    ("fault", "on"),
    [
        ("timeout", "POST"),  # committed, the answer came too late: the retry finds it
        ("drop", "POST"),  # committed, the answer was lost
        ("error_500", "POST"),  # AvaTax failed before acting
        ("error_500", "GET"),  # the lookup failed
    ],
)
def test_faults_never_make_two_transactions(tax_world: TaxWorld, fault: str, on: str) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    code = f"meterline-{march}"
    world.avatax.plan(fault, when=lambda method, path: method == on, times=1, delay=1.0)
    report = world.tax()
    if not report.ok:  # every try of one request failed: the next run finishes it
        report = world.tax()
    assert report.ok, report.summary()
    assert world.avatax.injected[fault] == 1
    assert world.avatax.store.committed_count(code) == 1
    assert world.avatax.store.live() == [(code, "SalesInvoice", "Committed")]
    assert world.state(march).tax_minor == expected_tax(world, march)


@ONE_LEDGER
def test_a_code_avatax_already_holds_is_fetched_not_created_again(tax_world: TaxWorld) -> None:
    """A crash after AvaTax committed and before the ledger recorded: AvaTax holds the
    transaction, the ledger says pending; the next delivery finds it (the create answers
    TransactionAlreadyExists when the lookup misses it, here forced by a 500 on GET)."""
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    gets = iter(range(100))

    def after_the_first_get(method: str, path: str) -> bool:
        return method == "GET" and next(gets) > 0

    world.avatax.plan("drop", when=lambda method, path: method == "POST", times=1)
    world.avatax.plan("error_500", when=after_the_first_get, times=2)
    first = world.tax()
    assert not first.ok  # the create's answer was lost; the lookup failed twice
    with world.ledger.Session.begin() as session:  # retry now, not after the backoff
        session.execute(
            OutboxDelivery.__table__.update().values(next_attempt_at=None)  # type: ignore[attr-defined]
        )
    second = world.tax()
    assert second.ok, second.summary()
    assert world.avatax.store.committed_count(f"meterline-{march}") == 1
    assert world.state(march).status == "recorded"


@ONE_LEDGER
def test_other_content_under_our_code_is_parked(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    with world.avatax.store.lock:
        world.avatax.store.create(
            {
                "type": "SalesInvoice",
                "code": f"meterline-{march}",
                "companyCode": "DEFAULT",
                "date": "2026-04-04",
                "customerCode": "someone-else",
                "commit": True,
                "addresses": {"singleLocation": {"country": "US", "region": "NY"}},
                "lines": [{"number": "1", "amount": Decimal("5")}],
            }
        )
    report = world.tax()
    assert report.parked == 1 and "with other content" in report.errors[0]
    assert world.state(march).status == "pending"
    assert world.to_stripe().delivered == 0


@ONE_LEDGER
def test_a_customer_without_a_billing_address_is_parked_with_what_to_do(
    tax_world: TaxWorld, tmp_path: Path
) -> None:
    world = tax_world
    path = write_customers(tmp_path / "plain.jsonl", [CUSTOMERS[0]])
    with world.ledger.Session.begin() as session:
        billing.load_customers_file(session, path)
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    report = world.tax()
    assert report.parked == 1
    assert "no billing_address" in report.errors[0] and "customers file" in report.errors[0]
    assert "`meterline outbox replay --from ID --sink avalara`" in report.summary()
    assert world.avatax.store.live() == []


@ONE_LEDGER
def test_without_the_tax_sink_nothing_changes(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH)
    with world.ledger.Session.begin() as session:  # a session made without the tax sink
        billing.finalize(session, march, as_of=MARCH.end + GRACE, grace=GRACE)
    with world.ledger.Session() as session:
        assert session.get(InvoiceTax, march) is None
        sinks = session.scalars(select(OutboxDelivery.sink)).all()
    assert sinks == ["stripe"]
    assert world.to_stripe().delivered == 1


@ONE_LEDGER
def test_the_tax_recorded_is_in_the_invoice_document(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    world.tax()
    with world.ledger.Session() as session:
        detail = billing.invoice_detail(session, march)
    tax = detail["tax"]
    assert tax["status"] == "recorded" and tax["tax_minor"] == expected_tax(world, march)
    assert tax["total_minor"] == detail["total_minor"] + tax["tax_minor"]
    assert [d["code"] for d in tax["documents"]] == [f"meterline-{march}"]
    json.dumps(tax)  # plain JSON
    # A replay finds the transaction and records it again: no invoice newly taxed.
    with world.ledger.Session.begin() as session:
        replay(session, from_id=1, sink="avalara")
    again = world.tax()
    assert again.delivered == 1 and again.invoices_taxed == 0, again.summary()
    assert again.transactions_created == 0


@ONE_LEDGER
def test_the_tax_profile_is_stored_and_a_reload_changes_nothing(
    tax_world: TaxWorld, tmp_path: Path
) -> None:
    with tax_world.ledger.Session.begin() as session:
        again = billing.load_customers_file(session, tmp_path / "customers.jsonl")
        profile = customer_tax_profile(session, "cus_00001")
    assert not again.changed
    assert profile is not None and profile.billing_address == {
        "line1": "350 5th Ave",
        "city": "New York",
        "region": "NY",
        "postal_code": "10118",
        "country": "US",
    }
    assert profile.tax_ids == [{"type": "us_ein", "value": "12-3456789"}]


@ONE_LEDGER
def test_an_invoice_voided_before_its_tax_gets_no_transaction(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    with world.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE)
    report = world.tax()
    assert report.ok and report.delivered == 2, report.summary()  # finalized, then voided
    assert world.avatax.store.live() == [] and world.state(march).status == "voided"
    assert world.to_stripe().delivered == 2


@ONE_LEDGER
def test_the_export_waits_for_the_tax(tax_world: TaxWorld) -> None:
    from meterline.jobs.export.closed import PeriodNotClosed, check_closed

    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    with world.ledger.Session() as session, pytest.raises(PeriodNotClosed) as held:
        check_closed(session, "2026-03", world.settings)
    assert f"the tax of 1 invoice(s) is pending (first: invoice {march})" in str(held.value)
    world.tax()
    with world.ledger.Session() as session:
        assert check_closed(session, "2026-03", world.settings) is not None


def test_an_avatax_refusal_reads_as_one_sentence_naming_what_to_do() -> None:
    from meterline.sinks.tax.avatax import AvaTaxError
    from meterline.sinks.tax.sink import failure

    refused = failure(AvaTaxError(401, "AuthenticationException", "Authentication failed.", []))
    assert str(refused) == (
        "AvaTax 401 AuthenticationException: Authentication failed: check"
        " METERLINE_AVALARA_ACCOUNT_ID and METERLINE_AVALARA_LICENSE_KEY"
    )
    parked = failure(AvaTaxError(400, "InvalidAddress", "The address is not deliverable.", []))
    assert str(parked).endswith(
        "not deliverable: fix the cause, then `meterline outbox replay --from ID --sink avalara`"
    )
