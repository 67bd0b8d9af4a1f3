"""dag.test() runs the real usage_ingest DAG on a delivery folder (a local path, and a
file:// URL): the day's events are stored, and the usage_events asset event names the
day and queues a usage_rollup run. usage_rollup's task, given that event, rolls up the
day it names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest

from meterline import settings as settings_module
from meterline.jobs.dag_defaults import USAGE_EVENTS, USAGE_ROLLUP
from meters.warehouse.base import Warehouse

DAY = date(2026, 10, 1)


@pytest.fixture
def delivered(
    warehouse: Warehouse, chdb_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Settings that point the tasks at this test's database, a ledger holding the demo
    catalog, and the deliveries folder (METERLINE_DELIVERY_PATH set by each test)."""
    from meterline.jobs.catalog import load_catalog_file
    from meterline.jobs.init import migrate_ledger

    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", f"chdb://{chdb_folder}?database={warehouse.database}")
    monkeypatch.setenv("METERLINE_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    settings_module.settings.cache_clear()
    migrate_ledger()
    load_catalog_file()
    yield tmp_path / "deliveries"
    settings_module.settings.cache_clear()


def deliver(folder: Path, day: date, n: int) -> int:
    """A day's delivery: JSON lines in the folder, CSV in a sub-folder, one row refused
    (an unknown meter), and a file that is not usage (ignored). The rows accepted."""
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    folder.mkdir(parents=True)
    rows = [
        {"event_id": f"{day}-{i}", "customer_id": f"cus_{i % 4}", "meter": "fin_resolution",
         "timestamp": (base + timedelta(minutes=13 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "properties": {"channel": "chat"}}
        for i in range(n)
    ]
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "email").mkdir()
    (folder / "email" / "more.csv").write_text(
        "event_id,customer_id,meter,timestamp\n"
        f"{day}-email-1,cus_9,fin_resolution,{day}T23:59:59Z\n"
        f"{day}-email-2,cus_9,fin_resolutoin,{day}T23:59:59Z\n"
    )
    (folder / "README.txt").write_text("not usage")
    return n + 1


def stored(wh: Warehouse, day: date) -> int:
    ((n,),) = wh.query_rows(
        "SELECT count() FROM usage_events FINAL WHERE toDate(timestamp) = {d:Date}", {"d": day}
    )
    return int(n)


def asset_events(uri: str) -> list[Any]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri).order_by(AssetEvent.id)
        ).all()
        return [SimpleNamespace(extra=dict(r.extra or {}), source_dag_id=r.source_dag_id) for r in rows]


def queued_for(dag_id: str, uri: str) -> int:
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(session.scalar(
            select(func.count()).select_from(AssetDagRunQueue)
            .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .where(AssetDagRunQueue.target_dag_id == dag_id, AssetModel.uri == uri)
        ) or 0)


def unpause(dagbag, dag_id: str) -> None:  # type: ignore[no-untyped-def]
    """Store the DAGs in the metadata database, as the dag-processor does, and unpause
    one: Airflow queues asset-triggered runs for unpaused DAGs only."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    bundle = next(iter(manager.get_all_dag_bundles()))
    sync_bag_to_db(dagbag, bundle.name, None)
    with create_session() as session:
        model = session.get(DagModel, dag_id)
        assert model is not None, dag_id
        model.is_paused = False
        # Nothing queued for it yet (one row per asset and DAG, whatever the events).
        session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == dag_id))


def run_ingest(dagbag, day: date) -> Any:  # type: ignore[no-untyped-def]
    # A daily data-interval run whose logical date is D+1 covers the day D.
    logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC").add(days=1)
    return dagbag.get_dag("usage_ingest").test(logical_date=logical)


@pytest.mark.parametrize("scheme", ["", "file://"], ids=["local", "file-url"])
def test_usage_ingest_stores_the_delivery_and_triggers_the_rollup(  # type: ignore[no-untyped-def]
    dagbag, delivered: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    accepted = deliver(delivered / DAY.isoformat(), DAY, 40)
    monkeypatch.setenv("METERLINE_DELIVERY_PATH", f"{scheme}{delivered}/{{date}}")
    settings_module.settings.cache_clear()
    unpause(dagbag, "usage_rollup")
    before = len(asset_events(USAGE_EVENTS.uri))
    assert queued_for("usage_rollup", USAGE_EVENTS.uri) == 0

    run = run_ingest(dagbag, DAY)
    assert run.state == "success"
    assert stored(warehouse, DAY) == accepted
    ((ingest_id, received, rejected),) = warehouse.query_rows(
        "SELECT ingest_id, sum(received), sum(rejected) FROM ingest_log GROUP BY ingest_id"
    )
    assert (received, rejected) == (accepted + 1, 1)

    # The asset usage_rollup follows got one event naming the day, and queued a run of it.
    events = asset_events(USAGE_EVENTS.uri)[before:]
    assert [e.extra for e in events] == [
        {"day": "2026-10-01", "as_of": "2026-10-02T00:00:00+00:00", "ingest_id": ingest_id}
    ]
    assert events[0].source_dag_id == "usage_ingest"
    assert queued_for("usage_rollup", USAGE_EVENTS.uri) == 1

    # Re-running the day stores nothing twice.
    assert run_ingest(dagbag, DAY).state == "success"
    assert stored(warehouse, DAY) == accepted

    # usage_rollup, triggered by that event, rolls up the day it names.
    rollup = dagbag.get_dag("usage_rollup").get_task("rollup").python_callable
    outlets = {USAGE_ROLLUP: SimpleNamespace(extra=None)}
    start = pendulum.datetime(2026, 10, 9, 13, tz="UTC")  # an asset run's interval: its events' times
    reports = rollup(
        dag_run=SimpleNamespace(conf={}),
        triggering_asset_events={USAGE_EVENTS: events},
        data_interval_start=start,
        data_interval_end=start,
        outlet_events=outlets,
    )
    assert [r["day"] for r in reports] == ["2026-10-01"]
    assert reports[0]["rebuilt"][0]["events"] == accepted
    assert outlets[USAGE_ROLLUP].extra == {
        "day": "2026-10-01", "days": ["2026-10-01"], "as_of": "2026-10-02T00:00:00+00:00",
        "late_days": [],
    }


def test_a_missing_delivery_fails_the_run(  # type: ignore[no-untyped-def]
    dagbag, delivered: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METERLINE_DELIVERY_PATH", f"{delivered}/{{date}}")
    settings_module.settings.cache_clear()
    before = len(asset_events(USAGE_EVENTS.uri))
    # A delivery not there yet is retried (3 times, 2 minutes apart in production): the
    # retries are what this test proves, not the wait between them.
    task = dagbag.get_dag("usage_ingest").get_task("ingest")
    assert task.retries == 3
    monkeypatch.setattr(task, "retry_delay", timedelta(0))
    run = run_ingest(dagbag, date(2026, 10, 3))
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert (ti.state, ti.try_number) == ("failed", 4)  # the first try and 3 retries
    assert len(asset_events(USAGE_EVENTS.uri)) == before  # nothing for the rollup to follow


def test_a_delivery_over_the_rejected_share_fails_like_the_command(  # type: ignore[no-untyped-def]
    dagbag, delivered: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 of 3 rows refused is over a 10% limit: `meterline ingest` exits 1, the task fails
    (without retries: the same files give the same verdict) and publishes no event; the
    accepted rows are stored."""
    day = date(2026, 10, 2)
    deliver(delivered / day.isoformat(), day, 1)
    monkeypatch.setenv("METERLINE_DELIVERY_PATH", f"{delivered}/{{date}}")
    monkeypatch.setenv("METERLINE_INGEST_MAX_REJECTED_SHARE", "0.1")
    settings_module.settings.cache_clear()
    before = len(asset_events(USAGE_EVENTS.uri))
    run = run_ingest(dagbag, day)
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert (ti.task_id, ti.state, ti.try_number) == ("ingest", "failed", 1)
    assert len(asset_events(USAGE_EVENTS.uri)) == before
    assert stored(warehouse, day) == 2
