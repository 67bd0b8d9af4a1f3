"""Benchmarks of the pipeline's two heavy steps.

    python bench/bench_pipeline.py rollup [--events 10000000] [--repeat 3] [--fresh]
        Roll up one generated day (meterline's rebuild_day: FINAL read, aggregate
        states, staging table, REPLACE PARTITION) and, in the same run, the raw
        engine's plain GROUP BY of the same events, --repeat times in turn. Target:
        within 2x. The day is generated in chunks of 10M events (one seed each) and
        ingested by meterline's Ingestor, once: later runs reuse the warehouse.
    python bench/bench_pipeline.py close [--customers 25000]
        Close a month for N subscriptions (quantities, rating, posting, finalizing),
        after generating, ingesting and rolling up their month. Reports seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

# The raw engine's plain GROUP BY of the same events at the rollup's granularity
# (customer, meter, properties, hour): no FINAL, no dimension rules, no states, no write.
PLAIN_GROUP_BY = """
SELECT customer_id, meter, properties, toStartOfHour(timestamp) AS hour,
       count(), sum(value), max(value), argMax(value, timestamp)
FROM usage_events
WHERE timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}
GROUP BY customer_id, meter, properties, hour
FORMAT Null
"""
# The generator holds a whole day in memory (~11 GB for 50M events): larger days are
# generated in chunks of at most this many events, each with its own seed (so its own
# event ids) over the same 25,000 customers, and ingested together.
ROLLUP_CHUNK = 10_000_000


def _timed(label: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:8.2f}s")
    return result, seconds


def bench_rollup(events: int, repeat: int = 3, fresh: bool = False) -> None:
    import json

    from billing.catalog import read_catalog
    from meterline.demo.synthetic import GeneratorConfig, generate
    from meters.ingest.ingestor import Ingestor
    from meters.migrations import migrate
    from meters.rollup import rebuild_day
    from meters.warehouse import connect

    day = date(2026, 10, 1)
    chunks = [ROLLUP_CHUNK] * (events // ROLLUP_CHUNK) + ([events % ROLLUP_CHUNK] if events % ROLLUP_CHUNK else [])
    files = []
    for n, size in enumerate(chunks):
        # Chunk 0 of every size is seed 5, as the single-file benchmark always was.
        data = OUT / "rollup_days" / f"{size}_seed{5 + n}"
        if not (data / "manifest.json").exists():
            _timed(f"generate {size:,} (seed {5 + n})", generate, GeneratorConfig(
                customers=25_000, start=day, days=1, seed=5 + n, out=data, events_per_day=size, overwrite=True))
        files.append(data / "events" / f"{day.isoformat()}.parquet")
    folder = OUT / f"rollup_{events}"
    marker = folder / "ingested.json"
    catalog = read_catalog(ROOT / "catalog" / "intercom.yaml").meters
    if fresh or not marker.exists():
        marker.unlink(missing_ok=True)
        shutil.rmtree(folder / "warehouse", ignore_errors=True)
        warehouse = connect(f"chdb://{folder / 'warehouse'}")
        migrate(warehouse)
        ingestor = Ingestor(warehouse, catalog, ingested_at=datetime(2026, 10, 2, tzinfo=UTC))
        summary, _ = _timed("ingest (meterline Ingestor)", ingestor.ingest_files, files)
        _timed("OPTIMIZE usage_events FINAL", warehouse.command, "OPTIMIZE TABLE usage_events FINAL")
        marker.write_text(json.dumps({"accepted": summary.total.accepted, "files": [str(f) for f in files]}))
    else:
        warehouse = connect(f"chdb://{folder / 'warehouse'}")
        print("reusing the ingested warehouse (--fresh to re-ingest)")
    accepted = json.loads(marker.read_text())["accepted"]
    ((parts,),) = warehouse.query_rows(
        "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'usage_events' AND active")
    print(f"events {accepted:,} in {len(files)} file(s); usage_events: {parts} active part(s) (both reads see the same)")
    start = datetime(2026, 10, 1, tzinfo=UTC)
    ratios, cpu_ratios = [], []
    for i in range(1, repeat + 1):
        # chDB runs in this process: its CPU seconds say what each read cost even when
        # other work on the machine stretches the wall clock.
        cpu = time.process_time()
        result, ours = _timed(f"[{i}] rebuild_day (meterline)", rebuild_day, warehouse, catalog, day)
        cpu, ours_cpu = time.process_time(), time.process_time() - cpu
        _, raw = _timed(f"[{i}] plain GROUP BY (raw engine)", warehouse.command, PLAIN_GROUP_BY,
                        {"start": start, "end": start + timedelta(days=1)})
        raw_cpu = time.process_time() - cpu
        ratios.append(ours / raw)
        cpu_ratios.append(ours_cpu / raw_cpu)
        print(f"[{i}] ratio {ours / raw:.2f}x wall, {ours_cpu / raw_cpu:.2f}x CPU ({ours_cpu:.2f} vs "
              f"{raw_cpu:.2f} CPU-s; {result.events:,} events, {result.rollup_rows:,} rollup rows)")
    ratios.sort()
    print(f"wall ratio over {repeat} runs: {ratios[0]:.2f}x-{ratios[-1]:.2f}x, median {ratios[len(ratios) // 2]:.2f}x; "
          f"CPU ratio {min(cpu_ratios):.2f}x-{max(cpu_ratios):.2f}x (target <= 2x)")
    warehouse.close()


def bench_close(customers: int) -> None:
    from billing.catalog import load_catalog, read_catalog
    from billing.customers import load_customers_file
    from billing.db import create_ledger_engine, session_factory
    from billing.migrate import upgrade
    from meterline.demo.synthetic import GeneratorConfig, generate
    from meterline.jobs.close import close_periods
    from meterline.jobs.rollup import backfill
    from meterline.settings import settings
    from meters.ingest.ingestor import Ingestor
    from meters.migrations import migrate
    from meters.warehouse import connect

    folder = OUT / f"close_{customers}"
    data = folder / "data"
    start = date(2026, 10, 1)
    if not (data / "manifest.json").exists():
        _timed("generate month", generate, GeneratorConfig(customers=customers, start=start, days=31, seed=9,
                                                            out=data, overwrite=True))
    shutil.rmtree(folder / "warehouse", ignore_errors=True)
    (folder / "ledger.db").unlink(missing_ok=True)
    os.environ["METERLINE_WAREHOUSE_URL"] = f"chdb://{folder / 'warehouse'}"
    os.environ["METERLINE_LEDGER_URL"] = os.environ.get("BENCH_LEDGER_URL", f"sqlite:///{folder / 'ledger.db'}")
    os.environ["METERLINE_BILLING_GO_LIVE"] = start.isoformat()
    settings.cache_clear()
    warehouse = connect(settings().warehouse_url)
    migrate(warehouse)
    files = sorted((data / "events").glob("*.parquet"))
    ingestor = Ingestor(warehouse, read_catalog(settings().catalog_path).meters, ingested_at=datetime(2026, 11, 1, 1, tzinfo=UTC))
    _timed("ingest month", ingestor.ingest_files, files)
    warehouse.close()
    # The ledger first: the rollup reads the catalog loaded there.
    upgrade(settings().ledger_url)
    engine = create_ledger_engine(settings().ledger_url)
    with session_factory(engine).begin() as session:
        load_catalog(session, settings().catalog_path)
        load_customers_file(session, data / "customers.jsonl")
    engine.dispose()
    _timed("backfill rollups (31 days)", backfill, start, date(2026, 10, 31))
    report, seconds = _timed("close month", close_periods, datetime(2026, 11, 4, tzinfo=UTC))
    print(f"periods closed                     {report.periods_closed:,}")
    print(f"lines posted                       {report.lines_created:,}")
    print(f"periods/s                          {report.periods_closed / seconds:,.0f}")
    _timed("close again (no-op)", close_periods, datetime(2026, 11, 4, tzinfo=UTC))
    # billing_close's last task: reconcile every month the close could touch.
    from meterline.audit.reconcile import reconcile_after_close

    reports, _ = _timed("reconcile after close", reconcile_after_close, datetime(2026, 11, 4, tzinfo=UTC))
    for r in reports:
        print(f"reconciled {r.period}: {len(r.findings):,} finding(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["rollup", "close"])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--repeat", type=int, default=3, help="rollup: rebuild/plain pairs to time")
    parser.add_argument("--fresh", action="store_true", help="rollup: re-ingest even if ingested before")
    args = parser.parse_args()
    if args.which == "rollup":
        bench_rollup(args.events, args.repeat, args.fresh)
    else:
        bench_close(args.customers)


if __name__ == "__main__":
    main()
