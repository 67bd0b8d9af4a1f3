"""The data-lake export on each ledger database (SQLite, and PostgreSQL when
METERLINE_TEST_POSTGRES_URL is set): a scenario's closed month exported, its totals the
scenario's, its run recorded in export_runs, an unchanged month written once
(docs/export.md; the whole story is tests/audit/test_export.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.db import create_ledger_engine, session_factory
from billing.models import ExportRun
from meterline.jobs.export import export_period
from tests.scenarios.harness import World, run
from tests.scenarios.test_periods import COMMITTED

pytestmark = pytest.mark.single_warehouse


def test_a_closed_month_exported_on_each_ledger(ledger_world: World, tmp_path: Path) -> None:
    world = ledger_world
    run(world, COMMITTED)
    lake = tmp_path / "lake"
    report = export_period("2026-11", str(lake), config=world.config)
    assert report.run is not None and report.tables["invoices"]["rows"] == 2
    manifest = json.loads((lake / "period=2026-11" / f"manifest-{report.run:09d}.json").read_text())
    # 500.00 (the minimum commitment's true-up) + 600.00, finalized.
    assert manifest["tables"]["invoices"]["totals"] == [
        {
            "currency": "USD",
            "status": "finalized",
            "subtotal_minor": 52000 + 60000,
            "discount_minor": -2000,
            "adjustment_minor": 0,
            "total_minor": 50000 + 60000,
        }
    ]
    lines = {t["kind"]: t["amount_minor"] for t in manifest["tables"]["invoice_lines"]["totals"]}
    assert lines == {"flat": 20000, "discount": -2000, "usage": 77000, "minimum_true_up": 15000}
    assert export_period("2026-11", str(lake), config=world.config).run is None
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine)() as session:
            (row,) = session.scalars(select(ExportRun)).all()
    finally:
        engine.dispose()
    assert (row.id, row.period, row.destination) == (report.run, "2026-11", str(lake))
    assert row.finished_at is not None and row.manifest_sha256 is not None
