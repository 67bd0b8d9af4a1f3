import pytest

from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, outbox_rows, replay_from
from tests.sinks.conftest import MARCH, World
from tests.sinks.found.lines import post_many
from tests.support.fault_proxy import FaultProxy


@pytest.mark.parametrize("n", [51, 120, 250])
def test_many_lines_deliver_and_replay(world: World, n: int) -> None:
    iid = post_many(world, "sub_00001", MARCH, n)
    world.finalize(iid)
    r = deliver(config=world.settings, stripe=world.config())
    assert r.ok, r.errors
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert rec.ok, rec.differences[:3]
    assert rec.items == rec.lines == n
    replay_from(1, config=world.settings)
    r = deliver(config=world.settings, stripe=world.config())
    assert r.ok, r.errors
    assert len(world.stripe.store.invoice_items) == n


def test_more_than_250_lines(world: World) -> None:
    iid = post_many(world, "sub_00001", MARCH, 260)
    world.finalize(iid)
    r = deliver(config=world.settings, stripe=world.config())
    (row,) = outbox_rows(config=world.settings)
    # Refused before anything is created in Stripe (no 250-item draft left behind).
    assert (r.parked, row.status) == (1, "parked")
    assert "at most 250 items" in (row.last_error or "")
    assert world.stripe.store.invoices == {}
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert not rec.ok and "not in Stripe" in rec.differences[0].what


def test_crash_in_second_add_lines_chunk(world: World) -> None:
    iid = post_many(world, "sub_00001", MARCH, 120)
    world.finalize(iid)
    seen = {"n": 0}

    def second_add(m, p):
        if m == "POST" and p.endswith("/add_lines"):
            seen["n"] += 1
            return seen["n"] == 2
        return False

    with FaultProxy(world.stripe.base_url, delay=2.0) as proxy:
        proxy.plan("drop_after_forward", times=1, when=second_add)
        cfg = world.config(proxy.base_url, request_attempts=1, concurrency=1)
        first = deliver(config=world.settings, stripe=cfg)
    assert first.failed == 1 and proxy.injected["drop_after_forward"] == 1
    world.stripe.store.idempotency.clear()
    replay_from(1, config=world.settings)
    second = deliver(config=world.settings, stripe=world.config())
    assert second.ok, second.errors
    rec = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert rec.ok, rec.differences[:3]
    assert len(world.stripe.store.invoice_items) == 120
