"""Several deliverers at once (threads, each its own deliver() run and engine)."""

import threading
from datetime import timedelta

import pytest

import billing
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, outbox_rows, replay_from
from tests.billing.factories import CUSTOMERS, standard_charges, write_customers
from tests.sinks.conftest import GRACE, MARCH, World

N = 24


def setup_many(world: World, tmp_path):
    rows = []
    for i in range(N):
        rows.append(
            {
                **CUSTOMERS[0],
                "customer_id": f"cus_1{i:04d}",
                "subscription_id": f"sub_1{i:04d}",
                "name": f"Many {i}",
                "discounts": [],
            }
        )
    path = write_customers(tmp_path / "more.jsonl", rows)
    with world.ledger.Session.begin() as s:
        billing.load_customers_file(s, path)
    ids = []
    for i in range(N):
        with world.ledger.Session.begin() as s:
            r = billing.post_charges(
                s, f"sub_1{i:04d}", MARCH, standard_charges(s, resolutions=10 + i)
            )
        (iid,) = r.invoice_ids.values()
        world.finalize(iid)
        ids.append(iid)
    for iid in ids[::2]:
        with world.ledger.Session.begin() as s:
            billing.void(s, iid, as_of=MARCH.end + GRACE + timedelta(days=1))
    return ids


def run_parallel(world, k, cfg):
    reports, errors = [], []

    def go():
        try:
            reports.append(deliver(config=world.settings, stripe=cfg))
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=go) for _ in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return reports, errors


@pytest.mark.parametrize("rounds", [1, 3])
def test_concurrent_deliverers(world: World, tmp_path, rounds, monkeypatch) -> None:
    import meterline.jobs.deliver as d

    monkeypatch.setattr(d, "ROUND", 2)
    setup_many(world, tmp_path)
    cfg = world.config(concurrency=4)
    for r in range(rounds):
        reports, errors = run_parallel(world, 4, cfg)
        assert not errors
        if r < rounds - 1:
            replay_from(1, config=world.settings)
    rows = outbox_rows(config=world.settings)
    assert all(x.status == "delivered" for x in rows), [
        (x.event_id, x.status, x.last_error) for x in rows if x.status != "delivered"
    ]
    store = world.stripe.store
    assert len(store.customers) == N
    metas = [i.metadata.get("meterline_invoice_id") for i in store.invoices.values()]
    assert len(metas) == len(set(metas)) == N, metas
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert rec.ok, rec.differences[:5]
    statuses = sorted(i.status for i in store.invoices.values())
    assert statuses.count("void") == N // 2, statuses
