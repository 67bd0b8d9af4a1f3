"""The Stripe sink end to end: ledger -> outbox -> Stripe stand-in (checked against the
SDK's own types) -> `stripe reconcile`, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import stripe as stripe_sdk

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, outbox_rows, replay_from
from tests.sinks.conftest import API_KEY, APRIL, GRACE, MARCH, World


def stripe_invoices(world: World) -> list[stripe_sdk.Invoice]:
    client = stripe_sdk.StripeClient(
        API_KEY.get_secret_value(), base_addresses={"api": world.stripe.base_url}
    )
    out = []
    for customer in sorted(world.stripe.store.customers):
        out += list(client.v1.invoices.list(params={"customer": customer}).auto_paging_iter())
    return out


def creates(world: World) -> int:
    """POSTs that create something in Stripe (customers, invoices, items, notes)."""
    return sum(
        n
        for (method, path), n in world.stripe.request_count.items()
        if method == "POST" and ("add_lines" in path or path.rstrip("/").count("/") == 2)
    )


def test_a_finalized_invoice_reaches_stripe_once_with_an_item_per_line(world: World) -> None:
    first = world.post("sub_00001", MARCH)
    second = world.post("sub_00009", MARCH, resolutions=7)
    world.finalize(first)
    world.finalize(second)
    report = deliver(config=world.settings, stripe=world.config())
    assert (report.delivered, report.invoices_finalized, report.items_added) == (2, 2, 4)
    assert report.ok and report.left == 0
    # Requests are what Stripe's rate limit meters: per invoice of a new customer, a look
    # for the customer before creating it, the invoice (never attempted before: nothing
    # to look for), one add_lines, a finalize.
    assert report.requests == {
        "customers.search": 2,
        "customers.create": 2,
        "invoices.create": 2,
        "invoices.add_lines": 2,
        "invoices.finalize": 2,
    }
    invoices = {i.metadata["meterline_invoice_id"]: i for i in stripe_invoices(world)}
    assert set(invoices) == {str(first), str(second)}
    one = invoices[str(first)]
    assert (one.status, one.currency, one.subtotal, one.auto_advance) == (
        "open",
        "usd",
        39600,
        True,
    )
    assert one.metadata["meterline_customer_id"] == "cus_00001"
    assert one.metadata["meterline_billing_period"] == "2026-03-01..2026-04-01"
    lines = list(one.lines.data)
    assert sorted(line.amount for line in lines) == [9900, 29700]
    fin = next(line for line in lines if line.metadata["meterline_price_id"] == "fin_resolution")
    assert fin.metadata["meterline_quantity"] == "100"
    assert fin.description.startswith("fin_resolution: ")
    assert (fin.period.start, fin.period.end) == (
        int(MARCH.start.timestamp()),
        int(MARCH.end.timestamp()),
    )
    # Delivering again changes nothing in Stripe.
    before = creates(world)
    again = deliver(config=world.settings, stripe=world.config())
    assert again.delivered == 0 and creates(world) == before
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert (check.invoices, check.lines, check.items) == (2, 4, 4)
    assert check.totals == {"USD": [39600 + 693 + 29700, 39600 + 693 + 29700]}


def test_a_replay_looks_first_and_creates_nothing(world: World) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    deliver(config=world.settings, stripe=world.config())
    before = creates(world)
    (row,) = outbox_rows(config=world.settings)
    assert replay_from(row.event_id, config=world.settings) == 1
    report = deliver(config=world.settings, stripe=world.config())
    assert report.delivered == 1
    assert creates(world) == before  # found by metadata: no create, no finalize
    assert len(stripe_invoices(world)) == 1
    assert reconcile_stripe("2026-03", config=world.settings, stripe=world.config()).ok


def test_reconcile_finds_what_differs_in_stripe(world: World) -> None:
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    empty = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert [d.what for d in empty.differences] == [
        "not in Stripe (outbox event 1 is pending: `meterline outbox deliver`)"
    ]
    deliver(config=world.settings, stripe=world.config())
    (inv,) = stripe_invoices(world)
    store = world.stripe.store
    store.invoice_items[store.invoices[inv.id].item_ids[0]].amount += 1  # edited in Stripe
    found = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    whats = sorted(d.what for d in found.differences)
    assert len(whats) == 2 and whats[0].startswith("line ") and whats[1].startswith("subtotal")


def test_adjustments_go_to_the_next_invoices_draft_and_void_credits_a_paid_one(
    world: World,
) -> None:
    march = world.post("sub_00001", MARCH)
    world.finalize(march)
    with world.ledger.Session() as session:
        from tests.billing.factories import standard_charges

        corrected = standard_charges(session, resolutions=130)
    with world.ledger.Session.begin() as session:
        adjusted = billing.post_adjustments(session, "sub_00001", MARCH, corrected)
    deliver(config=world.settings, stripe=world.config())
    by_id = {i.metadata["meterline_invoice_id"]: i for i in stripe_invoices(world)}
    april = by_id[str(adjusted.invoice_id)]
    assert april.status == "draft"
    (item,) = april.lines.data
    assert (item.amount, item.metadata["meterline_kind"]) == (2970, "adjustment")
    assert item.metadata["meterline_adjusts_key"]
    # April closes: its own lines join the adjustment, and it is finalized in Stripe.
    world.post("sub_00001", APRIL)
    world.finalize(adjusted.invoice_id, APRIL)
    deliver(config=world.settings, stripe=world.config())
    assert reconcile_stripe("2026-04", config=world.settings, stripe=world.config()).ok
    # March was paid in Stripe; voiding it in the ledger credits it in full.
    world.stripe.store.pay_invoice(by_id[str(march)].id, {"paid_out_of_band": True})
    with world.ledger.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE + timedelta(days=2))
    report = deliver(config=world.settings, stripe=world.config())
    assert report.ok
    notes = world.stripe.store.list_credit_notes({"invoice": by_id[str(march)].id})["data"]
    assert [n["amount"] for n in notes] == [39600]
    replay_from(1, config=world.settings)  # every event again: nothing doubles
    assert deliver(config=world.settings, stripe=world.config()).ok
    notes = world.stripe.store.list_credit_notes({"invoice": by_id[str(march)].id})["data"]
    assert len(notes) == 1
