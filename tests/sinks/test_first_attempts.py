"""What was delivered before first attempts were recorded (ledger migration 0015) never
looks never-attempted: not after the migration, not after `meterline outbox replay`.
Else the sink would create the invoice again without looking (a second Stripe invoice
once Stripe's idempotency keys expired) and the reconcile would not look for it (found
by a breaker: a replayed pre-0015 delivery billed twice, and reconcile said all equal)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from billing import migrate
from billing.models import OutboxDelivery
from billing.outbox.delivery import UNKNOWN_ATTEMPT
from meterline.audit.stripe import reconcile_stripe
from meterline.jobs.deliver import deliver, replay_from
from meterline.sinks.stripe.client import StripeApi
from tests.sinks.conftest import MARCH, World

LIST = ("GET", "/v1/invoices")


def _delivered_before_0015(world: World) -> None:
    """A month delivered three days ago by a meterline without first attempts."""
    world.finalize(world.post("sub_00001", MARCH))
    assert deliver(config=world.settings, stripe=world.config()).ok
    world.ledger.engine.dispose()
    migrate.downgrade(world.ledger.url, "0014")
    migrate.upgrade(world.ledger.url)
    with world.stripe.store.lock:
        for invoice in world.stripe.store.invoices.values():
            invoice.created -= int(timedelta(days=3).total_seconds())
    world.stripe.store.idempotency.clear()  # Stripe keeps keys 24 hours


def _firsts(world: World) -> list[datetime | None]:
    with world.ledger.Session() as session:
        return list(session.scalars(select(OutboxDelivery.first_attempted_at)))


def test_the_migration_marks_what_was_attempted(world: World) -> None:
    _delivered_before_0015(world)
    assert _firsts(world) == [UNKNOWN_ATTEMPT]
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok and check.invoices == 1
    assert world.stripe.request_count == {LIST: 1}  # asked for that invoice, not listed


def test_a_replay_of_a_delivery_from_before_bills_nothing_twice(world: World) -> None:
    _delivered_before_0015(world)
    assert replay_from(1, config=world.settings) == 1
    assert _firsts(world) == [UNKNOWN_ATTEMPT]  # the replay keeps the mark
    report = deliver(config=world.settings, stripe=world.config())
    assert report.ok and report.invoices_finalized == 0  # found, already delivered
    assert len(world.stripe.store.invoices) == 1
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok, check.differences


def test_a_duplicate_from_before_is_still_reported_after_a_replay(world: World) -> None:
    _delivered_before_0015(world)
    store = world.stripe.store
    with store.lock:
        (original,) = store.invoices.values()
        copy = store.create_invoice(
            {"customer": original.customer, "metadata": dict(original.metadata)}
        )
        store.invoices[copy["id"]].created = original.created
    replay_from(1, config=world.settings)
    with world.ledger.Session.begin() as session:  # a replay never forgets an attempt
        session.execute(update(OutboxDelivery).values(status="pending"))
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert any("billed more than once" in d.what for d in check.differences)


def test_a_listing_whose_cursor_was_deleted_starts_again(world: World, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A draft deleted while the listing pages (another deliverer voiding it): the next
    page's `starting_after` names nothing; the listing starts again, once."""
    world.finalize(world.post("sub_00001", MARCH))
    assert deliver(config=world.settings, stripe=world.config()).ok
    store = world.stripe.store
    with store.lock:
        other = store.create_customer({"name": "other"})
        for n in range(150):
            store.create_invoice({"customer": other["id"], "metadata": {"x": str(n)}})
    real = StripeApi.call
    deleted: list[str] = []

    def call(self, what, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(self, what, fn, *args, **kwargs)
        if what == "invoices.list" and not deleted:
            import json

            deleted.append(json.loads(out.body)["data"][-1]["id"])
            with store.lock:
                store.delete_invoice(deleted[0], {})
        return out

    monkeypatch.setattr(StripeApi, "call", call)
    world.stripe.reset_request_count()
    check = reconcile_stripe("2026-03", config=world.settings, stripe=world.config())
    assert check.ok and check.invoices == 1 and deleted
    assert world.stripe.request_count[LIST] == 4  # 2 pages, one refused, 2 pages again
