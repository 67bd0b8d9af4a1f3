"""A void ledger invoice whose Stripe invoice is paid and never credited (the void event is
parked/undelivered, or the credit note was voided in Stripe) must be a reconcile difference:
the customer paid for an invoice the ledger says bills nothing."""

from datetime import timedelta

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver
from tests.sinks.conftest import GRACE, MARCH, World


def test_void_in_ledger_paid_in_stripe_without_credit(world: World) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    assert deliver(config=world.settings, stripe=world.config()).ok
    (inv,) = world.stripe.store.invoices.values()
    world.stripe.store.pay_invoice(inv.id, {"paid_out_of_band": True})
    with world.ledger.Session.begin() as s:
        billing.void(s, march, as_of=MARCH.end + GRACE + timedelta(days=1))
    # the void event is NOT delivered (Stripe down / not configured yet / parked)
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert not rec.ok, "void in ledger, paid in Stripe, no credit note: reconcile says ok"


def test_void_in_ledger_uncollectible_in_stripe(world: World) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    assert deliver(config=world.settings, stripe=world.config()).ok
    (inv,) = world.stripe.store.invoices.values()
    inv.status = "uncollectible"  # marked uncollectible in Stripe's dashboard
    with world.ledger.Session.begin() as s:
        billing.void(s, march, as_of=MARCH.end + GRACE + timedelta(days=1))
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    # an uncollectible invoice can still be paid by the customer in Stripe
    assert not rec.ok
