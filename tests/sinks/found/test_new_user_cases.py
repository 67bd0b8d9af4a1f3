"""What a new user hit, kept as tests: a finalize event replayed onto a Stripe invoice
someone voided in Stripe, and a recorded Stripe customer the Stripe account no longer has
(another account or key, or deleted)."""

from __future__ import annotations

from datetime import timedelta

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.demo.stripe_standin import StripeStandIn
from meterline.jobs.deliver import deliver, outbox_rows, replay_from
from tests.sinks.conftest import GRACE, MARCH, World


def test_a_replay_onto_an_invoice_voided_in_stripe_is_parked(world: World) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    assert deliver(config=world.settings, stripe=world.config()).ok
    (inv,) = world.stripe.store.invoices.values()
    world.stripe.store.void_invoice(inv.id, {})  # a person, in Stripe's dashboard
    replay_from(1, config=world.settings)
    report = deliver(config=world.settings, stripe=world.config())
    assert (report.delivered, report.parked) == (0, 1)
    (row,) = outbox_rows(config=world.settings)
    assert "is void in Stripe, but not in the ledger" in (row.last_error or "")
    assert not reconcile_stripe("2026-03", config=world.settings, stripe=world.config()).ok


def test_a_replay_after_the_ledger_voided_it_is_superseded(world: World) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    with world.ledger.Session.begin() as session:
        billing.void(session, invoice_id, as_of=MARCH.end + GRACE + timedelta(days=1))
    assert deliver(config=world.settings, stripe=world.config()).ok
    (inv,) = world.stripe.store.invoices.values()
    assert inv.status == "void"
    replay_from(1, config=world.settings)
    report = deliver(config=world.settings, stripe=world.config())
    assert report.ok and report.delivered == 2
    assert reconcile_stripe("2026-03", config=world.settings, stripe=world.config()).ok


def test_a_recorded_customer_stripe_no_longer_has_is_found_or_created_again(
    world: World,
) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    assert deliver(config=world.settings, stripe=world.config()).ok
    with StripeStandIn() as other:  # another Stripe account: none of the recorded ids
        replay_from(1, config=world.settings)
        report = deliver(config=world.settings, stripe=world.config(other.base_url))
        assert report.ok and report.delivered == 1, report.errors
        assert len(other.store.customers) == len(other.store.invoices) == 1
        (inv,) = other.store.invoices.values()
        assert inv.status == "open" and len(inv.item_ids) == 2
