"""Rerater.rate_both rates a customer once when its raw events and its rollup give the same
quantity rows, and twice when they differ; either way each period's ratings are those that
rating each source on its own gives (what reconcile and explain compared before)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from meterline.audit import ledger
from meterline.audit.rerating import Rerater
from meterline.connections import ledger_session
from meterline.jobs.due import Due
from meterline.jobs.rate import PeriodRating
from meters.ingest.ingestor import ingest_events
from tests.audit.conftest import AS_OF, World, ingest_resolution

pytestmark = pytest.mark.single_warehouse


def _resolution(world: World) -> str:
    """A late resolution, not rolled up: the customer's raw quantity is one more."""
    ((customer, start),) = world.sql(
        "SELECT c.external_id, l.service_period_start"
        " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " JOIN customers c ON c.id = i.customer_id JOIN subscriptions s ON s.id = i.subscription_id"
        " WHERE l.kind = 'usage' AND l.price_id = 'fin_resolution' AND i.status = 'finalized'"
        " AND s.plan_id = 'standard' AND l.amount_minor > 0 ORDER BY l.id LIMIT 1"
    )
    at = datetime.fromisoformat(start).replace(tzinfo=AS_OF.tzinfo) + timedelta(days=2, hours=3)
    ingest_resolution(
        world, "late-rate-both", str(customer), at, ingested_at=AS_OF + timedelta(hours=6)
    )
    return str(customer)


def _same_seat_level(world: World) -> str:
    """A late seat event that repeats the level already set (found by a breaker): the
    quantities read the same from both sources, but the raw window counts one event more
    than the rollup's."""
    ((customer, seat_type, value, first),) = world.warehouse.query_rows(
        "SELECT customer_id, properties['seat_type'], any(value), min(timestamp)"
        " FROM usage_events WHERE meter = 'seats' GROUP BY customer_id, properties['seat_type']"
        " HAVING count() = 1 ORDER BY customer_id LIMIT 1"
    )
    ingest_events(
        world.warehouse,
        world.meters,
        [
            {
                "event_id": "late-same-level",
                "customer_id": customer,
                "meter": "seats",
                "timestamp": (first + timedelta(days=3, hours=5)).isoformat(),
                "value": str(value),
                "properties": {"seat_type": seat_type},
            }
        ],
        source="late delivery",
        ingested_at=AS_OF + timedelta(hours=6),
    )
    return str(customer)


def _windows(rating: PeriodRating) -> list[tuple[object, ...]]:
    return sorted(
        (w, r.meter, tuple(sorted(r.dimensions.items())), str(r.quantity), r.events)
        for w, rows in rating.windows.items()
        for r in rows
    )


def _same(ours: dict[Due, PeriodRating], alone: dict[Due, PeriodRating], due: Due) -> None:
    assert ours[due].charges == alone[due].charges, due
    assert ours[due].error == alone[due].error, due
    assert _windows(ours[due]) == _windows(alone[due]), due


@pytest.mark.parametrize("late", [_resolution, _same_seat_level])
def test_rate_both_equals_each_source_rated_alone(copy_of_month: World, late: object) -> None:
    world = copy_of_month
    customer = late(world)  # type: ignore[operator]
    with ledger_session(world.config) as session:
        invoices, _ = ledger.month_invoices(session, "2026-11", None)
        dues = [ledger.due_of(inv) for inv in invoices if inv.status == "finalized"]
        assert len({d.customer for d in dues}) > 10 and customer in {d.customer for d in dues}
        raw, rollup = Rerater(session, world.warehouse, world.meters).rate_both(dues)
        alone = Rerater(session, world.warehouse, world.meters)
        raw_alone, rollup_alone = alone.rate(dues, raw=True), alone.rate(dues, raw=False)
        # A period rated from one source before keeps that rating; duplicates are one.
        cached = Rerater(session, world.warehouse, world.meters)
        before = cached.rate(dues[: len(dues) // 2], raw=False)
        raw_again, rollup_again = cached.rate_both(dues + dues)

    for due in dues:
        _same(raw, raw_alone, due)
        _same(rollup, rollup_alone, due)
        _same(raw_again, raw_alone, due)
        _same(rollup_again, rollup_alone, due)
        # Rated once where the sources agree, twice where they do not.
        assert (rollup[due] is raw[due]) == (due.customer != customer), due
    assert all(rollup_again[d] is before[d] for d in before)
    late_dues = [d for d in dues if d.customer == customer]
    assert any(_windows(raw[d]) != _windows(rollup[d]) for d in late_dues)
