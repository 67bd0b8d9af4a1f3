"""The world of tests/meters/test_rollup_crash.py, built and read by whichever process
may open the warehouse: the test process (ClickHouse server backend), or a subprocess of
its own (chDB: one process per folder), `python -m tests.meters.rollup_crash_world
build|inspect WAREHOUSE_URL LEDGER_URL` printing one JSON object.

Three UTC days of usage of the scenarios' catalog (a count meter with a dimension, a
unique count and a time-weighted gauge, so every kind of rollup build runs): the first
two rolled up by their nightly runs, then late events for both and the third day's
events ingested, so that `meterline rollup --day 2026-11-03` rebuilds the third day and
then the two earlier ones, and `meterline backfill` rebuilds all three.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import billing
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.init import init_schemas
from meterline.jobs.rollup import rollup_day
from meterline.settings import Settings, load_settings
from meters.ingest.ingestor import ingest_events
from meters.rollup import dirty_days, rebuild_day

CATALOG = Path(__file__).resolve().parents[1] / "scenarios" / "catalog.yaml"
DAYS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]

ROWS = (
    "SELECT hour, customer_id, meter, toString(mapSort(dimensions)), events, value_sum,"
    " value_max, hex(unique_state), hex(latest_state), first_at, tw_integral,"
    " max_ingested_at FROM usage_rollup"
    " ORDER BY meter, customer_id, hour, toString(mapSort(dimensions))"
)
STAGING_NAMES = (
    "SELECT name FROM system.tables WHERE database = currentDatabase()"
    " AND startsWith(name, 'usage_rollup_staging_')"
)


def config_of(warehouse_url: str, ledger_url: str) -> Settings:
    return load_settings(warehouse_url=warehouse_url, ledger_url=ledger_url, catalog_path=CATALOG)


def _events(tag: str, day: date, hour: int, count: int) -> list[dict[str, Any]]:
    """`count` events of each meter for two customers on `day` from `hour` (UTC)."""
    out: list[dict[str, Any]] = []
    for customer in ("c_one", "c_two"):
        for i in range(count):
            at = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) + timedelta(minutes=7 * i)
            common = {"customer_id": customer, "timestamp": at.isoformat()}
            channel = ("chat", "email", "phone")[i % 3]
            out += [
                {
                    **common,
                    "event_id": f"{tag}-r-{customer}-{i}",
                    "meter": "resolution",
                    "properties": {"channel": channel},
                },
                {
                    **common,
                    "event_id": f"{tag}-u-{customer}-{i}",
                    "meter": "active_user",
                    "properties": {"user_id": f"user-{i % 4}"},
                },
                {
                    **common,
                    "event_id": f"{tag}-s-{customer}-{i}",
                    "meter": "seats",
                    "value": str(3 + i % 2),
                },
            ]
    return out


def build(config: Settings) -> dict[str, Any]:
    """Migrate both stores, load the catalog; ingest and roll up the first two days as
    their nightly runs would; then ingest late events for them and the third day."""
    init_schemas(config)
    with ledger_session(config, write=True) as session:
        billing.load_catalog(session, CATALOG)
    catalog = meter_catalog(config)
    first, second, third = DAYS
    with open_warehouse(config) as wh:
        ingest_events(
            wh,
            catalog,
            _events("a", first, 8, 5) + _events("b", second, 9, 4),
            source="nightly",
            ingested_at=datetime(2026, 11, 3, 0, 30, tzinfo=UTC),
        )
    for day in (first, second):
        rollup_day(day, config=config)
    with open_warehouse(config) as wh:
        summary = ingest_events(
            wh,
            catalog,
            _events("late1", first, 20, 2)
            + _events("late2", second, 21, 3)
            + _events("c", third, 10, 6),
            source="late and nightly",
            ingested_at=datetime(2026, 11, 4, 0, 30, tzinfo=UTC),
        )
    return {"accepted": summary.total.accepted}


def _rows(wh: Any) -> list[list[str]]:
    return [[str(value) for value in row] for row in wh.query_rows(ROWS)]


def inspect(config: Settings) -> dict[str, Any]:
    """The rollup as it is, what is left or dirty, then the rollup a clean rebuild of
    every day gives (rebuilt in place: call it last)."""
    catalog = meter_catalog(config)
    with open_warehouse(config) as wh:
        found = {
            "rows": _rows(wh),
            "staging_tables": sorted(row[0] for row in wh.query_rows(STAGING_NAMES)),
            "dirty_days": [d.isoformat() for d in dirty_days(wh, up_to=DAYS[-1], catalog=catalog)],
            "rolled_up_events": int(wh.query_rows("SELECT sum(events) FROM usage_rollup")[0][0]),
            "raw_events": int(wh.query_rows("SELECT uniqExact(event_id) FROM usage_events")[0][0]),
        }
        for day in DAYS:
            rebuild_day(wh, catalog, day)
        found["clean_rows"] = _rows(wh)
    return found


def main() -> None:
    mode, warehouse_url, ledger_url = sys.argv[1:4]
    config = config_of(warehouse_url, ledger_url)
    print(json.dumps(build(config) if mode == "build" else inspect(config)))


if __name__ == "__main__":
    main()
