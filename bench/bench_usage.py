"""Benchmark of one customer's usage and invoice preview (meterline/jobs/usage.py,
preview.py; docs/usage-preview.md) on a generated month: p50/p99 of one call, wall clock
and this process's CPU time, for a sample of customers (the largest first).

    .venv/bin/meterline demo --dir /tmp/month        # once: a month, 3,000 customers
    .venv/bin/python bench/bench_usage.py --dir /tmp/month --as-of 2026-10-20T13:30:00Z

`--dir` is a `meterline demo` folder (its warehouse/ and ledger.db); the warehouse and
ledger URLs can be given instead. Each job is timed two ways: `*_of` on stores held open
(as a long-running service holds them) and `customer_*` opening the ledger and the
warehouse per call while another handle keeps the embedded engine open (what the HTTP
service's endpoints do). CPU time is the process's own (the embedded engine runs in it):
on a shared machine it says more than the wall clock. Issue 17's target: p99 under 200 ms.
By hand only: it needs a month of data.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time
from collections.abc import Callable
from pathlib import Path

from meterline.cli.options import parse_timestamp
from meterline.connections import ledger_session, meter_catalog, open_warehouse
from meterline.jobs.preview import customer_preview, preview_of
from meterline.jobs.usage import customer_usage, usage_of
from meterline.settings import load_settings


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="a `meterline demo` folder")
    parser.add_argument("--warehouse-url", help="instead of --dir")
    parser.add_argument("--ledger-url", help="instead of --dir")
    parser.add_argument("--as-of", default="2026-10-20T13:30:00Z", help="the instant asked")
    parser.add_argument("--customers", type=int, default=50, help="customers sampled")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.dir is not None:
        folder = args.dir.resolve()
        warehouse_url = f"chdb://{folder / 'warehouse'}"
        ledger_url = f"sqlite:///{folder / 'ledger.db'}"
    else:
        warehouse_url = args.warehouse_url or os.environ["METERLINE_WAREHOUSE_URL"]
        ledger_url = args.ledger_url or os.environ["METERLINE_LEDGER_URL"]
    config = load_settings(warehouse_url=warehouse_url, ledger_url=ledger_url)
    as_of = parse_timestamp(args.as_of)
    meters = meter_catalog(config)
    with open_warehouse(config) as warehouse:
        rows = warehouse.query_rows(
            "SELECT customer_id, count() AS n FROM usage_events GROUP BY customer_id"
            " ORDER BY n DESC"
        )
        ranked = [str(r[0]) for r in rows]
        rng = random.Random(args.seed)
        sample = ranked[:3] + rng.sample(ranked[3:], min(len(ranked) - 3, args.customers - 3))

        def held(job: Callable[..., object]) -> Callable[[str], object]:
            def call(customer: str) -> object:
                with ledger_session(config) as session:
                    return job(session, warehouse, meters, customer, as_of, config=config)

            return call

        def opened(job: Callable[..., object]) -> Callable[[str], object]:
            return lambda customer: job(customer, as_of, config=config)

        print(
            f"{len(sample)} customers of {len(ranked):,} (the 3 largest: "
            f"{', '.join(f'{c} {n:,} events' for c, n in rows[:3])}), as of {as_of.isoformat()}"
        )
        for name, call in (
            ("usage_of", held(usage_of)),
            ("preview_of", held(preview_of)),
            ("customer_usage", opened(customer_usage)),
            ("customer_preview", opened(customer_preview)),
        ):
            call(sample[0])  # warm: imports, the engine's caches
            walls, cpus = [], []
            for customer in sample:
                began, used = time.perf_counter(), cpu()
                call(customer)
                walls.append(time.perf_counter() - began)
                cpus.append(cpu() - used)
            print(
                f"{name:17s} wall p50 {quantile(walls, 0.5):5.0f} ms  p99 {quantile(walls, 0.99):5.0f}"
                f" ms   cpu p50 {quantile(cpus, 0.5):5.0f} ms  p99 {quantile(cpus, 0.99):5.0f} ms"
            )
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
