"""One scenario through the real Airflow DAGs (dag.test()): usage_rollup for each day,
then billing_close; the invoices equal the hand computation and those of the same
scenario run through the plain functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from meterline import settings as settings_module
from tests.conftest import fresh_warehouse
from tests.scenarios.harness import World, check, comparable, run
from tests.scenarios.test_periods import COMMITTED

# The DAG tasks open the warehouse from the settings URL, on the embedded backend here.
pytestmark = pytest.mark.single_warehouse


@pytest.fixture
def dag_world(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The DAG tasks read settings() from the environment: point it at this world."""
    config = world.config
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", config.warehouse_url)
    monkeypatch.setenv("METERLINE_LEDGER_URL", config.ledger_url)
    monkeypatch.setenv("METERLINE_CATALOG_PATH", str(config.catalog_path))
    monkeypatch.delenv("METERLINE_BILLING_GO_LIVE", raising=False)
    monkeypatch.delenv("METERLINE_FINALIZE_GRACE_HOURS", raising=False)
    settings_module.settings.cache_clear()
    assert settings_module.settings() == config
    yield world
    settings_module.settings.cache_clear()


def test_the_dags_bill_what_the_functions_bill(
    dag_world: World,
    dag_runner: Any,
    chdb_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = COMMITTED
    world = dag_world
    # The close's export task writes the closed month to the data lake (docs/export.md).
    monkeypatch.setenv("METERLINE_EXPORT_URL", str(tmp_path / "lake"))
    settings_module.settings.cache_clear()
    world.load_customers(scenario.customers)
    world.deliver(scenario.events)
    for d in scenario.rollup_days:
        # the day's delivery (00:30 the next day), then the DAG run of that day
        world.ingest_until(datetime.combine(d + timedelta(days=1), time(1), tzinfo=UTC))
        dag_runner.rollup_day(d)
    world.ingest_until(scenario.as_of)
    dag_runner.close(scenario.as_of)
    by_dags = check(world, scenario.expected)
    (manifest,) = (tmp_path / "lake" / "period=2026-11").glob("manifest-*.json")
    exported = json.loads(manifest.read_text())["tables"]["invoices"]
    assert exported["rows"] == len(scenario.expected) == 2
    assert [t["total_minor"] for t in exported["totals"]] == [50000 + 60000]

    with fresh_warehouse(chdb_folder) as other:
        plain = World(other, chdb_folder, tmp_path / "plain")
        run(plain, scenario)
        by_functions = check(plain, scenario.expected)
    assert comparable(by_dags) == comparable(by_functions)
