"""Odd customer ids and names: quotes, backslash, unicode, ' AND ', long names. After a crash
between customers.create and our record of it (idempotency keys expired), the sink must
find the customer by search and not create a second one."""

import pytest
from sqlalchemy import delete

import billing
from billing.models import ExternalRef
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, replay_from
from tests.billing.factories import CUSTOMERS, standard_charges, write_customers
from tests.sinks.conftest import MARCH, World

IDS = ["cus_o'brien", 'cus_"q"', "cus_back\\slash", "cus_ünï", "cus_a AND b", "cus_x' OR '1"]


@pytest.mark.parametrize("cid", IDS)
def test_odd_customer_id(world: World, tmp_path, cid) -> None:
    row = {
        **CUSTOMERS[0],
        "customer_id": cid,
        "subscription_id": "sub_odd",
        "name": "Ñame 'x' \"y\" " + "é" * 180,
        "discounts": [],
    }
    path = write_customers(tmp_path / "odd.jsonl", [row])
    try:
        with world.ledger.Session.begin() as s:
            billing.load_customers_file(s, path)
    except Exception as exc:
        pytest.skip(f"customers file refuses {cid!r}: {exc}")
    with world.ledger.Session.begin() as s:
        r = billing.post_charges(s, "sub_odd", MARCH, standard_charges(s))
    (iid,) = r.invoice_ids.values()
    world.finalize(iid)
    rep = deliver(config=world.settings, stripe=world.config())
    assert rep.ok, rep.errors
    # lose our records (as after a crash right after Stripe answered) and the keys expire
    with world.ledger.Session.begin() as s:
        s.execute(delete(ExternalRef))
    world.stripe.store.idempotency.clear()
    replay_from(1, config=world.settings)
    rep = deliver(config=world.settings, stripe=world.config())
    assert rep.ok, rep.errors
    assert len(world.stripe.store.customers) == 1, [
        c.metadata for c in world.stripe.store.customers.values()
    ]
    assert len(world.stripe.store.invoices) == 1
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert rec.ok, rec.differences
