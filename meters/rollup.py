"""The hourly usage rollup: rebuild one UTC day atomically, find the days to rebuild.

A day is built beside the live table (a staging table with its structure) from
`usage_events FINAL`, then swapped in with one `REPLACE PARTITION`, so a crash leaves
the old or the new state of the day, never a half (DESIGN.md invariant 3). Re-running a
day gives the same rows. Each build records what it read in `rollup_state`; a day whose
events changed since (late events: watermark on `ingested_at`) is dirty. A nightly run
finds its dirty days by a scan (`plan_scan`, `scan_dirty_days`, `record_scan`) of the
late-event lookback plus every day the ingests since the previous scan wrote, however
old (the ingest journal's event timestamps). See docs/rollups.md for the table design.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from meters.catalog import Aggregation, MeterCatalog
from meters.crashpoints import crash_point
from meters.sql_files import query
from meters.warehouse.base import Warehouse

_GAUGES = (Aggregation.LATEST, Aggregation.TIME_WEIGHTED)
_PLAIN = (Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX)
# Each INSERT of a build sorts and writes its rows in this many threads (one staging part
# each): writing ~1M rollup rows was a third of a 10M-event day's build in one thread.
_INSERT_THREADS = 2
# The first day rollups can exist for: the lower bound of a dirty_days scan by default.
_EPOCH = date(1970, 1, 1)
# The staging tables of the builds running in this process (drop_leftover_staging).
_building: set[str] = set()
_building_lock = threading.Lock()
# An ingest's journal entry is read by a scan that starts at least this long after it was
# written: a run committing while the previous scan read the journal (or whose entry had
# not reached the replica it read) is read again. Re-reading a run costs one more look at
# its days, never a wrong result.
SCAN_MARGIN = timedelta(minutes=15)


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


def staging_table(day: date, build: str) -> str:
    """The staging table of one build of `day`: two builds of a day at once (a rollup by
    hand during the nightly one) never write into one table. They did, under one name
    per day: a day could be swapped in counted twice, and recorded as clean."""
    return f"usage_rollup_staging_{partition_of(day)}_{build}"


def drop_leftover_staging(warehouse: Warehouse, day: date) -> None:
    """Drop the staging tables of `day` no build of this process is using: those a
    killed build left (an older version's `usage_rollup_staging_YYYYMMDD` too). A build
    of the day in another process at that moment fails loudly, and its retry rebuilds."""
    prefix = f"usage_rollup_staging_{partition_of(day)}"
    with _building_lock:
        mine = set(_building)
    for (name,) in warehouse.query_rows(query("rollup/staging_tables"), {"prefix": prefix}):
        if name not in mine:
            warehouse.command(query("rollup/drop_staging", staging=name))


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
    staging = staging_table(day, uuid.uuid4().hex[:12])
    fingerprint = definitions_hash(catalog)
    with _building_lock:
        _building.add(staging)
    try:
        drop_leftover_staging(warehouse, day)
        watermark, raw_rows = build_staging(warehouse, catalog, day, staging)
        ((rollup_rows, events),) = warehouse.query_rows(
            query("rollup/staging_summary", staging=staging)
        )
        rollup_rows, events = int(rollup_rows), int(events or 0)
        crash_point("rollup.after_staging")
        swap_in(warehouse, day, staging, rollup_rows)
        crash_point("rollup.after_swap")
        # Recorded after the swap: a crash in between only makes the day dirty again.
        # Only while the live day is this build's (another build of the day may have
        # swapped in since): else the day keeps the record of what is live, or reads
        # as dirty, and is rebuilt by the next run.
        warehouse.command(
            query("rollup/record_state"),
            {
                "partition": partition_of(day),
                "day": day,
                "watermark": watermark or datetime(1970, 1, 1, tzinfo=UTC),
                "raw_rows": raw_rows,
                "events": events,
                "rollup_rows": rollup_rows,
                "definitions_hash": fingerprint,
            },
        )
    finally:
        try:
            warehouse.command(query("rollup/drop_staging", staging=staging))
        finally:
            with _building_lock:
                _building.discard(staging)
    crash_point("rollup.after_day")
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


DayRange = tuple[date, date]


def merge_ranges(ranges: Iterable[DayRange]) -> tuple[DayRange, ...]:
    """Inclusive day ranges merged where they overlap or touch, oldest first; a range
    whose end is before its start is dropped."""
    merged: list[list[date]] = []
    for first, last in sorted(r for r in ranges if r[0] <= r[1]):
        if merged and first <= merged[-1][1] + timedelta(days=1):
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return tuple((first, last) for first, last in merged)


@dataclass(frozen=True)
class ScanPlan:
    """The days a nightly rollup's dirty-day scan reads (`ranges`, inclusive, merged,
    oldest first, none after `up_to`), and what it hands to the next scan: `scanned_at`
    (the warehouse's clock before the journal was read: the next scan reads the ingests
    journaled since, minus SCAN_MARGIN) and `carried` (days after `up_to` those ingests
    wrote, for a later scan to cover). `first` is True when no scan was ever recorded:
    the scan then covers every day up to `up_to` once."""

    scanned_at: datetime
    up_to: date
    lookback_from: date
    ranges: tuple[DayRange, ...]
    carried: DayRange | None
    first: bool

    @property
    def days(self) -> int:
        """How many days the scan covers."""
        return sum((last - first).days + 1 for first, last in self.ranges)


def plan_scan(warehouse: Warehouse, *, up_to: date, lookback_from: date) -> ScanPlan:
    """What a nightly run's dirty-day scan must read: the lookback days
    [lookback_from, up_to] (late events of the normal delivery), plus every event day
    of the ingests committed or rolled back since the previous scan (ingest_runs: the
    range of their accepted events' timestamps), however old: `ingest --as-of` history
    or a day older than the lookback is then rebuilt by the next nightly run, and the
    scan still reads only the days something was written to. Days after `up_to` are
    carried to a later scan. Before the first recorded scan, every day up to `up_to`.
    Reads the journal; writes nothing (record_scan does, after the rebuilds)."""
    ((now, scans, previous, carried_from, carried_to),) = warehouse.query_rows(
        query("rollup/scan_cursor")
    )
    first = int(scans) == 0
    journal_since = datetime(1970, 1, 1, tzinfo=UTC) if first else previous - SCAN_MARGIN
    touched: list[DayRange] = [
        (first_day, last_day)
        for _run, first_day, last_day in warehouse.query_rows(
            query("rollup/changed_by_ingests"), {"since": journal_since}
        )
    ]
    if not first and carried_to > _EPOCH:
        touched.append((carried_from, carried_to))
    wanted = [(_EPOCH if first else lookback_from, up_to)]
    later: list[DayRange] = []
    for first_day, last_day in touched:
        wanted.append((first_day, min(last_day, up_to)))
        if last_day > up_to:
            later.append((max(first_day, up_to + timedelta(days=1)), last_day))
    carry = (min(r[0] for r in later), max(r[1] for r in later)) if later else None
    return ScanPlan(now, up_to, lookback_from, merge_ranges(wanted), carry, first)


def scan_dirty_days(
    warehouse: Warehouse, plan: ScanPlan, catalog: MeterCatalog | None = None
) -> list[date]:
    """dirty_days over each range of the plan, oldest first. With `catalog`, the lookback
    days built with other meter definitions are dirty too; older days only when their
    events changed (rebuilding history for a catalog change is a backfill decision)."""
    found: set[date] = set()
    lookback = plan.lookback_from
    for first, last in plan.ranges:
        if first < lookback:
            older_last = min(last, lookback - timedelta(days=1))
            found.update(dirty_days(warehouse, up_to=older_last, since=first))
            first = lookback
        if first <= last:
            found.update(dirty_days(warehouse, up_to=last, since=first, catalog=catalog))
    return sorted(found)


def record_scan(warehouse: Warehouse, plan: ScanPlan, *, day: date, dirty: int) -> None:
    """Record a completed scan (every dirty day it found rebuilt): the cursor of the next."""
    carried = plan.carried or (_EPOCH, _EPOCH)
    warehouse.command(
        query("rollup/record_scan"),
        {
            "scanned_at": plan.scanned_at,
            "day": day,
            "since": plan.ranges[0][0] if plan.ranges else plan.up_to,
            "up_to": plan.up_to,
            "carried_from": carried[0],
            "carried_to": carried[1],
            "dirty_days": dirty,
        },
    )


def earliest_event_ingested_after(warehouse: Warehouse, after: datetime) -> datetime | None:
    """The earliest event timestamp of the committed ingests with an ingest time after
    `after` (the ingest journal): how old the events a reader that saw everything
    ingested up to `after` has not seen may be. None when no such ingest wrote events."""
    ((earliest, runs),) = warehouse.query_rows(
        query("rollup/earliest_event_ingested_after"), {"after": after}
    )
    return earliest if int(runs) else None
