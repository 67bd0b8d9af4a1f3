"""A second Stripe invoice carrying our meterline_invoice_id (a duplicate: from a lost record
plus expired idempotency keys, a second deliverer, a person) bills the customer twice;
reconcile must report it."""

import stripe as sdk
from sqlalchemy import delete

import billing
from billing.models import ExternalRef
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, replay_from
from tests.billing.factories import CUSTOMERS, standard_charges, write_customers
from tests.sinks.conftest import API_KEY, MARCH, World


def test_duplicate_stripe_invoice_is_not_reported(world: World) -> None:
    iid = world.post("sub_00001", MARCH)
    world.finalize(iid)
    assert deliver(config=world.settings, stripe=world.config()).ok
    (inv,) = world.stripe.store.invoices.values()
    c = sdk.StripeClient(API_KEY.get_secret_value(), base_addresses={"api": world.stripe.base_url})
    dup = c.v1.invoices.create(
        params={
            "customer": inv.customer,
            "currency": "usd",
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "metadata": {"meterline_invoice_id": str(iid)},
        }
    )
    c.v1.invoices.add_lines(
        dup.id,
        params={
            "lines": [
                {"amount": 39600, "description": "dup", "metadata": {"meterline_line_id": "1"}}
            ]
        },
    )
    c.v1.invoices.finalize_invoice(dup.id)
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert not rec.ok, "two open Stripe invoices for one ledger invoice; reconcile says ok"


def test_quote_in_customer_id_double_bills_after_lost_record(world: World, tmp_path) -> None:
    row = {
        **CUSTOMERS[0],
        "customer_id": "cus_o'brien",
        "subscription_id": "sub_odd",
        "name": "O'Brien",
        "discounts": [],
    }
    with world.ledger.Session.begin() as s:
        billing.load_customers_file(s, write_customers(tmp_path / "c.jsonl", [row]))
    with world.ledger.Session.begin() as s:
        (iid,) = billing.post_charges(s, "sub_odd", MARCH, standard_charges(s)).invoice_ids.values()
    world.finalize(iid)
    assert deliver(config=world.settings, stripe=world.config()).ok
    with world.ledger.Session.begin() as s:
        s.execute(delete(ExternalRef))  # as if the record was lost (crash after Stripe answered)
    world.stripe.store.idempotency.clear()  # keys expire after 24 h
    replay_from(1, config=world.settings)
    assert deliver(config=world.settings, stripe=world.config()).ok
    store = world.stripe.store
    open_ = [i for i in store.invoices.values() if i.status == "open"]
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert len(open_) == 1
    assert rec.ok, rec.differences
