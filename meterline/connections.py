"""Wiring shared by the CLI, the demo and the DAG tasks: settings -> warehouse, ledger,
catalog. The one warehouse opener (`open_warehouse`) and the one ledger opener
(`ledger_session`).

Migrations are explicit: only `meterline init` (meterline.jobs.init) creates or upgrades
a schema. Both openers check the schema version first and stop, with one line saying
what to run, when it is not the one this code ships: meters.migrations.SchemaNotReady
(warehouse) or billing.errors.SchemaNotReady (ledger), exit code 2 on the command line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from meterline.settings import Settings, SettingsError, settings
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestOptions
from meters.migrations import migrate, require_current
from meters.warehouse import connect
from meters.warehouse.base import Warehouse

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session


@contextmanager
def open_warehouse(
    config: Settings | None = None, *, check_schema: bool = True
) -> Iterator[Warehouse]:
    """The configured warehouse, closed on exit. Its schema must be the one this code
    ships (meters.migrations.require_current: SchemaNotReady, exit code 2, says to run
    `meterline init`); only the init job opens it with ``check_schema=False``.

    Raises WarehouseUnavailable / WarehouseLockTimeout when it cannot be reached (4)."""
    config = config or settings()
    warehouse = connect(config.warehouse_url, lock_timeout_s=config.warehouse_lock_timeout_s)
    try:
        if check_schema:
            require_current(warehouse)
        yield warehouse
    finally:
        warehouse.close()


def init_warehouse(warehouse: Warehouse) -> list[str]:
    """Create or upgrade the warehouse schema; idempotent. The names applied. Called by
    the init job (meterline.jobs.init) only."""
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
def ledger_engine(config: Settings | None = None) -> Iterator[Engine]:
    """An engine on the configured ledger, disposed on exit; no schema check (the init
    job's; every other path uses ``ledger_session``).

    Raises SettingsError when the SQLite ledger's folder cannot be created (exit code 2)."""
    from billing.db import create_ledger_engine

    try:
        engine = create_ledger_engine((config or settings()).ledger_url)
    except OSError as exc:
        raise SettingsError(
            f"METERLINE_LEDGER_URL: cannot create the ledger's folder {exc.filename}:"
            f" {exc.strerror}; choose a folder that exists or can be created"
        ) from None
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def ledger_session(config: Settings | None = None, *, write: bool = False) -> Iterator[Session]:
    """A session on the configured ledger; with ``write``, one transaction committed on
    success (rolled back on error). The ledger must be at the schema revision this code
    ships, SQLite and PostgreSQL alike (`meterline init` creates or upgrades it).

    Raises SettingsError when the SQLite ledger's folder cannot be created (exit code 2),
    billing.errors.SchemaNotReady when its schema is not this code's (2, the message
    says what to run); a ledger that cannot be reached raises SQLAlchemy's
    OperationalError (4, meterline.cli.exits)."""
    from billing.db import session_factory
    from billing.migrate import require_head

    with ledger_engine(config) as engine:
        require_head(engine)
        make = session_factory(engine)
        with make.begin() if write else make() as session:
            yield session
