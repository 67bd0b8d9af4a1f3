"""meterline: the nightly pipeline's two heavy steps on one day, through their public
functions: meters.ingest's Ingestor into a fresh embedded (chDB) warehouse, migrated
first and untimed, with the demo catalog (validate, dedup against stored ids, reject
conflicting copies with their reason, store), then meters.rollup's rebuild_day of the
day (staging table, swapped in). Totals are read back from the day's rollup rows."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.contenders.common import Outcome, totals_from
from bench.data import DAY
from billing.catalog import read_catalog
from meters.ingest.ingestor import Ingestor
from meters.migrations import migrate
from meters.rollup import rebuild_day
from meters.warehouse import connect

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "catalog" / "intercom.yaml"

# Per meter: events and value sum of the day's rollup rows, and the rows.
ROLLUP_TOTALS = """
SELECT meter, sum(events), toString(sum(value_sum)), count()
FROM usage_rollup
WHERE hour >= {start:DateTime64(3, 'UTC')} AND hour < {end:DateTime64(3, 'UTC')}
GROUP BY meter
"""


def run(file: Path, work: Path, options: dict[str, Any]) -> Outcome:
    out = Outcome()
    folder = work / "warehouse"
    shutil.rmtree(folder, ignore_errors=True)
    warehouse = connect(f"chdb://{folder}")
    try:
        migrate(warehouse)
        catalog = read_catalog(CATALOG).meters
        start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
        with out.phase("ingest"):
            ingestor = Ingestor(warehouse, catalog, ingested_at=start + timedelta(days=1))
            summary = ingestor.ingest_files([file])
        with out.phase("rollup"):
            rebuild_day(warehouse, catalog, DAY)
        total = summary.total
        if summary.file_errors:
            raise RuntimeError(f"meterline could not read the file: {summary.file_errors}")
        out.rows, out.accepted = total.received, total.accepted
        out.notes.append(f"{total.duplicates:,} exact duplicates, {total.rejected:,} rejected "
                         f"({', '.join(f'{k} {v:,}' for k, v in sorted(total.rejected_by_reason.items())) or 'none'})")
        rows = warehouse.query_rows(ROLLUP_TOTALS, {"start": start, "end": start + timedelta(days=1)})
        out.totals = totals_from({meter: (events, value) for meter, events, value, _ in rows})
        out.groups = sum(int(n) for *_, n in rows)
    finally:
        warehouse.close()
    return out
