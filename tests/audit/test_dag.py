"""The billing_close DAG ends with a reconcile task that fails the run (without retries)
when the books do not balance. The DAG file is parsed with Airflow's DagBag and the task's
own function is run against the test month and a corrupted copy of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from meterline.audit.findings import acknowledge
from meterline.audit.reconcile import reconcile_after_close
from meterline.settings import settings
from meters.ingest.ingestor import ingest_events
from tests.audit.conftest import AS_OF, START, World

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse

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
    # Then the outbox goes to Stripe, and Stripe is reconciled (docs/stripe.md); beside
    # them the closed months go to the data lake (docs/export.md).
    assert task.downstream_task_ids == {"deliver", "export"}
    assert billing_close.get_task("deliver").downstream_task_ids == {"stripe_reconcile"}
    assert not billing_close.get_task("stripe_reconcile").downstream_task_ids
    assert not billing_close.get_task("export").downstream_task_ids
    assert task.pool == billing_close.get_task("export").pool == "meterline_warehouse"


def _stray(world: World, *event_ids: str) -> None:
    """Usage of a customer the ledger does not know: billed to no one (a warning)."""
    at = AS_OF - timedelta(days=20)
    ingest_events(
        world.warehouse,
        world.meters,
        [
            {
                "event_id": event_id,
                "customer_id": "cus_stray",
                "meter": "fin_resolution",
                "timestamp": (at + timedelta(minutes=n)).isoformat(),
                "properties": {"channel": "email"},
            }
            for n, event_id in enumerate(event_ids)
        ],
        ingested_at=at + timedelta(hours=1),
    )


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
    with pytest.raises(AirflowFailException) as failed:
        reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    # A short text, not a Python repr: the count by severity and the first ids.
    message = str(failed.value)
    assert message.startswith(
        "reconcile as of 2026-12-05T00:00:00Z: 2 failing finding(s): 2 errors. First: f-"
    )
    assert "(line_missing, " in message and "(invoice_total, " in message
    assert "{" not in message and "[" not in message


def test_warnings_pass_errors_fail_acknowledged_pass_changed_fail_again(
    billing_close: Any, copy_of_month: World, configured: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 11: a stray event no longer fails the nightly run for 47 days."""
    from airflow.sdk.exceptions import AirflowFailException

    reconcile = billing_close.get_task("reconcile").python_callable
    world = copy_of_month
    configured(world)
    _stray(world, "stray-1")

    # A warning (usage billed to no one) passes with the default setting, listed.
    summary = reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    assert summary["months"]["2026-11"] == "2026-11: reconciled (26 invoices; 1 warning(s))"
    (nov,) = [r for r in reconcile_after_close(AS_OF) if r.period == "2026-11"]
    (warning,) = nov.findings
    assert (warning.check, warning.severity, warning.fails) == (
        "unattributed_usage",
        "warning",
        False,
    )

    # Failing on warnings, it fails, naming the finding.
    monkeypatch.setenv("METERLINE_RECONCILE_FAIL_ON", "warning")
    settings.cache_clear()
    with pytest.raises(
        AirflowFailException,
        match=rf"1 failing finding\(s\): 1 warning\. First: {warning.id} \(unattributed_usage, 2026-11\)",
    ):
        reconcile(AS_OF.isoformat(), {"periods_closed": 0})

    # Acknowledged: it passes, and is still listed, as acknowledged.
    acknowledge(warning.id, reason="test traffic of a prospect", by="ops", at=AS_OF)
    summary = reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    assert summary["months"]["2026-11"] == "2026-11: reconciled (26 invoices; 1 acknowledged)"

    # The same customer sends more: the finding's values changed, so it is a new one
    # that the acknowledgement does not cover.
    _stray(world, "stray-2")
    (nov,) = [r for r in reconcile_after_close(AS_OF) if r.period == "2026-11"]
    (changed,) = nov.findings
    assert changed.check == "unattributed_usage" and changed.id != warning.id
    assert changed.acknowledged is None and changed.fails
    with pytest.raises(AirflowFailException, match=changed.id):
        reconcile(AS_OF.isoformat(), {"periods_closed": 0})

    # Money differs: an error, which fails with the default setting too.
    monkeypatch.delenv("METERLINE_RECONCILE_FAIL_ON")
    settings.cache_clear()
    acknowledge(changed.id, reason="same prospect", by="ops", at=AS_OF)
    ((line_id,),) = world.sql(
        "SELECT l.id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " WHERE i.status = 'finalized' AND l.kind = 'usage' AND l.amount_minor > 0"
        " AND strftime('%Y-%m', i.period_start_local) = '2026-11' ORDER BY l.id LIMIT 1"
    )
    world.sql("DROP TRIGGER ledger_lines_delete")
    world.sql("DELETE FROM invoice_lines WHERE id = ?", line_id)
    with pytest.raises(
        AirflowFailException, match=r"2 failing finding\(s\): 2 errors; 1 acknowledged"
    ):
        reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    (nov,) = [r for r in reconcile_after_close(AS_OF) if r.period == "2026-11"]
    errors = nov.failures
    assert {f.check for f in errors} == {"line_missing", "invoice_total"}
    assert all(f.severity == "error" for f in errors)
    for f in errors:
        acknowledge(f.id, reason="deleted on purpose", by="ops", at=AS_OF)
    summary = reconcile(AS_OF.isoformat(), {"periods_closed": 0})
    assert summary["months"]["2026-11"] == "2026-11: reconciled (26 invoices; 3 acknowledged)"
