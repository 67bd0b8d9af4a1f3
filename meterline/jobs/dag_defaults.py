"""What the DAG files share: the assets, the warehouse pool, the default task arguments
and the schema rule for tasks. Light on purpose: DAG files import it at parse time, so it
imports Airflow's SDK and nothing of the warehouse or the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

# The day's usage events are stored: usage_ingest publishes it (the event names the day),
# usage_rollup follows it.
USAGE_EVENTS = Asset("meterline://warehouse/usage_events")
USAGE_ROLLUP = Asset("meterline://warehouse/usage_rollup")
# chDB (the embedded warehouse) lets one process at a time open its folder: warehouse
# tasks share this pool, with one slot in embedded mode (`airflow pools set`).
WAREHOUSE_POOL = "meterline_warehouse"
DEFAULT_ARGS: dict[str, Any] = {"retries": 3, "retry_delay": timedelta(minutes=2)}


@contextmanager
def schema_checked() -> Iterator[None]:
    """Around a task's call: a warehouse or ledger schema that is not this code's fails
    the task at once, without its retries (retrying cannot migrate it; the message says
    to run `meterline init`, or the meterline_init DAG). Other errors are re-raised as
    they are."""
    try:
        yield
    except Exception as exc:
        from billing.errors import SchemaNotReady as LedgerSchemaNotReady
        from meters.migrations import SchemaNotReady as WarehouseSchemaNotReady

        if isinstance(exc, LedgerSchemaNotReady | WarehouseSchemaNotReady):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        raise
