"""The hourly usage rollup: rebuild one UTC day atomically, find the days to rebuild.

A day is built beside the live table (a staging table with its structure) from
`usage_events FINAL`, then swapped in with one `REPLACE PARTITION`, so a crash leaves
the old or the new state of the day, never a half (DESIGN.md invariant 3). Re-running a
day gives the same rows. Each build records what it read in `rollup_state`; a day whose
events changed since (late events: watermark on `ingested_at`) is dirty. See
docs/rollups.md for the table design.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from meters.catalog import Aggregation, MeterCatalog
from meters.sql_files import query
from meters.warehouse.base import Warehouse

_GAUGES = (Aggregation.LATEST, Aggregation.TIME_WEIGHTED)
_PLAIN = (Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX)
# Each INSERT of a build sorts and writes its rows in this many threads (one staging part
# each): writing ~1M rollup rows was a third of a 10M-event day's build in one thread.
_INSERT_THREADS = 2
# The first day rollups can exist for: the lower bound of a dirty_days scan by default.
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class RollupResult:
    """What one day's rebuild read and wrote."""

    day: date
    watermark: datetime | None
    """max(ingested_at) of the events read; None for a day without events."""
    raw_rows: int
    """usage_events rows of the day (before FINAL) when the build started."""
    events: int
    """Events folded into the day's rollup (after FINAL, catalog meters and filters)."""
    rollup_rows: int
    definitions_hash: str


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def partition_of(day: date) -> int:
    """The rollup's partition value for a day (PARTITION BY toYYYYMMDD(hour))."""
    return day.year * 10_000 + day.month * 100 + day.day


def staging_table(day: date) -> str:
    return f"usage_rollup_staging_{partition_of(day)}"


def definitions_hash(catalog: MeterCatalog) -> str:
    """A fingerprint of what a rollup depends on in the catalog: per meter its
    aggregation, dimensions, unique property and filter (not descriptions or units)."""
    doc = {
        m.name: {
            "aggregation": str(m.aggregation),
            "dimensions": sorted(m.dimensions),
            "unique_property": m.unique_property,
            "filter": dict(sorted(m.filter.items())),
        }
        for m in catalog.meters.values()
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def definition_params(catalog: MeterCatalog) -> dict[str, Any]:
    """The catalog's meter definitions as bound parameters for the rollup and raw queries."""
    meters = sorted(catalog.meters.values(), key=lambda m: m.name)
    return {
        "meters": [m.name for m in meters],
        "dimensions": {m.name: sorted(m.dimensions) for m in meters},
        "filters": {m.name: dict(sorted(m.filter.items())) for m in meters},
        "unique_properties": {
            m.name: m.unique_property
            for m in meters
            if m.aggregation is Aggregation.UNIQUE_COUNT and m.unique_property
        },
        "gauge_meters": [m.name for m in meters if m.aggregation in _GAUGES],
        "time_weighted_meters": [
            m.name for m in meters if m.aggregation is Aggregation.TIME_WEIGHTED
        ],
    }


def build_params(catalog: MeterCatalog) -> dict[str, Any]:
    """definition_params plus the meter lists of the build's per-kind queries."""
    meters = sorted(catalog.meters.values(), key=lambda m: m.name)
    plain = [m for m in meters if m.aggregation in _PLAIN]
    return {
        **definition_params(catalog),
        # Grouping by the stored properties is only cheap when they are the dimensions:
        # a meter with other declared properties (a free-form note) gets its dimensions
        # computed per event. Either way the rows are the same.
        "grouped_meters": [m.name for m in plain if set(m.properties) <= set(m.dimensions)],
        "row_meters": [m.name for m in plain if not set(m.properties) <= set(m.dimensions)],
        "unique_meters": [m.name for m in meters if m.aggregation is Aggregation.UNIQUE_COUNT],
    }


# One INSERT per kind of meter, each reading only its meters' events (usage_events is
# sorted by meter first) and computing only what its aggregations need; the columns an
# INSERT leaves out hold empty states and zeros. Skipped when the catalog has no such meter.
_BUILDS = (
    ("rollup/build_counters", ("grouped_meters", "row_meters")),
    ("rollup/build_unique", ("unique_meters",)),
    ("rollup/build_gauges", ("gauge_meters",)),
)


def build_staging(
    warehouse: Warehouse, catalog: MeterCatalog, day: date, staging: str
) -> tuple[datetime | None, int]:
    """Build `day` into a fresh staging table; returns (watermark, raw rows) it read."""
    start, end = day_bounds(day)
    bounds = {"day_start": start, "day_end": end}
    ((watermark, raw_rows),) = warehouse.query_rows(query("rollup/day_snapshot"), bounds)
    raw_rows = int(raw_rows)
    watermark = watermark if raw_rows else None
    warehouse.command(query("rollup/drop_staging", staging=staging))
    warehouse.command(query("rollup/create_staging", staging=staging))
    if raw_rows:
        params = {**bounds, "watermark": watermark, **build_params(catalog)}
        for name, meter_lists in _BUILDS:
            if any(params[key] for key in meter_lists):
                warehouse.command(
                    query(name, staging=staging),
                    params,
                    settings={"max_insert_threads": _INSERT_THREADS},
                )
    return watermark, raw_rows


def swap_in(warehouse: Warehouse, day: date, staging: str, rollup_rows: int) -> None:
    """Make the staging table's day the live one, in one atomic operation."""
    params = {"partition": partition_of(day)}
    if rollup_rows:
        warehouse.command(query("rollup/replace_partition", staging=staging), params)
    else:
        warehouse.command(query("rollup/drop_partition"), params)


def rebuild_day(warehouse: Warehouse, catalog: MeterCatalog, day: date) -> RollupResult:
    """Rebuild the rollup of one UTC day from the raw events, atomically.

    Idempotent: the same events and catalog give the same rows. A day without events
    (or whose events all fall outside the catalog's meters and filters) ends with an
    empty partition.
    """
    staging = staging_table(day)
    fingerprint = definitions_hash(catalog)
    try:
        watermark, raw_rows = build_staging(warehouse, catalog, day, staging)
        ((rollup_rows, events),) = warehouse.query_rows(
            query("rollup/staging_summary", staging=staging)
        )
        rollup_rows, events = int(rollup_rows), int(events or 0)
        swap_in(warehouse, day, staging, rollup_rows)
        # Recorded after the swap: a crash in between only makes the day dirty again.
        warehouse.command(
            query("rollup/record_state"),
            {
                "day": day,
                "watermark": watermark or datetime(1970, 1, 1, tzinfo=UTC),
                "raw_rows": raw_rows,
                "events": events,
                "rollup_rows": rollup_rows,
                "definitions_hash": fingerprint,
            },
        )
    finally:
        warehouse.command(query("rollup/drop_staging", staging=staging))
    return RollupResult(day, watermark, raw_rows, events, rollup_rows, fingerprint)


def dirty_days(
    warehouse: Warehouse,
    *,
    up_to: date,
    since: date | None = None,
    catalog: MeterCatalog | None = None,
) -> list[date]:
    """Days <= up_to whose events changed since they were last rolled up, oldest first.

    A day is dirty when it has events but no rollup_state row, events ingested after its
    recorded watermark, or a raw row count other than the build saw. With `catalog`, a
    day built with other meter definitions is dirty too. `since` bounds the scan (by
    default every day up to `up_to`).
    """
    first = since or _EPOCH
    if first > up_to:
        return []
    rows = warehouse.query_rows(
        query("rollup/dirty_days"),
        {
            "since": day_bounds(first)[0],
            "until": day_bounds(up_to)[1],
            "definitions_hash": definitions_hash(catalog) if catalog else "",
        },
    )
    return [row[0] for row in rows]
