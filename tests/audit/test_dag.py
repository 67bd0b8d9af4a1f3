"""The billing_close DAG ends with a reconcile task that fails the run (without retries)
when the books do not balance. The DAG file is parsed with Airflow's DagBag and the task's
own function is run against the test month and a corrupted copy of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meterline.settings import settings
from tests.audit.conftest import AS_OF, START, World

ROOT = Path(__file__).resolve().parents[2]
# As tests/dags/conftest.py: Airflow gets a home of its own before it is first imported.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="meterline-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "false")


@pytest.fixture(scope="module")
def billing_close() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    return bag.dags["billing_close"]


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def point_at(world: World) -> None:
        monkeypatch.setenv("METERLINE_WAREHOUSE_URL", world.config.warehouse_url)
        monkeypatch.setenv("METERLINE_LEDGER_URL", world.config.ledger_url)
        monkeypatch.setenv("METERLINE_BILLING_GO_LIVE", START.isoformat())
        settings.cache_clear()

    yield point_at
    settings.cache_clear()


def test_reconcile_runs_after_close(billing_close: Any) -> None:
    task = billing_close.get_task("reconcile")
    assert task.upstream_task_ids == {"resolve_as_of", "close"}
    assert not task.downstream_task_ids
    assert task.pool == "meterline_warehouse"


def test_reconcile_task_passes_then_fails_the_run(
    billing_close: Any, month: World, copy_of_month: World, configured: Any
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    reconcile = billing_close.get_task("reconcile").python_callable
    configured(month)
    summary = reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    assert set(summary["months"]) == {"2026-10", "2026-11"}

    configured(copy_of_month)
    ((line_id,),) = copy_of_month.sql(
        "SELECT l.id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " WHERE i.status = 'finalized' AND l.kind = 'usage' AND l.amount_minor > 0 ORDER BY l.id LIMIT 1"
    )
    copy_of_month.sql("DROP TRIGGER ledger_lines_delete")
    copy_of_month.sql("DELETE FROM invoice_lines WHERE id = ?", line_id)
    with pytest.raises(AirflowFailException, match=r"the books do not balance.*line_missing"):
        reconcile(AS_OF.isoformat(), {"periods_closed": 0})
