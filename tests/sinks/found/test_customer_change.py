"""The customers file gives cus_00001 a Stripe customer id after its April draft's
adjustments reached Stripe under the customer the sink created. April's finalization then
bills the old Stripe customer, not the one the customers file names."""

import stripe as sdk

import billing
from billing.models import Customer
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver
from tests.billing.factories import standard_charges
from tests.sinks.conftest import API_KEY, APRIL, MARCH, World


def test_new_stripe_customer_id(world: World) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    with world.ledger.Session() as s:
        ch = standard_charges(s, resolutions=130)
    with world.ledger.Session.begin() as s:
        adj = billing.post_adjustments(s, "sub_00001", MARCH, ch)
    assert deliver(config=world.settings, stripe=world.config()).ok
    c = sdk.StripeClient(API_KEY.get_secret_value(), base_addresses={"api": world.stripe.base_url})
    new = c.v1.customers.create(params={"name": "Acme 1 (new account)"})
    with world.ledger.Session.begin() as s:
        s.query(Customer).filter_by(external_id="cus_00001").one().stripe_customer_id = new.id
    world.post("sub_00001", APRIL)
    world.finalize(adj.invoice_id, APRIL)
    assert deliver(config=world.settings, stripe=world.config()).ok
    april = next(
        i
        for i in world.stripe.store.invoices.values()
        if i.metadata["meterline_invoice_id"] == str(adj.invoice_id)
    )
    rec = reconcile_stripe("2026-04", config=world.settings, stripe=world.config())
    assert april.customer == new.id
    assert rec.ok, rec.differences
