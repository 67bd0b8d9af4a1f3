"""Ledger posting benchmark: bulk-post N line items for M subscriptions, then re-post
them all (every line a no-op), on SQLite and/or PostgreSQL. Prints lines/s.

    .venv/bin/python bench/bench_ledger.py                       # SQLite, and PostgreSQL
    .venv/bin/python bench/bench_ledger.py --engine sqlite       #   when a URL is given
    METERLINE_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_ledger.py --engine postgresql

PostgreSQL runs in a throw-away schema that is dropped afterwards; SQLite in a
temporary file. Target: >= 20,000 lines/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import billing  # noqa: E402
from billing import migrate  # noqa: E402
from billing.customers import CustomerRow, load_customers  # noqa: E402
from billing.db import create_ledger_engine, session_factory  # noqa: E402
from billing.models import InvoiceLine  # noqa: E402

CATALOG = ROOT / "catalog" / "intercom.yaml"
SEATS = ("seat_essential", "seat_advanced", "seat_expert")
SEAT_PRICE = {
    "seat_essential": Decimal(39),
    "seat_advanced": Decimal(99),
    "seat_expert": Decimal(139),
}
TIMEZONES = ("America/New_York", "Europe/Dublin", "UTC", "Asia/Tokyo", "America/Los_Angeles")


def customers(n: int) -> list[tuple[int, CustomerRow]]:
    return [
        (
            i + 1,
            CustomerRow(
                customer_id=f"cus_{i:06d}",
                name=f"Customer {i}",
                currency="USD",
                timezone=TIMEZONES[i % len(TIMEZONES)],
                subscription_id=f"sub_{i:06d}",
                plan="standard",
                billing_anchor_day=1 + i % 31,
                start=date(2026, 1, 1),
            ),
        )
        for i in range(n)
    ]


def batches(
    rows: list[tuple[int, CustomerRow]], versions: dict[str, str], per_sub: int
) -> list[billing.ChargeBatch]:
    as_of = datetime(2026, 6, 15, tzinfo=UTC)
    out = []
    for _, row in rows:
        period = billing.period_containing(row.billing_anchor_day, row.timezone, as_of)
        n = int(row.subscription_id[4:])
        charges = []
        quantity = Decimal(n % 5000)
        charges.append(
            billing.ChargeLine(
                price_id="fin_resolution",
                price_version=versions["fin_resolution"],
                kind="usage",
                meter="fin_resolution",
                quantity=quantity,
                unit_amount=Decimal("0.99"),
                amount=(quantity * Decimal("0.99")).quantize(Decimal("0.01")),
                amount_precise=quantity * Decimal("0.99"),
                currency="USD",
                breakdown=[{"kind": "unit", "units": str(quantity), "unit_amount": "0.99"}],
                description="Fin AI Agent resolutions",
            )
        )
        for seat in SEATS[: per_sub - 1]:
            seats = Decimal(n % 7 + 1) + Decimal(n % 30) / Decimal(30)
            precise = seats * SEAT_PRICE[seat]
            charges.append(
                billing.ChargeLine(
                    price_id=seat,
                    price_version=versions[seat],
                    kind="usage",
                    meter="seats",
                    group=f"seat_type={seat.removeprefix('seat_')}",
                    quantity=seats,
                    unit_amount=SEAT_PRICE[seat],
                    amount=precise.quantize(Decimal("0.01")),
                    amount_precise=precise,
                    currency="USD",
                    breakdown=[
                        {"kind": "unit", "units": str(seats), "unit_amount": str(SEAT_PRICE[seat])}
                    ],
                    description=f"{seat} seats",
                )
            )
        out.append(billing.ChargeBatch(row.subscription_id, period, charges))
    return out


def run(name: str, url: str, schema: str | None, subs: int, per_sub: int) -> None:
    engine = create_ledger_engine(url, schema=schema)
    migrate.upgrade(engine)
    make = session_factory(engine)
    rows = customers(subs)
    t0 = time.perf_counter()
    with make.begin() as session:
        billing.load_catalog(session, CATALOG)
        load_customers(session, rows, "bench")
    t_load = time.perf_counter() - t0
    with make() as session:
        versions = {
            v.price_id: v.version
            for v in billing.price_versions_in_effect(session, "standard", "USD", date(2026, 6, 1))
        }
    t0 = time.perf_counter()
    work = batches(rows, versions, per_sub)
    t_build = time.perf_counter() - t0
    lines = sum(len(b.charges) for b in work)

    t0 = time.perf_counter()
    with make.begin() as session:
        first = billing.post_charges_bulk(session, work)
    t_post = time.perf_counter() - t0
    t0 = time.perf_counter()
    with make.begin() as session:
        again = billing.post_charges_bulk(session, work)
    t_repost = time.perf_counter() - t0
    with make() as session:
        stored = session.scalar(select(func.count()).select_from(InvoiceLine))
    assert first.created == lines and again.unchanged == lines and again.created == 0, (
        first,
        again,
    )
    assert stored == lines, stored
    engine.dispose()

    print(f"{name}: {subs:,} subscriptions, {lines:,} lines")
    print(f"  load customers + catalog  {t_load:7.2f} s")
    print(f"  build ChargeLines         {t_build:7.2f} s  ({lines / t_build:>9,.0f} lines/s)")
    print(f"  post (insert)             {t_post:7.2f} s  ({lines / t_post:>9,.0f} lines/s)")
    print(f"  re-post (all no-ops)      {t_repost:7.2f} s  ({lines / t_repost:>9,.0f} lines/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--subscriptions", type=int, default=25_000)
    parser.add_argument("--lines-per-subscription", type=int, default=4, choices=(1, 2, 3, 4))
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("METERLINE_TEST_POSTGRES_URL"),
        help="PostgreSQL URL (default: $METERLINE_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args()
    if args.engine in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            run(
                "SQLite",
                f"sqlite:///{tmp}/ledger.db",
                None,
                args.subscriptions,
                args.lines_per_subscription,
            )
    if args.engine in ("postgresql", "both"):
        if not args.postgres_url:
            print("PostgreSQL: skipped (set METERLINE_TEST_POSTGRES_URL or --postgres-url)")
            return
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_ledger_engine(args.postgres_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        try:
            run(
                "PostgreSQL",
                args.postgres_url,
                schema,
                args.subscriptions,
                args.lines_per_subscription,
            )
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()


if __name__ == "__main__":
    main()
