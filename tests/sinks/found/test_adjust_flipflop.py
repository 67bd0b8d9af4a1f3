"""A draft's adjustment lines go A -> none -> B -> none. The second 'none' state has the
same outbox key as the first (hash of no lines), so no event is written and Stripe's
draft keeps B's items."""

import billing
from meterline.jobs.deliver import deliver
from tests.billing.factories import standard_charges
from tests.sinks.conftest import MARCH, World


def post(world, resolutions, rerate):
    with world.ledger.Session() as s:
        ch = standard_charges(s, resolutions=resolutions)
    with world.ledger.Session.begin() as s:
        return billing.post_adjustments(s, "sub_00001", MARCH, ch, rerate=rerate)


def test_flipflop(world: World) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    a = post(world, 130, False)
    deliver(config=world.settings, stripe=world.config())
    post(world, 100, True)  # correction withdrawn: no adjustment lines
    deliver(config=world.settings, stripe=world.config())
    post(world, 150, True)
    deliver(config=world.settings, stripe=world.config())
    post(world, 100, True)  # withdrawn again
    deliver(config=world.settings, stripe=world.config())
    store = world.stripe.store
    draft = next(
        i
        for i in store.invoices.values()
        if i.metadata["meterline_invoice_id"] == str(a.invoice_id)
    )
    items = [store.invoice_items[i].amount for i in draft.item_ids]
    with world.ledger.Session() as s:
        from billing.models import InvoiceLine

        n = s.query(InvoiceLine).filter_by(invoice_id=a.invoice_id, kind="adjustment").count()
    assert items == [] and n == 0
