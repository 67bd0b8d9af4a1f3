"""The DAG files import cleanly, follow Airflow's best practices, and do no I/O at parse time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
EXPECTED = {"usage_ingest", "usage_rollup", "billing_close", "meterline_init"}


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) >= EXPECTED


def test_every_task_retries_and_every_dag_is_documented(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id in dagbag.dag_ids:
        dag = dagbag.get_dag(dag_id)
        assert dag.tags and "meterline" in dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"


def test_warehouse_tasks_share_the_pool(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, task_id in (("usage_ingest", "ingest"), ("usage_rollup", "rollup"),
                            ("billing_close", "close"), ("meterline_init", "init")):
        assert dagbag.get_dag(dag_id).get_task(task_id).pool == "meterline_warehouse", dag_id


def test_the_nightly_chain_follows_assets(dagbag) -> None:  # type: ignore[no-untyped-def]
    """usage_ingest runs by the clock and publishes usage_events; usage_rollup follows
    that asset (its daily timetable serves backfills and manual runs only: the clock never
    starts it, so no day is rolled up before its delivery is stored); billing_close
    follows usage_rollup's asset. (Backfills: test_airflow_backfill_plans_one_run_per_day.)"""
    from airflow.sdk import Asset, AssetOrTimeSchedule, CronDataIntervalTimetable

    from meterline.jobs.dag_defaults import USAGE_EVENTS, USAGE_ROLLUP

    ingest, rollup, close = (dagbag.dags[d] for d in ("usage_ingest", "usage_rollup", "billing_close"))
    assert isinstance(ingest.timetable, CronDataIntervalTimetable) and ingest.allowed_run_types is None
    assert ingest.get_task("ingest").outlets == [USAGE_EVENTS]
    assert isinstance(rollup.timetable, AssetOrTimeSchedule)
    assert isinstance(rollup.timetable.timetable, CronDataIntervalTimetable)
    assert list(rollup.timetable.asset_condition.objects) == [USAGE_EVENTS]
    assert {t.value for t in rollup.allowed_run_types} == {"asset_triggered", "backfill", "manual"}
    assert rollup.get_task("rollup").outlets == [USAGE_ROLLUP]
    assert isinstance(close.timetable.asset_condition.objects[0], Asset)
    assert list(close.timetable.asset_condition.objects) == [USAGE_ROLLUP]


def test_dag_files_import_nothing_heavy_at_parse_time() -> None:
    """Importing a DAG file must not import the warehouse engine, the ledger or pyarrow."""
    for path in DAG_FILES:
        probe = (
            "import sys, runpy; runpy.run_path(sys.argv[1]); "
            "heavy = [m for m in ('chdb', 'pyarrow', 'meters.warehouse.base', 'billing.db', 'sqlalchemy.orm') if m in sys.modules]; "
            "print(','.join(heavy))"
        )
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, check=True)
        heavy = {m for m in out.stdout.strip().split(",") if m}
        # sqlalchemy.orm is Airflow's own; the project's modules must not be there.
        assert not heavy - {"sqlalchemy.orm"}, f"{path.name} imports {heavy} at parse time"


def test_dag_files_have_no_top_level_calls_but_the_dag() -> None:
    for path in DAG_FILES:
        tree = ast.parse(path.read_text())
        calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
        assert len(calls) == 1, f"{path.name}: top-level calls other than the DAG's"


def test_airflow_backfill_plans_one_run_per_day(airflow_db) -> None:  # type: ignore[no-untyped-def]
    """`airflow backfill create` (what an engineer runs against a scheduler) plans one
    usage_rollup run per day, each covering that day as its data interval. (Days no other
    test runs: the Airflow database is the session's, and a backfill skips a day that
    already has a run, as `dag.test()` of the ingest DAG for 2026-10-02 leaves one.)"""
    import os

    env = os.environ.copy()
    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], env=env, check=True,
                   capture_output=True, timeout=300)
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", "usage_rollup",
         "--from-date", "2026-06-01", "--to-date", "2026-06-03", "--dry-run"],
        env=env, check=True, capture_output=True, text=True, timeout=300,
    )
    planned = [line for line in out.stdout.splitlines() if line.startswith("| 2026-")]
    assert [p.split("|")[1].strip()[:10] for p in planned] == ["2026-06-01", "2026-06-02", "2026-06-03"]
    # The nightly ingest backfills the same way (one delivery per day).
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", "usage_ingest",
         "--from-date", "2026-06-01", "--to-date", "2026-06-02", "--dry-run"],
        env=env, check=True, capture_output=True, text=True, timeout=300,
    )
    planned = [line for line in out.stdout.splitlines() if line.startswith("| 2026-")]
    assert [p.split("|")[1].strip()[:10] for p in planned] == ["2026-06-01", "2026-06-02"]
