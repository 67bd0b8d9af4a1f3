"""Stripe delivery benchmark: deliver a month's finalized invoices from the ledger's
outbox to the Stripe stand-in, sequentially and in parallel, then reconcile.

    .venv/bin/python bench/bench_stripe_delivery.py                      # 3,000 and 25,000
    .venv/bin/python bench/bench_stripe_delivery.py --customers 3000 --concurrency 8
    .venv/bin/python bench/bench_stripe_delivery.py --customers 25000 --modes parallel

For each N: a SQLite ledger in a temporary folder with N USD customers on the demo
catalog's ``standard`` plan (billing anchor day 1, five timezones), each with one March
2026 invoice of 2 to 4 lines (Fin AI Agent resolutions plus one to three seat types),
posted with ``billing.post_charges_bulk`` and finalized with one
``billing.finalize_due`` (which writes one ``invoice.finalized`` outbox event each).
Every delivery mode then runs on its own copy of that ledger against a fresh stand-in:
``meterline.jobs.deliver.deliver`` (the ``meterline outbox deliver`` job), then
``meterline.audit.stripe.reconcile_stripe`` for the month, which must find no
difference (Stripe items = ledger lines).

Reported per mode: invoices/s, items/s, wall seconds, requests in total and per invoice
(counted by the stand-in and by the sink itself) per endpoint, and the stand-in's own
time per endpoint (its store works under one lock, so that time is serial). Then what
25,000 invoices would take at Stripe's documented live-mode rate limits with the
measured requests per invoice. Results are also written to bench/out/stripe_delivery/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import billing  # noqa: E402
from billing import migrate  # noqa: E402
from billing.customers import CustomerRow, load_customers  # noqa: E402
from billing.db import create_ledger_engine, session_factory  # noqa: E402
from billing.models import InvoiceLine, OutboxEvent  # noqa: E402
from meterline.audit.stripe import reconcile_stripe  # noqa: E402
from meterline.demo.stripe_standin import StripeStandIn  # noqa: E402
from meterline.demo.stripe_standin.server import ROUTES  # noqa: E402
from meterline.jobs.deliver import DeliveryReport, deliver  # noqa: E402
from meterline.settings import load_settings  # noqa: E402
from meterline.sinks.stripe import StripeConfig  # noqa: E402

OUT = ROOT / "bench" / "out" / "stripe_delivery"
CATALOG = ROOT / "catalog" / "intercom.yaml"
API_KEY = SecretStr("sk_test_meterline_bench")
MONTH = "2026-03"
#: An instant inside every customer's March period (anchor day 1, any of TIMEZONES).
IN_MARCH = datetime(2026, 3, 15, tzinfo=UTC)
GRACE = timedelta(days=3)
AS_OF = datetime(2026, 4, 10, tzinfo=UTC)
TIMEZONES = ("America/New_York", "Europe/Dublin", "UTC", "Asia/Tokyo", "America/Los_Angeles")
SEATS = ("seat_essential", "seat_advanced", "seat_expert")
SEAT_PRICE = {
    "seat_essential": Decimal(39),
    "seat_advanced": Decimal(99),
    "seat_expert": Decimal(139),
}
CENT = Decimal("0.01")

# Stripe's documented live-mode rate limits, https://docs.stripe.com/rate-limits
# ("Global API rate limit: live mode 100 requests per second"; "individual API endpoints
# (unless noted otherwise): 25 requests per second"; "Search API: 20 read operations per
# second"). Earlier versions of the same page: "100 read operations and 100 write
# operations" per second in live mode.
STRIPE_DOCS = "https://docs.stripe.com/rate-limits"
LIVE_GLOBAL_RPS = 100
LIVE_ENDPOINT_RPS = 25
LIVE_SEARCH_RPS = 20
#: The sink's request names that are searches (the stricter Search API limit).
SEARCHES = frozenset({"customers.search"})
PROJECT_INVOICES = 25_000


# -- building the ledger ---------------------------------------------------------------


def customer_rows(n: int) -> list[tuple[int, CustomerRow]]:
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
                billing_anchor_day=1,
                start=date(2026, 1, 1),
            ),
        )
        for i in range(n)
    ]


def _line(
    price: str, version: str, quantity: Decimal, unit: Decimal, meter: str, group: str | None
) -> billing.ChargeLine:
    precise = quantity * unit
    return billing.ChargeLine(
        price_id=price,
        price_version=version,
        kind="usage",
        meter=meter,
        group=group,
        quantity=quantity,
        unit_amount=unit,
        amount=precise.quantize(CENT),
        amount_precise=precise,
        currency="USD",
        breakdown=[{"kind": "unit", "units": str(quantity), "unit_amount": str(unit)}],
        description=f"{price} x {quantity}",
    )


def month_of_charges(
    rows: list[tuple[int, CustomerRow]], versions: dict[str, str]
) -> list[billing.ChargeBatch]:
    """Each customer's March: Fin resolutions and one to three seat types (2-4 lines)."""
    out = []
    for i, (_, row) in enumerate(rows):
        period = billing.period_containing(row.billing_anchor_day, row.timezone, IN_MARCH)
        charges = [
            _line(
                "fin_resolution",
                versions["fin_resolution"],
                Decimal(37 + i * 7919 % 5000),
                Decimal("0.99"),
                "fin_resolution",
                None,
            )
        ]
        for seat in SEATS[: 1 + i % 3]:
            charges.append(
                _line(
                    seat,
                    versions[seat],
                    Decimal(1 + i % 40),
                    SEAT_PRICE[seat],
                    "seats",
                    f"seat_type={seat.removeprefix('seat_')}",
                )
            )
        out.append(billing.ChargeBatch(row.subscription_id, period, charges))
    return out


@dataclass
class Built:
    path: Path
    customers: int
    invoices: int
    lines: int
    events: int
    seconds: dict[str, float] = field(default_factory=dict)


def build_ledger(folder: Path, n: int) -> Built:
    path = folder / "ledger.db"
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    engine = create_ledger_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    make = session_factory(engine)
    seconds["migrate"] = time.perf_counter() - t0

    rows = customer_rows(n)
    t0 = time.perf_counter()
    with make.begin() as session:
        billing.load_catalog(session, CATALOG)
        load_customers(session, rows, "bench")
    seconds["catalog + customers"] = time.perf_counter() - t0

    with make() as session:
        versions = {
            v.price_id: v.version
            for v in billing.price_versions_in_effect(session, "standard", "USD", date(2026, 3, 1))
        }
    t0 = time.perf_counter()
    batches = month_of_charges(rows, versions)
    with make.begin() as session:
        posted = billing.post_charges_bulk(session, batches)
    seconds["post_charges_bulk"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with make.begin() as session:
        finalized = billing.finalize_due(session, as_of=AS_OF, grace=GRACE)
    seconds["finalize_due + outbox"] = time.perf_counter() - t0

    with make() as session:
        lines = int(session.scalar(select(func.count()).select_from(InvoiceLine)) or 0)
        events = int(session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)
    engine.dispose()
    expected = sum(len(b.charges) for b in batches)
    assert posted.created == expected == lines, (posted, expected, lines)
    assert len(finalized) == n == events, (len(finalized), n, events)
    seconds["total"] = sum(seconds.values())
    return Built(path, n, len(finalized), lines, events, seconds)


def commit() -> str:
    """The checked-out commit the numbers belong to (and whether files differ from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (modified files)' if dirty else ''}"


def copy_ledger(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (WAL included) through SQLite's backup API."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


# -- measuring the stand-in ---------------------------------------------------------------


class StoreClock:
    """Seconds the stand-in's store spends per operation (it runs under the store's
    lock, so this time is serial whatever the client's concurrency)."""

    def __init__(self, stand_in: StripeStandIn) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        store = stand_in.store
        for route in ROUTES:
            name = route.operation
            setattr(store, name, self._timed(name, getattr(store, name)))

    def _timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                spent = time.perf_counter() - t0
                with self._lock:
                    self.seconds[name] += spent

        return timed


def _stats(stand_in: StripeStandIn, clock: StoreClock) -> Stats:
    store = stand_in.store
    with store.lock:
        sizes = (len(store.customers), len(store.invoices), len(store.invoice_items))
    return Stats(stand_in.request_count, dict(clock.seconds), sizes)


@dataclass
class Stats:
    """What the stand-in served: requests per (method, path template), its store's
    seconds per operation, and (customers, invoices, invoice items) it holds."""

    requests: Counter[tuple[str, str]]
    store_seconds: dict[str, float]
    sizes: tuple[int, int, int]


class InThread:
    """The stand-in in this process (as the tests run it): it shares the interpreter's
    lock with the sink, so the client and the server compete for one core's worth of
    Python."""

    def __init__(self) -> None:
        self.stand_in = StripeStandIn().start()
        self.clock = StoreClock(self.stand_in)
        self.base_url = self.stand_in.base_url

    def stats(self) -> Stats:
        return _stats(self.stand_in, self.clock)

    def close(self) -> None:
        self.stand_in.stop()


def _serve(conn: Connection) -> None:
    """The stand-in in a child process, answering "stats" and "stop" on ``conn``."""
    with StripeStandIn() as stand_in:
        clock = StoreClock(stand_in)
        conn.send(stand_in.base_url)
        while (command := conn.recv()) != "stop":
            assert command == "stats", command
            conn.send(_stats(stand_in, clock))


class InProcess:
    """The stand-in in a process of its own (like Stripe: the sink's process does only
    the sink's work)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        self.base_url = str(self.conn.recv())

    def stats(self) -> Stats:
        self.conn.send("stats")
        found = self.conn.recv()
        assert isinstance(found, Stats)
        return found

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=30)


StandIn = InThread | InProcess
PLACES: dict[str, Callable[[], StandIn]] = {"thread": InThread, "process": InProcess}


# Stand-in route templates under the sink's request names, to print them side by side.
ENDPOINT = {
    ("GET", "/v1/customers/search"): "customers.search",
    ("POST", "/v1/customers"): "customers.create",
    ("GET", "/v1/invoices"): "invoices.list",
    ("POST", "/v1/invoices"): "invoices.create",
    ("GET", "/v1/invoices/{id}"): "invoices.retrieve",
    ("GET", "/v1/invoices/{id}/lines"): "invoices.lines",
    ("POST", "/v1/invoices/{id}/add_lines"): "invoices.add_lines",
    ("POST", "/v1/invoices/{id}/remove_lines"): "invoices.remove_lines",
    ("POST", "/v1/invoices/{id}/finalize"): "invoices.finalize",
}
OPERATION = {(r.method, r.template): r.operation for r in ROUTES}


@dataclass
class Run:
    mode: str
    place: str
    concurrency: int
    seconds: float
    invoices: int
    items: int
    sink_requests: dict[str, int]
    standin_requests: dict[str, int]
    standin_seconds: dict[str, float]
    reconcile_seconds: float
    reconcile_requests: dict[str, int]
    rounds: int

    @property
    def label(self) -> str:
        return f"{self.mode} c={self.concurrency} {self.place}"

    @property
    def requests(self) -> int:
        return sum(self.standin_requests.values())


def run_mode(built: Built, folder: Path, mode: str, concurrency: int, place: str) -> Run:
    """Deliver the month from a copy of the built ledger to a fresh stand-in, then
    reconcile it; every count is checked against the ledger."""
    ledger = folder / f"ledger-{mode}-{place}.db"
    copy_ledger(built.path, ledger)
    config = load_settings(ledger_url=f"sqlite:///{ledger}")
    rounds = 0
    started = time.perf_counter()

    def progress(report: DeliveryReport) -> None:
        nonlocal rounds
        rounds += 1
        if rounds % 10 == 0:
            spent = time.perf_counter() - started
            print(
                f"    {report.delivered:,}/{built.invoices:,} delivered in {spent:,.1f} s"
                f" ({report.delivered / spent:,.1f} invoices/s)",
                flush=True,
            )

    stand_in = PLACES[place]()
    try:
        stripe = StripeConfig(
            api_key=API_KEY, api_base=stand_in.base_url, timeout_s=60.0, concurrency=concurrency
        )
        started = time.perf_counter()
        report = deliver("stripe", config=config, stripe=stripe, progress=progress)
        seconds = time.perf_counter() - started
        assert report.ok and report.left == 0, report.summary()
        assert report.delivered == report.invoices_finalized == built.invoices, report.summary()
        assert report.items_added == built.lines and report.items_removed == 0, report.summary()
        delivered = stand_in.stats()
        assert delivered.sizes == (built.customers, built.invoices, built.lines), delivered.sizes

        t0 = time.perf_counter()
        check = reconcile_stripe(MONTH, config=config, stripe=stripe)
        reconcile_seconds = time.perf_counter() - t0
        assert check.ok, check.differences[:5]
        assert (check.invoices, check.lines, check.items) == (
            built.invoices,
            built.lines,
            built.lines,
        ), (check.invoices, check.lines, check.items)
        reconciled = stand_in.stats().requests
        reconciled.subtract(delivered.requests)
    finally:
        stand_in.close()
    ledger.unlink()
    return Run(
        mode=mode,
        place=place,
        concurrency=concurrency,
        seconds=seconds,
        invoices=report.invoices_finalized,
        items=report.items_added,
        sink_requests=dict(report.requests),
        standin_requests={f"{m} {p}": n for (m, p), n in sorted(delivered.requests.items())},
        standin_seconds=dict(delivered.store_seconds),
        reconcile_seconds=reconcile_seconds,
        reconcile_requests={f"{m} {p}": n for (m, p), n in sorted(reconciled.items()) if n},
        rounds=rounds,
    )


# -- the projection at Stripe's rate limits ----------------------------------------------


@dataclass(frozen=True)
class Projection:
    """The least time ``invoices`` need at Stripe's live-mode limits, at a number of
    requests per invoice per endpoint: the account's limit, and the busiest endpoint's."""

    invoices: int
    requests_per_invoice: float
    global_seconds: float
    busiest_endpoint: str
    endpoint_seconds: float

    @property
    def floor_seconds(self) -> float:
        return max(self.global_seconds, self.endpoint_seconds)


def projection(per_invoice: dict[str, float], invoices: int = PROJECT_INVOICES) -> Projection:
    total = sum(per_invoice.values())
    endpoint_s = {
        name: invoices * rate / (LIVE_SEARCH_RPS if name in SEARCHES else LIVE_ENDPOINT_RPS)
        for name, rate in per_invoice.items()
    }
    busiest = max(endpoint_s, key=lambda name: endpoint_s[name])
    return Projection(
        invoices, total, invoices * total / LIVE_GLOBAL_RPS, busiest, endpoint_s[busiest]
    )


def projections(run: Run) -> dict[str, Projection]:
    """Measured (every customer new to Stripe), and the same without the customer
    lookups (a later month: the customers' Stripe ids are recorded)."""
    measured = {name: n / run.invoices for name, n in run.sink_requests.items()}
    known = {k: v for k, v in measured.items() if not k.startswith("customers.")}
    return {"customers new": projection(measured), "customers known": projection(known)}


# -- printing --------------------------------------------------------------------------


def _minutes(seconds: float) -> str:
    return f"{seconds:,.0f} s ({seconds / 60:,.1f} min)"


def print_build(built: Built) -> None:
    print(
        f"\nLedger: {built.customers:,} customers, {built.invoices:,} invoices,"
        f" {built.lines:,} lines, {built.events:,} outbox events"
    )
    for name, seconds in built.seconds.items():
        print(f"  build {name:<24} {seconds:7.2f} s")


def print_runs(built: Built, runs: list[Run]) -> None:
    print(f"\nDelivery of {built.invoices:,} invoices ({built.lines:,} items), SQLite ledger")
    print(f"  {'':<34}" + "".join(f"{r.label:>26}" for r in runs))

    def row(label: str, values: list[str]) -> None:
        print(f"  {label:<34}" + "".join(f"{v:>26}" for v in values))

    row("wall seconds", [f"{r.seconds:,.1f}" for r in runs])
    row("invoices/s", [f"{r.invoices / r.seconds:,.1f}" for r in runs])
    row("items/s", [f"{r.items / r.seconds:,.1f}" for r in runs])
    row("requests (stand-in)", [f"{r.requests:,}" for r in runs])
    row("requests (sink's count)", [f"{sum(r.sink_requests.values()):,}" for r in runs])
    row("requests per invoice", [f"{r.requests / r.invoices:.2f}" for r in runs])
    row("requests/s", [f"{r.requests / r.seconds:,.1f}" for r in runs])
    row(
        "stand-in store seconds (serial)", [f"{sum(r.standin_seconds.values()):,.1f}" for r in runs]
    )
    row(
        "wall - stand-in store seconds",
        [f"{r.seconds - sum(r.standin_seconds.values()):,.1f}" for r in runs],
    )
    row("claim rounds", [f"{r.rounds:,}" for r in runs])
    row("reconcile seconds", [f"{r.reconcile_seconds:,.1f}" for r in runs])
    row("reconcile requests", [f"{sum(r.reconcile_requests.values()):,}" for r in runs])
    for name in sorted({k for r in runs for k in r.reconcile_requests}):
        row(f"  {name}", [f"{r.reconcile_requests.get(name, 0):,}" for r in runs])

    print("\n  per endpoint: requests per invoice (stand-in = sink), stand-in ms per request")
    names = sorted({k for r in runs for k in r.standin_requests})
    for name in names:
        method, path = name.split(" ", 1)
        sink_name = ENDPOINT.get((method, path), "?")
        op = OPERATION.get((method, path), "")
        cells = []
        for r in runs:
            n = r.standin_requests.get(name, 0)
            own = r.sink_requests.get(sink_name, 0)
            ms = 1000 * r.standin_seconds.get(op, 0.0) / n if n else 0.0
            cells.append(f"{n / r.invoices:.2f}={own / r.invoices:.2f} {ms:6.2f}ms")
        print(f"  {name:<34}" + "".join(f"{c:>26}" for c in cells))


def print_projection(runs: list[Run]) -> None:
    print(
        f"\nAt Stripe's live-mode rate limits ({STRIPE_DOCS}): {LIVE_GLOBAL_RPS} requests/s"
        f" per account, {LIVE_ENDPOINT_RPS}/s per endpoint, Search API {LIVE_SEARCH_RPS}/s;"
        f" {PROJECT_INVOICES:,} invoices need at least"
    )
    for name, p in projections(runs[0]).items():
        print(
            f"  {name + ' (measured)' if name == 'customers new' else name + ' (derived)':<26}"
            f" {p.requests_per_invoice:4.2f} requests/invoice: account limit"
            f" {_minutes(p.global_seconds)}, {p.busiest_endpoint}"
            f" {_minutes(p.endpoint_seconds)} => {_minutes(p.floor_seconds)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers",
        type=int,
        action="append",
        help="customers (= invoices); repeat for several sizes (default: 3000 and 25000)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel run's concurrency")
    parser.add_argument(
        "--modes",
        choices=("both", "sequential", "parallel"),
        default="both",
        help="which delivery runs (default: both)",
    )
    parser.add_argument(
        "--standin",
        choices=("thread", "process", "both"),
        default="thread",
        help="where the stand-in runs: in this process (as the tests run it; default), in"
        " a process of its own, or both",
    )
    parser.add_argument(
        "--sequential-max",
        type=int,
        default=None,
        help="skip the sequential run for more customers than this",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sizes = args.customers or [3_000, 25_000]
    modes = {"both": ["sequential", "parallel"]}.get(args.modes, [args.modes])
    places = {"both": ["thread", "process"]}.get(args.standin, [args.standin])
    args.out.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-stripe-") as tmp:
            built = build_ledger(Path(tmp), n)
            print_build(built)
            runs = []
            for place in places:
                for mode in modes:
                    if mode == "sequential" and n > (args.sequential_max or n):
                        print(f"  sequential skipped: {n:,} > --sequential-max")
                        continue
                    concurrency = 1 if mode == "sequential" else args.concurrency
                    print(
                        f"  delivering: {mode}, concurrency {concurrency}, stand-in in {place}",
                        flush=True,
                    )
                    runs.append(run_mode(built, Path(tmp), mode, concurrency, place))
            print_runs(built, runs)
            print_projection(runs)
            result = {
                "commit": commit(),
                "customers": n,
                "invoices": built.invoices,
                "lines": built.lines,
                "build_seconds": built.seconds,
                "runs": [
                    {
                        **vars(r),
                        "requests": r.requests,
                        "projections": {
                            k: {**vars(p), "floor_seconds": p.floor_seconds}
                            for k, p in projections(r).items()
                        },
                    }
                    for r in runs
                ],
                "rate_limits": {
                    "source": STRIPE_DOCS,
                    "live_global_rps": LIVE_GLOBAL_RPS,
                    "live_endpoint_rps": LIVE_ENDPOINT_RPS,
                    "live_search_rps": LIVE_SEARCH_RPS,
                },
            }
            target = args.out / f"results-{n}.json"
            target.write_text(json.dumps(result, indent=2) + "\n")
            print(
                f"\n  written: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
            )


if __name__ == "__main__":
    main()
