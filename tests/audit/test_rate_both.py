"""Rerater.rate_both rates a customer once when its raw events and its rollup give the same
quantities, and twice when they differ; either way each period's ratings are those that
rating each source on its own gives (what reconcile and explain compared before)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from meterline.audit import ledger
from meterline.audit.rerating import Rerater
from meterline.connections import ledger_session
from tests.audit.conftest import AS_OF, World, ingest_resolution

pytestmark = pytest.mark.single_warehouse


def test_rate_both_equals_each_source_rated_alone(copy_of_month: World) -> None:
    world = copy_of_month
    ((customer, start, month),) = world.sql(
        "SELECT c.external_id, l.service_period_start, strftime('%Y-%m', i.period_start_local)"
        " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " JOIN customers c ON c.id = i.customer_id JOIN subscriptions s ON s.id = i.subscription_id"
        " WHERE l.kind = 'usage' AND l.price_id = 'fin_resolution' AND i.status = 'finalized'"
        " AND s.plan_id = 'standard' AND l.amount_minor > 0 ORDER BY l.id LIMIT 1"
    )
    # A late event, not rolled up: this customer's raw events now count one more
    # resolution than its rollup.
    at = datetime.fromisoformat(start).replace(tzinfo=AS_OF.tzinfo) + timedelta(days=2, hours=3)
    ingest_resolution(world, "late-rate-both", customer, at, ingested_at=AS_OF + timedelta(hours=6))
    with ledger_session(world.config) as session:
        invoices, _ = ledger.month_invoices(session, month, None)
        dues = [ledger.due_of(inv) for inv in invoices if inv.status == "finalized"]
        assert len({d.customer for d in dues}) > 10
        raw, rollup = Rerater(session, world.warehouse, world.meters).rate_both(dues)
        alone = Rerater(session, world.warehouse, world.meters)
        raw_alone, rollup_alone = alone.rate(dues, raw=True), alone.rate(dues, raw=False)

    for due in dues:
        assert raw[due].charges == raw_alone[due].charges, due
        assert rollup[due].charges == rollup_alone[due].charges, due
        assert raw[due].error == raw_alone[due].error
        assert rollup[due].error == rollup_alone[due].error
        # Rated once where the sources agree, twice where they do not.
        assert (rollup[due] is raw[due]) == (due.customer != customer), due
    late = [d for d in dues if d.customer == customer]
    assert late and any(raw[d].charges != rollup[d].charges for d in late)
