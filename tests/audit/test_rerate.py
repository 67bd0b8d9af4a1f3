"""A late event after finalization: explain shows the drift and the event behind it,
reconcile fails until it is adjusted, rerate shows then posts the adjustment (never
editing the finalized invoice), and the next close agrees with what rerate posted."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from meterline.audit.explain import explain_line
from meterline.audit.reconcile import reconcile_period
from meterline.audit.rerate import rerate
from meterline.jobs.close import close_periods
from meterline.jobs.rollup import rollup_day
from meterline.output import jsonable
from tests.audit.conftest import AS_OF, World, ingest_resolution

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse


def test_late_event_drift_then_rerate_adjusts(copy_of_month: World) -> None:
    world = copy_of_month
    ((line_id, invoice_id, customer, start, month, total_before, quantity),) = world.sql(
        "SELECT l.id, i.id, c.external_id, l.service_period_start, strftime('%Y-%m', i.period_start_local),"
        " i.total_minor, l.quantity"
        " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " JOIN customers c ON c.id = i.customer_id JOIN subscriptions s ON s.id = i.subscription_id"
        " WHERE l.kind = 'usage' AND l.price_id = 'fin_resolution' AND i.status = 'finalized'"
        " AND s.plan_id = 'standard' AND l.amount_minor > 0 ORDER BY l.id LIMIT 1"
    )
    at = datetime.fromisoformat(start).replace(tzinfo=AS_OF.tzinfo) + timedelta(days=2, hours=3)
    late_at = AS_OF + timedelta(hours=6)
    ingest_resolution(world, "late-1", customer, at, ingested_at=late_at)

    doc = explain_line(line_id, config=world.config)
    assert doc.status == "drift"
    assert doc.difference.quantity == 1
    assert doc.difference.amount_minor > 0
    assert doc.late_events.count == 1
    (late,) = doc.late_events.events
    assert late.event_id == "late-1" and late.ingested_at == late_at
    # Late: not seen by the close's rating run, which saw every event ingested up to the
    # last delivery before it (the Nov 30 file, delivered Dec 1 00:30); in JSON as UTC text.
    assert jsonable(doc.late_events)["since"] == "2026-12-01T00:30:00Z"
    assert doc.late_events.rating_run_id == doc.line.rating_run_id

    # Reconcile fails: the finalized invoice no longer matches its events.
    report = reconcile_period(month, config=world.config)
    assert not report.ok
    checks = {(f.check, f.customer) for f in report.failures}
    assert ("unadjusted_drift", customer) in checks
    drift = [d for d in report.drift if d.invoice_id == invoice_id]
    assert drift and drift[0].late_events == 1 and not drift[0].adjusted

    # Dry run: the differences line by line, nothing written.
    dry = rerate(month, customer=customer, config=world.config)
    assert not dry.applied and len(dry.periods) == 1
    (period,) = dry.periods
    usage = [d for d in period.lines if d.kind == "usage"]
    assert [d.line_id for d in usage] == [line_id]
    assert (
        usage[0].difference.quantity == 1
        and usage[0].difference.amount_minor == doc.difference.amount_minor
    )
    assert world.sql("SELECT count(*) FROM invoice_lines WHERE kind = 'adjustment'") == [(0,)]

    # Applied: adjustment lines on the next open invoice, linked to the lines they correct.
    applied = rerate(month, customer=customer, apply=True, config=world.config)
    assert applied.applied and applied.rating_run_id is not None
    assert applied.run_at == late_at
    (posted,) = applied.posted
    assert posted.carrier_invoice_id != invoice_id and posted.created >= 1
    adjustments = world.sql(
        "SELECT id, adjusts_line_id, quantity, amount_minor, invoice_id FROM invoice_lines WHERE kind = 'adjustment'"
    )
    by_line = {row[1]: row for row in adjustments}
    assert Decimal(by_line[line_id][2]) == 1
    assert by_line[line_id][3] == usage[0].difference.amount_minor
    assert world.sql(
        "SELECT total_minor, quantity FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id"
        " WHERE l.id = ?",
        line_id,
    ) == [(total_before, quantity)]

    # The line differs but is adjusted; the adjustment agrees and names the late event.
    again = explain_line(line_id, config=world.config)
    assert again.status == "adjusted" and again.net.difference.amount_minor == 0
    assert [a.id for a in again.adjustments] == [by_line[line_id][0]]
    adj = explain_line(by_line[line_id][0], config=world.config)
    assert adj.status == "agrees"
    assert adj.corrects is not None and adj.corrects.line_id == line_id
    assert [e.event_id for e in adj.late_events.events] == ["late-1"]

    # Re-rating again finds nothing; the nightly rollup rebuilds the day; the books balance.
    assert rerate(month, customer=customer, config=world.config).periods == []
    rollup_day(at.date(), config=world.config)
    report = reconcile_period(month, config=world.config)
    assert report.ok, [jsonable(f) for f in report.failures]
    assert [d.adjusted for d in report.drift if d.invoice_id == invoice_id] == [True]

    # The next close sees the same late usage and posts nothing new: rerate posted what
    # close would have.
    closed = close_periods(AS_OF + timedelta(days=1), config=world.config)
    assert closed.adjustment_lines == 0
