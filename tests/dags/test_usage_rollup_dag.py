"""dag.test() runs the real usage_rollup DAG against the embedded warehouse: the rollup,
then the alerts task (evaluated as of the rollup's end, fired once per threshold)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest

from meterline import settings as settings_module
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import ingest_events
from meters.warehouse.base import Warehouse


@pytest.fixture
def pointed_at(
    warehouse: Warehouse, chdb_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Warehouse]:
    """Settings that point the DAG's tasks at this test's database, and a ledger holding
    the demo catalog (the one catalog the rollup reads)."""
    from meterline.jobs.catalog import load_catalog_file
    from meterline.jobs.init import migrate_ledger

    monkeypatch.setenv(
        "METERLINE_WAREHOUSE_URL", f"chdb://{chdb_folder}?database={warehouse.database}"
    )
    monkeypatch.setenv("METERLINE_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    settings_module.settings.cache_clear()
    migrate_ledger()  # the warehouse fixture is migrated; `meterline init` for the ledger
    load_catalog_file()
    yield warehouse
    settings_module.settings.cache_clear()


def events(day: date, n: int, prefix: str) -> list[dict[str, Any]]:
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [
        {
            "event_id": f"{prefix}{i}",
            "customer_id": f"cus_{i % 3}",
            "meter": "fin_resolution",
            "timestamp": (base + timedelta(minutes=37 * i)).isoformat(),
            "properties": {"channel": "chat"},
        }
        for i in range(n)
    ]


def rollup_rows(wh: Warehouse, day: date) -> list[tuple[Any, ...]]:
    return wh.query_rows(
        "SELECT customer_id, meter, count() FROM usage_rollup WHERE toDate(hour) = {d:Date} "
        "GROUP BY customer_id, meter ORDER BY customer_id",
        {"d": day},
    )


def run_day(dagbag, day: date) -> Any:  # type: ignore[no-untyped-def]
    dag = dagbag.get_dag("usage_rollup")
    # A CronDataIntervalTimetable run whose logical date is D+1 covers the day D.
    return dag.test(
        logical_date=pendulum.datetime(day.year, day.month, day.day, tz="UTC").add(days=1)
    )


def watched(tmp_path: Path) -> None:
    """cus_0 on the standard plan from October 1st, with a usage alert on its resolutions
    at 5 and 12."""
    from meterline.jobs.alerts import add_alert
    from meterline.jobs.ledger import load_customers

    row = {
        "customer_id": "cus_0",
        "name": "Zero",
        "currency": "USD",
        "timezone": "UTC",
        "subscription_id": "sub_0",
        "plan": "standard",
        "billing_anchor_day": 1,
        "start": "2026-10-01",
        "end": None,
        "discounts": [],
    }
    (tmp_path / "customers.jsonl").write_text(json.dumps(row) + "\n")
    load_customers(tmp_path / "customers.jsonl")
    add_alert(
        customer="cus_0",
        plan=None,
        meter="fin_resolution",
        currency=None,
        thresholds=["5", "12"],
        created_at=datetime(2026, 10, 1, tzinfo=UTC),
    )


def alerts_done(run: Any) -> tuple[str, list[tuple[str, str]]]:
    """The alerts task's state, and what the ledger recorded: (threshold, state)."""
    from meterline.jobs.alerts import alert_history

    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "alerts"]
    return ti.state, [(h.threshold, h.state) for h in alert_history()]


def test_dag_rolls_up_its_day_and_late_days(
    dagbag, pointed_at: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    wh = pointed_at
    d1, d2 = date(2026, 10, 1), date(2026, 10, 2)
    ingest_events(
        wh, catalog, events(d1, 30, "a"), ingested_at=datetime(2026, 10, 2, 0, 30, tzinfo=UTC)
    )
    watched(tmp_path)

    run = run_day(dagbag, d1)
    assert run.state == "success"
    first = rollup_rows(wh, d1)
    assert first, "the day's rollup is empty"
    assert sum(r[2] for r in first) > 0
    # The alerts task ran after the rollup, as of its end: cus_0 had 10 resolutions.
    assert alerts_done(run) == ("success", [("5", "fired")])

    # Re-running the day changes nothing, and announces nothing again.
    run = run_day(dagbag, d1)
    assert run.state == "success"
    assert rollup_rows(wh, d1) == first
    assert alerts_done(run) == ("success", [("5", "fired")])

    # A late event for d1 arrives with d2's delivery: d2's run rebuilds d1 too.
    ingest_events(
        wh,
        catalog,
        events(d2, 10, "b")
        + events(d1, 31, "a")[30:]
        + [{**events(d1, 1, "late")[0], "customer_id": "cus_late"}],
        ingested_at=datetime(2026, 10, 3, 0, 30, tzinfo=UTC),
    )
    run = run_day(dagbag, d2)
    assert run.state == "success"
    # 15 resolutions by d2's end (4 on d2, the late one of d1): the next threshold fires.
    assert alerts_done(run) == ("success", [("5", "fired"), ("12", "fired")])
    after = rollup_rows(wh, d1)
    assert any(r[0] == "cus_late" for r in after)
    assert rollup_rows(wh, d2)
