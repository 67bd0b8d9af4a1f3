"""What the DAG files share: the asset usage_rollup publishes, the warehouse pool and
the default task arguments. Light on purpose: DAG files import it at parse time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset

USAGE_ROLLUP = Asset("meterline://warehouse/usage_rollup")
# chDB (the embedded warehouse) lets one process at a time open its folder: warehouse
# tasks share this pool, with one slot in embedded mode (`airflow pools set`).
WAREHOUSE_POOL = "meterline_warehouse"
DEFAULT_ARGS: dict[str, Any] = {"retries": 3, "retry_delay": timedelta(minutes=2)}
