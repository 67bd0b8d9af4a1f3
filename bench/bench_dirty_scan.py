"""The nightly rollup's scan for dirty days, before and after it read the ingest journal.

    python bench/bench_dirty_scan.py [--days 90] [--events-per-day 300000] [--repeat 5]

Generates `--days` UTC days of events straight into usage_events (one delivery per day,
ingested at 00:30 the next day, each journaled as a committed ingest run), records each
day as rolled up (rollup_state, as rebuild_day would), and a previous scan an hour ago.
Then times, on the last day's nightly run (`--repeat` times, median and range):

- before: `dirty_days` over the lookback only (Settings.late_lookback, 47 days);
- after, a normal night: `plan_scan` + `scan_dirty_days` (the lookback plus the days of
  the ingests since the previous scan: the night's delivery);
- after, the night after a backfill: the same with one more ingest of a day 60 days old
  (its events stored), which the scan finds dirty;
- after, the first scan (no scan recorded yet): every day once.

Nothing is rebuilt: only the scans are timed (wall clock and the process's CPU time). The
warehouse is a fresh chDB folder under bench/out/.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "dirty_scan"
LOOKBACK = timedelta(days=47)

EVENTS = """
INSERT INTO usage_events
    (event_id, customer_id, meter, timestamp, value, properties, source, source_line,
     content_hash, ingested_at, ingest_id)
SELECT
    concat({prefix:String}, toString(number)),
    concat('cus_', toString(number % 25000)),
    'fin_resolution',
    {first:DateTime64(3, 'UTC')} + toIntervalMillisecond(intDiv(number * 86400000, {per_day:UInt64})),
    1,
    map('channel', 'chat'),
    'bench',
    number,
    number,
    toStartOfDay(
        {first:DateTime64(3, 'UTC')} + toIntervalMillisecond(intDiv(number * 86400000, {per_day:UInt64}))
    ) + toIntervalDay(1) + toIntervalMinute(30),
    concat('bench-', toString(toDate(
        {first:DateTime64(3, 'UTC')} + toIntervalMillisecond(intDiv(number * 86400000, {per_day:UInt64}))
    )))
FROM numbers({count:UInt64})
"""

STATE = """
INSERT INTO rollup_state (day, watermark, raw_rows, events, rollup_rows, definitions_hash, version)
SELECT toDate(timestamp, 'UTC'), max(ingested_at), count(), count(), 0, {hash:String}, 1
FROM usage_events GROUP BY toDate(timestamp, 'UTC')
"""

RUNS = """
INSERT INTO ingest_runs
    (ingest_id, ingested_at, heartbeat_at, owner, sources, min_ts, max_ts, state, version)
SELECT ingest_id, max(ingested_at), {heartbeat:DateTime64(3, 'UTC')}, 'bench', ['bench'],
       min(timestamp), max(timestamp), 'committed', 1
FROM usage_events WHERE ingest_id IN {ids:Array(String)} GROUP BY ingest_id
"""


# (wall clock, CPU time of this process: the engine runs in-process, and on a shared
# machine its CPU time varies far less than the wall clock)
Times = list[tuple[float, float]]


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Times, Any]:
    seconds: Times = []
    result = None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = fn()
        seconds.append((time.perf_counter() - started, time.process_time() - cpu))
    return seconds, result


def show(label: str, seconds: Times, result: object) -> None:
    wall = [w for w, _ in seconds]
    cpu = [c for _, c in seconds]
    print(
        f"{label:<46} wall median {statistics.median(wall):6.3f}s"
        f" ({min(wall):.3f}-{max(wall):.3f}), CPU median {statistics.median(cpu):6.3f}s"
        f" ({min(cpu):.3f}-{max(cpu):.3f})  {result}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--events-per-day", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from billing.catalog import read_catalog
    from meters.migrations import migrate
    from meters.rollup import definitions_hash, dirty_days, plan_scan, scan_dirty_days
    from meters.warehouse import connect

    catalog = read_catalog(ROOT / "catalog" / "intercom.yaml").meters
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    wh = connect(f"chdb://{OUT / 'warehouse'}")
    migrate(wh)
    first = date(2026, 8, 1)
    last = first + timedelta(days=args.days - 1)
    today = last + timedelta(days=1)  # the nightly run of `last`'s delivery: rollup of today
    started = time.perf_counter()
    wh.command(
        EVENTS,
        {
            "prefix": "e",
            "first": datetime.combine(first, datetime.min.time(), tzinfo=UTC),
            "per_day": args.events_per_day,
            "count": args.events_per_day * args.days,
        },
    )
    wh.command(STATE, {"hash": definitions_hash(catalog)})
    (now,) = wh.query_rows("SELECT now64(3, 'UTC')")[0]
    older = [f"bench-{first + timedelta(days=n)}" for n in range(args.days - 1)]
    wh.command(RUNS, {"heartbeat": now - timedelta(days=1), "ids": older})
    wh.command(
        "INSERT INTO rollup_scans VALUES ({at:DateTime64(3, 'UTC')}, {day:Date}, {day:Date},"
        " {day:Date}, '1970-01-01', '1970-01-01', 0)",
        {"at": now - timedelta(hours=1), "day": last},
    )
    # The night's delivery (the last day's events) is journaled now: after that scan.
    wh.command(RUNS, {"heartbeat": now, "ids": [f"bench-{last}"]})
    total = wh.query_rows("SELECT count() FROM usage_events")[0][0]
    print(
        f"{total:,} events over {args.days} days ({first}..{last}) written in"
        f" {time.perf_counter() - started:.1f}s; nightly run of {today}, lookback"
        f" from {today - LOOKBACK}"
    )

    up_to = today - timedelta(days=1)

    def old_scan() -> str:
        return f"{len(dirty_days(wh, up_to=up_to, since=today - LOOKBACK, catalog=catalog))} dirty"

    def journal_only() -> str:
        plan = plan_scan(wh, up_to=up_to, lookback_from=today - LOOKBACK)
        return f"ranges {[(str(a), str(b)) for a, b in plan.ranges]}"

    def new_scan() -> str:
        plan = plan_scan(wh, up_to=up_to, lookback_from=today - LOOKBACK)
        dirty = scan_dirty_days(wh, plan, catalog)
        return f"{plan.days} days in range, {len(dirty)} dirty"

    # Interleaved, so that the shared machine's load falls on both alike.
    before: Times = []
    after: Times = []
    for _ in range(args.repeat):
        before += timed(old_scan, 1)[0]
        after += timed(new_scan, 1)[0]
    show("before: lookback only", before, old_scan())
    show("after: normal night (lookback + journal)", after, new_scan())
    seconds, found = timed(journal_only, args.repeat)
    show("  of which reading the journal (plan_scan)", seconds, found)

    old_day = today - timedelta(days=60)
    wh.command(
        EVENTS,
        {
            "prefix": "backfill-",
            "first": datetime.combine(old_day, datetime.min.time(), tzinfo=UTC),
            "per_day": 1000,
            "count": 1000,
        },
    )
    wh.command(RUNS, {"heartbeat": now, "ids": [f"bench-{old_day}"]})
    seconds, found = timed(new_scan, args.repeat)
    show(f"after: a backfill of {old_day} (60 days old)", seconds, found)

    wh.command("TRUNCATE TABLE rollup_scans")
    seconds, found = timed(new_scan, args.repeat)
    show("after: first scan (none recorded: all days)", seconds, found)
    wh.close()


if __name__ == "__main__":
    main()
