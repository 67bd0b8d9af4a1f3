"""`meterline audit reconcile` balances a clean month and fails on what a bug could do:
a corrupted rollup row, a line item deleted behind the ledger's back, a due period left
without an invoice; and warns of usage nobody is billed for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing import void
from billing.db import create_ledger_engine, session_factory
from meterline.audit.reconcile import months_to_reconcile, reconcile_after_close, reconcile_period
from meterline.output import jsonable
from meters.ingest.ingestor import ingest_events
from tests.audit.conftest import AS_OF, START, World

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse


def test_the_generated_month_reconciles(month: World) -> None:
    assert months_to_reconcile(AS_OF, config=month.config) == ["2026-10", "2026-11"]
    reports = reconcile_after_close(AS_OF, config=month.config)
    for report in reports:
        assert report.ok, [jsonable(f) for f in report.failures]
    nov = next(r for r in reports if r.period == "2026-11")
    assert nov.invoices.checked > 15
    for row in nov.meters:
        assert row.raw_events == row.rollup_events
        assert row.raw_quantity == row.rollup_quantity
        assert row.rated_amount == row.posted_amount
        assert row.difference.minor == 0
    fin = [r for r in nov.meters if r.meter == "fin_resolution"]
    assert {r.currency for r in fin} == {"USD", "EUR", "GBP"}
    assert all(r.rated_quantity == r.posted_quantity == r.raw_quantity for r in fin)
    intake = nov.intake
    assert intake.balanced and intake.ingests >= 29
    assert intake.received == intake.accepted + intake.duplicates + intake.rejected
    assert intake.duplicates > 0 and intake.rejected > 0
    assert sum(intake.rejected_by_reason.values()) == intake.rejected
    assert nov.unattributed == [] and nov.drift == []
    # One customer only: the same checks, on its invoice.
    customer = nov.customers[0].customer
    one = reconcile_period("2026-11", customer=customer, config=month.config)
    assert one.ok and [c.customer for c in one.customers] == [customer]


def test_reconcile_fails_on_a_corrupted_rollup_row(copy_of_month: World) -> None:
    world = copy_of_month
    ((customer, hour),) = world.warehouse.query_rows(
        "SELECT customer_id, toString(hour) FROM usage_rollup WHERE meter = 'fin_resolution'"
        " AND hour >= {start:DateTime('UTC')} ORDER BY customer_id, hour LIMIT 1",
        {"start": START},
    )
    world.warehouse.command(
        "ALTER TABLE usage_rollup UPDATE events = events + 3, value_sum = value_sum + 3"
        " WHERE customer_id = {c:String} AND meter = 'fin_resolution' AND hour = {h:DateTime('UTC')}"
        " SETTINGS mutations_sync = 2",
        {"c": customer, "h": hour},
    )
    (month,) = [m for m in months_to_reconcile(AS_OF, config=world.config) if m == "2026-11"]
    report = reconcile_period(month, config=world.config)
    assert not report.ok
    failing = {(f.check, f.customer) for f in report.failures}
    assert ("rollup_vs_raw", customer) in failing
    assert ("quantity_rollup_vs_raw", customer) in failing
    (finding,) = [f for f in report.failures if f.check == "rollup_vs_raw"]
    assert "no day is dirty" in finding.detail
    # The posted lines were rated before the corruption: they still match the events.
    assert not [f for f in report.failures if f.check.startswith("line_")]


def test_reconcile_fails_on_a_deleted_line_item(copy_of_month: World) -> None:
    """The ledger refuses to delete a finalized invoice's line (trigger ledger_lines_delete,
    migration 0002). A bug with raw SQL on a database without it would get through: the
    test drops the trigger in its own copy of the ledger, then deletes a line."""
    world = copy_of_month
    ((line_id, invoice_id, customer, month),) = world.sql(
        "SELECT l.id, i.id, c.external_id, strftime('%Y-%m', i.period_start_local)"
        " FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id JOIN customers c ON c.id = i.customer_id"
        " WHERE i.status = 'finalized' AND l.kind = 'usage' AND l.amount_minor > 0 ORDER BY l.id LIMIT 1"
    )
    world.sql("DROP TRIGGER ledger_lines_delete")
    world.sql("DELETE FROM invoice_lines WHERE id = ?", line_id)

    report = reconcile_period(month, config=world.config)
    assert not report.ok
    failing = {(f.check, f.invoice_id) for f in report.failures}
    assert ("invoice_total", invoice_id) in failing
    assert ("line_missing", invoice_id) in failing
    (missing,) = [f for f in report.failures if f.check == "line_missing"]
    assert missing.customer == customer
    assert missing.data is not None and missing.data.line_id is None
    row = next(c for c in report.customers if c.invoice_id == invoice_id)
    assert row.difference is not None and row.difference.minor > 0


def test_usage_no_subscription_covers_is_a_warning(copy_of_month: World) -> None:
    world = copy_of_month
    at = AS_OF - timedelta(days=20)
    ingest_events(
        world.warehouse,
        world.meters,
        [
            {
                "event_id": f"stray-{n}",
                "customer_id": "cus_nobody",
                "meter": "fin_resolution",
                "timestamp": (at + timedelta(minutes=n)).isoformat(),
                "properties": {"channel": "email"},
            }
            for n in range(3)
        ],
        ingested_at=at + timedelta(hours=1),
    )
    report = reconcile_period("2026-11", config=world.config)
    # Billed to no one: listed as a warning, which does not fail by default...
    assert report.ok and not report.failures
    (finding,) = report.findings
    assert (finding.check, finding.severity, finding.customer) == (
        "unattributed_usage",
        "warning",
        "cus_nobody",
    )
    assert finding.id.startswith("f-") and len(finding.id) == 14
    (row,) = report.unattributed
    assert row.events == 3 and row.known_customer is False
    # ...and does when the run fails on warnings.
    strict = world.config.model_copy(update={"reconcile_fail_on": "warning"})
    report = reconcile_period("2026-11", config=strict)
    assert not report.ok and [f.id for f in report.failures] == [finding.id]


def test_reconcile_fails_on_a_due_period_without_invoice(copy_of_month: World) -> None:
    world = copy_of_month
    ((invoice_id, customer),) = world.sql(
        "SELECT i.id, c.external_id FROM invoices i JOIN customers c ON c.id = i.customer_id"
        " WHERE i.status = 'finalized' AND strftime('%Y-%m', i.period_start_local) = '2026-11'"
        " ORDER BY i.id LIMIT 1"
    )
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine).begin() as session:
            void(session, invoice_id, as_of=AS_OF)
    finally:
        engine.dispose()
    assert reconcile_period("2026-11", config=world.config).ok  # without as_of: not checked
    report = reconcile_period("2026-11", as_of=AS_OF, config=world.config)
    assert [(f.check, f.customer) for f in report.failures] == [("missing_invoice", customer)]
    assert report.invoices.void == 1
