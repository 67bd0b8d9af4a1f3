"""Faults between the SDK and Stripe never duplicate anything: a fault-injecting proxy in
front of the stand-in drops connections after Stripe acted, answers 500 or 429 with
Retry-After, or holds the answer past the timeout, at each request the sink makes. After
every fault, `stripe reconcile` finds no difference and the item count equals the line
count (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, outbox_rows, replay_from
from tests.sinks.conftest import MARCH, World
from tests.support.fault_proxy import FaultProxy

#: The sink's requests by where they go (method, path test).
TARGETS = {
    "customer create": lambda m, p: m == "POST" and p == "/v1/customers",
    "invoice create": lambda m, p: m == "POST" and p == "/v1/invoices",
    "add_lines": lambda m, p: m == "POST" and p.endswith("/add_lines"),
    "finalize": lambda m, p: m == "POST" and p.endswith("/finalize"),
    "customer search": lambda m, p: m == "GET" and p == "/v1/customers/search",
}
CASES = [
    ("drop_after_forward", "customer create"),
    ("drop_after_forward", "invoice create"),
    ("drop_after_forward", "add_lines"),
    ("drop_after_forward", "finalize"),
    ("error_500", "add_lines"),
    ("error_500", "customer search"),
    ("rate_limit", "invoice create"),
    ("rate_limit", "finalize"),
    ("delay", "add_lines"),
    ("delay", "finalize"),
]


@pytest.fixture
def proxy(world: World) -> Iterator[FaultProxy]:
    with FaultProxy(world.stripe.base_url, delay=2.0) as running:
        yield running


def two_finalized(world: World) -> list[int]:
    ids = [world.post("sub_00001", MARCH), world.post("sub_00009", MARCH, resolutions=7)]
    for invoice_id in ids:
        world.finalize(invoice_id)
    return ids


def assert_exactly_once(world: World) -> None:
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences
    assert check.items == check.lines == 4
    store = world.stripe.store
    assert len(store.customers) == 2
    assert len(store.invoices) == 2
    assert len(store.invoice_items) == 4


@pytest.mark.parametrize(("fault", "target"), CASES, ids=[f"{f}-{t}" for f, t in CASES])
def test_a_fault_retried_in_the_same_run_duplicates_nothing(
    world: World, proxy: FaultProxy, fault: str, target: str
) -> None:
    two_finalized(world)
    proxy.plan(fault, when=TARGETS[target])
    report = deliver(config=world.settings, stripe=world.config(proxy.base_url, timeout_s=1.0))
    assert proxy.injected[fault] == 1
    assert report.ok, report.errors
    assert report.delivered == 2
    assert_exactly_once(world)


@pytest.mark.parametrize("target", ["invoice create", "add_lines", "finalize"])
def test_a_crash_after_stripe_acted_is_healed_by_the_next_run(
    world: World, proxy: FaultProxy, target: str
) -> None:
    """The answer is lost on every try of the run (the deliverer gives up, as after a
    crash); the next run, after the idempotency keys could have expired, looks first."""
    two_finalized(world)
    proxy.plan("drop_after_forward", times=2, when=TARGETS[target])
    config = world.config(proxy.base_url, request_attempts=2, concurrency=1)
    first = deliver(config=world.settings, stripe=config)
    assert first.failed == 1 and first.delivered == 1
    (failed,) = [r for r in outbox_rows(config=world.settings) if r.status != "delivered"]
    assert failed.attempts == 1 and "Stripe unreachable" in (failed.last_error or "")
    world.stripe.store.idempotency.clear()  # keys expire after 24 hours
    replay_from(failed.event_id, config=world.settings)  # instead of waiting the backoff
    second = deliver(config=world.settings, stripe=config)
    # Replay sends every event from that id on again (the other one too, when later).
    assert second.ok and second.delivered == 2 - failed.event_id + 1
    assert_exactly_once(world)


def test_a_refusal_parks_the_event_at_once_and_replay_delivers_it(world: World) -> None:
    """Stripe refuses (no such customer): retrying cannot help, so the event is parked;
    after the customers file is fixed, a replay delivers it."""
    invoice_id = world.post("sub_00001", MARCH)
    world.finalize(invoice_id)
    with world.ledger.Session.begin() as session:
        from billing.models import Customer

        customer = session.query(Customer).filter_by(external_id="cus_00001").one()
        customer.stripe_customer_id = "cus_DoesNotExist"
    report = deliver(config=world.settings, stripe=world.config())
    assert (report.parked, report.delivered) == (1, 0)
    (row,) = outbox_rows(config=world.settings, failed_only=True)
    assert row.status == "parked" and "No such customer" in (row.last_error or "")
    with world.ledger.Session.begin() as session:
        customer = session.query(Customer).filter_by(external_id="cus_00001").one()
        customer.stripe_customer_id = None
    assert deliver(config=world.settings, stripe=world.config()).delivered == 0  # parked
    replay_from(row.event_id, config=world.settings)
    assert deliver(config=world.settings, stripe=world.config()).delivered == 1
    assert len(world.stripe.store.invoices) == 1
