"""`stripe reconcile` finds the month's Stripe invoices in one listing of those Stripe
created since the first delivery attempt of their events (pages of 100), and reads each
invoice's items from the invoice itself when they fit in its first page of lines: one
request for the whole month, where asking per invoice took one each (25,000 invoices:
250 requests, not 25,000). Deliveries attempted before first attempts were recorded are
asked per invoice, as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from billing.models import OutboxDelivery
from meterline.audit.stripe import reconcile_stripe, reconcile_stripe_months
from meterline.jobs.deliver import deliver, ledger_sessions, make_stripe_sink
from tests.sinks.conftest import APRIL, MARCH, World

LIST = ("GET", "/v1/invoices")


def _month(world: World) -> None:
    for sub in ("sub_00001", "sub_00009"):
        world.finalize(world.post(sub, MARCH))


def test_one_listing_for_the_month(world: World) -> None:
    _month(world)
    assert deliver(config=world.settings, stripe=world.config()).ok
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert (check.invoices, check.items) == (2, check.lines)
    assert world.stripe.request_count == {LIST: 1}


def test_never_attempted_asks_nothing(world: World) -> None:
    """Not delivered yet: Stripe cannot hold them, and reconcile says so without asking."""
    _month(world)
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert world.stripe.request_count == {}
    assert len(check.differences) == 2
    assert all(d.what.startswith("not in Stripe") for d in check.differences)


def test_attempted_before_first_attempts_were_recorded(world: World) -> None:
    """A ledger migrated from before 0015 has delivered rows without a first attempt:
    nothing bounds when their Stripe invoices were made, so each is asked for."""
    _month(world)
    assert deliver(config=world.settings, stripe=world.config()).ok
    with world.ledger.Session.begin() as session:
        session.execute(update(OutboxDelivery).values(first_attempted_at=None))
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert world.stripe.request_count == {LIST: 2}


def test_a_stripe_invoice_made_before_the_bound_is_still_found(world: World) -> None:
    """The listing starts a day before the first attempt (Stripe's clock may differ from
    ours): an invoice Stripe dates up to a day earlier is in it; one dated earlier still
    is not listed, and is found by its recorded id."""
    _month(world)
    assert deliver(config=world.settings, stripe=world.config()).ok
    store = world.stripe.store
    with store.lock:
        invoices = list(store.invoices.values())
        invoices[0].created -= int(timedelta(hours=23).total_seconds())
        invoices[1].created -= int(timedelta(days=2).total_seconds())
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert check.invoices == 2
    assert sum(world.stripe.request_count.values()) == 2  # the listing, one retrieve
    assert world.stripe.request_count[LIST] == 1


def test_listing_reads_every_page(world: World) -> None:
    """250 invoices naming ledger invoices (and one that names none) in three pages."""
    store = world.stripe.store
    with store.lock:
        customer = store.create_customer({"name": "many"})
        for n in range(250):
            store.create_invoice(
                {"customer": customer["id"], "metadata": {"meterline_invoice_id": str(n)}}
            )
        store.create_invoice({"customer": customer["id"]})
    world.stripe.reset_request_count()
    with ledger_sessions(world.settings) as make:
        sink, _ = make_stripe_sink(make, world.config())
        since = datetime.now(UTC) - timedelta(minutes=5)
        found = sink.invoices_created_since(since)
        assert sorted(found, key=int) == [str(n) for n in range(250)]
        assert all(len(v) == 1 for v in found.values())
        assert world.stripe.request_count == {LIST: 3}
        assert sink.invoices_created_since(datetime.now(UTC) + timedelta(minutes=5)) == {}


def test_the_months_of_a_close_share_one_listing(world: World) -> None:
    """billing_close reconciles every month it touched: one listing serves them all."""
    _month(world)
    world.finalize(world.post("sub_00001", APRIL), APRIL)
    assert deliver(config=world.settings, stripe=world.config()).ok
    world.stripe.reset_request_count()
    march, april = reconcile_stripe_months(
        ["2026-03", "2026-04"], config=world.settings, stripe=world.config()
    )
    assert world.stripe.request_count == {LIST: 1}
    assert (march.period, march.invoices, march.ok) == ("2026-03", 2, True)
    assert (april.period, april.invoices, april.ok) == ("2026-04", 1, True)
    assert april.items == april.lines > 0
