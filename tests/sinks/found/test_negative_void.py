"""A negative-total invoice (a correction larger than the period's charges) is paid at
finalization in Stripe and credits the customer's balance. Voiding it in the ledger must
take that credit back; otherwise the re-issue credits it a second time."""

from datetime import timedelta

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver
from tests.billing.factories import standard_charges
from tests.sinks.conftest import APRIL, GRACE, MARCH, World


def test_void_of_negative_invoice(world: World) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    with world.ledger.Session() as s:
        corrected = standard_charges(s, resolutions=100, seats="0")  # seats refunded: -29700
    with world.ledger.Session.begin() as s:
        adj = billing.post_adjustments(s, "sub_00001", MARCH, corrected)
    with world.ledger.Session() as s:
        april_charges = standard_charges(s, resolutions=10, seats="0")  # 990
    with world.ledger.Session.begin() as s:
        billing.post_charges(s, "sub_00001", APRIL, april_charges)
    world.finalize(adj.invoice_id, APRIL)
    assert deliver(config=world.settings, stripe=world.config()).ok
    store = world.stripe.store
    (cust,) = store.customers.values()
    assert cust.balance == -(29700 - 990)
    # April is voided in the ledger: it bills nothing any more.
    with world.ledger.Session.begin() as s:
        billing.void(s, adj.invoice_id, as_of=APRIL.end + GRACE + timedelta(days=1))
    r = deliver(config=world.settings, stripe=world.config())
    assert r.ok, r.errors
    assert cust.balance == 0  # the credit taken back by a balance transaction
    # Re-issue of April: close bills it again (same charges, the March correction moved).
    with world.ledger.Session.begin() as s:
        billing.post_charges(s, "sub_00001", APRIL, april_charges)
    from sqlalchemy import select

    from billing.models import Invoice

    with world.ledger.Session() as s:
        reissue = s.scalar(select(Invoice.id).where(Invoice.reissue_of_id == adj.invoice_id))
        total = s.scalar(select(Invoice.total_minor).where(Invoice.id == reissue))
    assert total == -(29700 - 990)
    world.finalize(reissue, APRIL)
    assert deliver(config=world.settings, stripe=world.config()).ok
    rec = reconcile_stripe("2026-04", config=world.settings, stripe=world.config())
    assert rec.ok, rec.differences
    # The ledger credits the customer 28,710 once; Stripe must hold that, not twice.
    assert cust.balance == -(29700 - 990), cust.balance
