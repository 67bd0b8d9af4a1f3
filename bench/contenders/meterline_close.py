"""meterline's close of a month (`--with-close`): a generated month for N subscriptions
ingested into a fresh embedded warehouse, the ledger (SQLite, in the work folder)
migrated and loaded with the catalog and the customers (untimed), the 31 nightly
rollups (meterline.jobs.rollup.backfill), then the close (meterline.jobs.close:
quantities, rating, posting, finalizing). Nothing to compare it with: it reports the
periods closed and the lines posted."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.contenders.common import Outcome
from bench.data import DAY

LAST_DAY = date(2026, 10, 31)
AS_OF = datetime(2026, 11, 4, tzinfo=UTC)


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    data = file
    shutil.rmtree(work / "warehouse", ignore_errors=True)
    (work / "ledger.db").unlink(missing_ok=True)
    os.environ["METERLINE_WAREHOUSE_URL"] = f"chdb://{work / 'warehouse'}"
    os.environ["METERLINE_LEDGER_URL"] = f"sqlite:///{work / 'ledger.db'}"
    os.environ["METERLINE_BILLING_GO_LIVE"] = DAY.isoformat()

    from billing.catalog import load_catalog, read_catalog
    from billing.customers import load_customers_file
    from billing.db import create_ledger_engine, session_factory
    from billing.migrate import upgrade
    from meterline.demo.synthetic import Manifest
    from meterline.jobs.close import close_periods
    from meterline.jobs.rollup import backfill
    from meterline.settings import settings
    from meters.ingest.ingestor import Ingestor
    from meters.migrations import migrate
    from meters.warehouse import connect

    settings.cache_clear()
    config = settings()
    out = Outcome()
    manifest = Manifest.read(data)
    files = [data / f for f in manifest.files]
    warehouse = connect(config.warehouse_url)
    try:
        migrate(warehouse)
        ingestor = Ingestor(warehouse, read_catalog(config.catalog_path).meters,
                            ingested_at=datetime(2026, 11, 1, 1, tzinfo=UTC))
        with out.phase("ingest month"):
            total = ingestor.ingest_files(files).total
    finally:
        warehouse.close()
    out.rows, out.accepted = total.received, total.accepted
    # The ledger first: the rollup reads the catalog loaded there.
    upgrade(config.ledger_url)
    engine = create_ledger_engine(config.ledger_url)
    with session_factory(engine).begin() as session:
        load_catalog(session, config.catalog_path)
        load_customers_file(session, data / manifest.customers_file)
    engine.dispose()
    with out.phase("31 rollups"):
        backfill(DAY, LAST_DAY)
    with out.phase("close"):
        report = close_periods(AS_OF)
    out.groups = report.periods_closed
    out.notes.append(f"{report.periods_closed:,} periods closed, {report.lines_created:,} lines "
                     f"posted, on SQLite")
    return out
