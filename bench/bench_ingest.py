"""Benchmark: ingest one generated Parquet day into the embedded warehouse, and in the
same run the raw engine's own `INSERT ... SELECT FROM file(parquet)` of the same file.

    python bench/bench_ingest.py [--events 10000000] [--customers 25000] [--batch-rows N]

Prints events/s for both and their ratio, by wall clock and by CPU time (the engine
runs in this process, so the process's CPU time is the work done; on a shared machine it
varies far less than the wall clock). Target: >= 1M events/s, within 2x of raw. The raw
insert parses the same text fields into the same table layout, but does no validation,
no deduplication and no accounting: it is the floor.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

from billing.catalog import read_catalog
from meterline.demo.synthetic import GeneratorConfig, generate
from meters.ingest.ingestor import IngestOptions, Ingestor
from meters.migrations import migrate
from meters.warehouse import connect

ROOT = Path(__file__).resolve().parent.parent

RAW_INSERT = """
INSERT INTO raw_events
SELECT event_id, customer_id, meter,
       parseDateTime64BestEffort(timestamp, 3, 'UTC'),
       toDecimal128(value, 9),
       CAST(JSONExtractKeysAndValues(properties, 'String'), 'Map(LowCardinality(String), String)'),
       'bench', 0, 0, now64(3), 'raw'
FROM file({path:String}, Parquet)
SETTINGS schema_inference_make_columns_nullable = 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--batch-rows", type=int, default=2_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "ingest")
    args = parser.parse_args()

    data = args.out / "data"
    if not (data / "manifest.json").exists():
        started = time.perf_counter()
        generate(GeneratorConfig(customers=args.customers, start=date(2026, 10, 1), days=1, seed=3,
                                 out=data, events_per_day=args.events, overwrite=True))
        print(f"generated in {time.perf_counter() - started:.1f}s")
    day = data / "events" / "2026-10-01.parquet"

    shutil.rmtree(args.out / "warehouse", ignore_errors=True)
    warehouse = connect(f"chdb://{args.out / 'warehouse'}")
    migrate(warehouse)
    catalog = read_catalog(ROOT / "catalog" / "intercom.yaml").meters

    started, cpu_started = time.perf_counter(), time.process_time()
    ingestor = Ingestor(warehouse, catalog, ingested_at=datetime(2026, 10, 2, tzinfo=UTC),
                        options=IngestOptions(batch_rows=args.batch_rows))
    summary = ingestor.ingest_files([day]).total
    ours, ours_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    warehouse.command("CREATE TABLE raw_events AS usage_events")
    started, cpu_started = time.perf_counter(), time.process_time()
    warehouse.command(RAW_INSERT, {"path": str(day)})
    raw, raw_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    raw_rows = warehouse.query_rows("SELECT count() FROM raw_events")[0][0]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"events in file     {summary.received:,} (accepted {summary.accepted:,}, raw {raw_rows:,})")
    print(f"meterline ingest   {ours:7.2f}s  {summary.received / ours:12,.0f} events/s"
          f"  (CPU {ours_cpu:.2f}s)")
    print(f"raw engine insert  {raw:7.2f}s  {raw_rows / raw:12,.0f} events/s"
          f"  (CPU {raw_cpu:.2f}s)")
    print(f"ratio              {ours / raw:7.2f}x  (target <= 2x; CPU {ours_cpu / raw_cpu:.2f}x)")
    print(f"peak RSS           {peak_mb:7.0f} MB")
    warehouse.close()


if __name__ == "__main__":
    main()
