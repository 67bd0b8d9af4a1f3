"""Wiring shared by the CLI, the demo and the DAG tasks: settings -> warehouse, catalog."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from meterline.settings import Settings, settings
from meters.catalog import MeterCatalog, load_meters
from meters.ingest import IngestOptions
from meters.migrations import migrate
from meters.warehouse import Warehouse, connect


@contextmanager
def open_warehouse(config: Settings | None = None) -> Iterator[Warehouse]:
    config = config or settings()
    warehouse = connect(config.warehouse_url, lock_timeout_s=config.warehouse_lock_timeout_s)
    try:
        yield warehouse
    finally:
        warehouse.close()


def init_warehouse(warehouse: Warehouse) -> list[str]:
    """Create or upgrade the warehouse schema; idempotent."""
    return migrate(warehouse)


def ingest_options(config: Settings | None = None) -> IngestOptions:
    """The ingest window and batch size from settings."""
    config = config or settings()
    return IngestOptions(
        max_event_age=timedelta(days=config.max_event_age_days),
        future_tolerance=timedelta(seconds=config.future_tolerance_s),
        batch_rows=config.ingest_batch_rows,
    )


def meter_catalog(config: Settings | None = None) -> MeterCatalog:
    config = config or settings()
    return load_meters(config.catalog_path)
