"""A generated month, run through the real pipeline once per test session, and cheap
copies of it for the tests that break something on purpose.

The month: 30 customers of meterline.demo.synthetic over November 2026 (with exact and
conflicting re-sends and malformed rows; seed 7 puts a volume-plan customer across the
mid-November price change), ingested day by day as the nightly delivery would arrive,
rolled up with meterline.jobs.rollup.backfill, customers and catalog loaded into a SQLite
ledger, closed with meterline.jobs.close.close_periods. Every step gets `config=` pointing at
a database of its own in the session's chDB folder, through the running test's warehouse
backend (tests/conftest.py runs warehouse tests on chDB and on the server backend).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from meterline.demo.run import delivery_time
from meterline.demo.synthetic import GeneratorConfig, Manifest, generate
from meterline.jobs.close import CloseReport, close_periods
from meterline.jobs.rollup import backfill
from meterline.settings import Settings, load_settings
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import Ingestor, ingest_events
from meters.migrations import migrate
from meters.warehouse.base import Warehouse
from tests.conftest import (
    fresh_warehouse,
    open_test_warehouse,
    selected_backends,
    warehouse_url,
)

START = date(2026, 11, 1)
DAYS = 30
# Every period of the month has ended, plus the grace period, in every timezone.
AS_OF = datetime(2026, 12, 5, tzinfo=UTC)
TABLES = (
    "usage_events",
    "usage_event_ids",
    "usage_events_rejected",
    "ingest_log",
    "usage_rollup",
    "rollup_state",
)


@dataclass
class World:
    """One pipeline's warehouse database, ledger and settings."""

    warehouse: Warehouse
    config: Settings
    meters: MeterCatalog
    folder: Path
    close: CloseReport | None = None

    @property
    def ledger_path(self) -> Path:
        return Path(self.config.ledger_url.removeprefix("sqlite:///"))

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Plain SQL on the ledger file: for looking, and, in the tests that break the
        books on purpose, for tampering the way a buggy program would."""
        with closing(sqlite3.connect(self.ledger_path)) as conn, conn:
            return conn.execute(statement, params).fetchall()

    def line_ids(self) -> list[int]:
        return [r[0] for r in self.sql("SELECT id FROM invoice_lines ORDER BY id")]


def ingest_resolution(
    world: World, event_id: str, customer: str, at: datetime, *, ingested_at: datetime
) -> None:
    """One fin_resolution event at `at` (chat), delivered at `ingested_at`: a late event
    when that is after the close."""
    ingest_events(
        world.warehouse,
        world.meters,
        [
            {
                "event_id": event_id,
                "customer_id": customer,
                "meter": "fin_resolution",
                "timestamp": at.isoformat(),
                "properties": {"channel": "chat"},
            }
        ],
        source="late delivery",
        ingested_at=ingested_at,
    )


def settings_for(url: str, ledger: Path) -> Settings:
    return load_settings(
        warehouse_url=url,
        ledger_url=f"sqlite:///{ledger}",
        billing_go_live=START,
    )


def load_ledger(config: Settings, customers: Path) -> None:
    upgrade(config.ledger_url)
    engine = create_ledger_engine(config.ledger_url)
    try:
        with session_factory(engine).begin() as session:
            billing.load_catalog(session, config.catalog_path)
            billing.load_customers_file(session, customers)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def generated_month(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generator's files for the month (written once per session)."""
    data = tmp_path_factory.mktemp("audit-data")
    generate(
        GeneratorConfig(
            customers=30,
            start=START,
            days=DAYS,
            seed=7,
            out=data,
            duplicates=0.01,
            malformed=0.01,
        )
    )
    return data


@pytest.fixture(scope="session")
def _months(request: pytest.FixtureRequest) -> Iterator[dict[str, World]]:
    """The closed month per warehouse backend, built on first use, kept for the session."""
    if "clickhouse" in selected_backends():
        # Started first, so it stops after the months' databases are dropped.
        request.getfixturevalue("clickhouse_server")
    built: dict[str, World] = {}
    with ExitStack() as stack:
        built["_stack"] = stack  # type: ignore[assignment]
        yield built


@pytest.fixture
def month(
    _months: dict[str, Any],
    warehouse_backend: str,
    chdb_folder: Path,
    generated_month: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    """The generated month, closed, on the running test's backend. Read-only: tests that
    change it use `copy_of_month`."""
    if warehouse_backend not in _months:
        tmp = tmp_path_factory.mktemp(f"audit-month-{warehouse_backend}")
        wh = _months["_stack"].enter_context(fresh_warehouse(chdb_folder))
        config = settings_for(warehouse_url(wh), tmp / "ledger.db")
        meters = billing.read_catalog(config.catalog_path).meters
        for offset, name in enumerate(Manifest.read(generated_month).files):
            day = START + timedelta(days=offset)
            Ingestor(wh, meters, ingested_at=delivery_time(day)).ingest_files(
                [generated_month / name]
            )
        load_ledger(config, generated_month / "customers.jsonl")
        backfill(START, START + timedelta(days=DAYS - 1), config=config)
        report = close_periods(AS_OF, config=config)
        _months[warehouse_backend] = World(wh, config, meters, chdb_folder, report)
    world: World = _months[warehouse_backend]
    return world


@pytest.fixture
def copy_of_month(month: World, tmp_path: Path) -> Iterator[World]:
    """A private copy of the month (warehouse tables and ledger file) to break."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    wh = open_test_warehouse(month.folder, database)
    try:
        migrate(wh)
        for table in TABLES:
            wh.command(
                f"INSERT INTO {database}.{table} SELECT * FROM {month.warehouse.database}.{table}"
            )
        ledger = tmp_path / "ledger.db"
        with (
            closing(sqlite3.connect(month.ledger_path)) as source,
            closing(sqlite3.connect(ledger)) as target,
        ):
            source.backup(target)
        config = settings_for(warehouse_url(wh), ledger)
        yield World(wh, config, month.meters, month.folder, month.close)
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()
