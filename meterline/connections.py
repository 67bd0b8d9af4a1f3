"""Wiring shared by the CLI, the demo and the DAG tasks: settings -> warehouse, catalog."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from meterline.settings import Settings, SettingsError, settings
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestOptions
from meters.migrations import migrate
from meters.warehouse import connect
from meters.warehouse.base import Warehouse

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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
    """The meters of the catalog loaded in the ledger (`meterline catalog load FILE`),
    the one catalog ingest, rollup, close and the audit read (meterline.jobs.catalog)."""
    from meterline.jobs.catalog import loaded_meters

    return loaded_meters(config or settings())


@contextmanager
def ledger_session(config: Settings | None = None, *, write: bool = False) -> Iterator[Session]:
    """A session on the configured ledger; with ``write``, one transaction committed on
    success (rolled back on error). The embedded SQLite ledger migrates itself on first
    use; a PostgreSQL ledger must be at the latest schema (``meterline ledger migrate``).

    Raises SettingsError when the SQLite ledger's folder cannot be created (exit code 2),
    billing.errors.SchemaNotReady for an unmigrated PostgreSQL ledger (2); a ledger that
    cannot be reached raises SQLAlchemy's OperationalError (4, meterline.cli.exits)."""
    from sqlalchemy.engine import make_url

    from billing import migrate
    from billing.db import create_ledger_engine, session_factory

    url = (config or settings()).ledger_url
    try:
        engine = create_ledger_engine(url)
    except OSError as exc:
        raise SettingsError(
            f"METERLINE_LEDGER_URL: cannot create the ledger's folder {exc.filename}:"
            f" {exc.strerror}; choose a folder that exists or can be created"
        ) from None
    try:
        if make_url(url).get_backend_name() == "sqlite":
            migrate.upgrade(engine)
        else:
            migrate.require_head(engine)
        make = session_factory(engine)
        with make.begin() if write else make() as session:
            yield session
    finally:
        engine.dispose()
