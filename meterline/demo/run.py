"""`meterline demo`: the whole job on generated data, embedded, with no server.

1. Generate a month of Intercom-like usage with exact and conflicting re-sends,
   malformed rows and a late file; load the catalog into the ledger (`meterline catalog
   load`: the one catalog every later step reads).
2. Ingest each day's file as the nightly delivery would arrive (00:30 UTC next day).
3. Load the customers into the ledger.
4. Run the real usage_rollup DAG (Airflow, dag.test()) for every day of the month,
   then the real billing_close DAG once the grace period has passed.
5. Print the ingest accounting (checked against what the generator injected), the
   invoices per currency and the top customers with their lines.
6. Ingest the late file, run the next day's DAGs, and show the adjustment lines.

Stripe is the Stripe stand-in (meterline.demo.stripe_standin), started on a loopback
port for the run: billing_close delivers the outbox to it and reconciles against it, as
it would against Stripe; the demo prints what Stripe then holds next to the ledger.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import func, select

from meterline.connections import ingest_options, ledger_session, meter_catalog, open_warehouse
from meterline.demo.stripe_standin import StripeStandIn
from meterline.demo.synthetic import GeneratorConfig, Manifest, generate
from meterline.output import (
    Column,
    format_count,
    format_minor,
    format_quantity,
    print_table,
    progress,
)
from meterline.settings import Settings, settings
from meters.ingest.ingestor import Ingestor, SourceCounts


@dataclass(frozen=True)
class DemoConfig:
    folder: Path = Path(".meterline/demo")
    customers: int = 3000
    start: date = date(2026, 10, 1)
    days: int = 31
    seed: int = 7
    duplicates: float = 0.01
    late: float = 0.003
    malformed: float = 0.001
    billing: bool = True
    top: int = 5


@dataclass
class DemoResult:
    manifest: Manifest
    daily: SourceCounts
    late: SourceCounts
    matches_manifest: bool = False
    seconds: float = 0.0
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    adjustment_lines: int = 0
    statements: list[Path] = field(default_factory=list)
    #: What the Stripe stand-in holds after delivery: invoices and items of the month,
    #: and whether `stripe reconcile` found Stripe equal to the ledger.
    stripe_invoices: int = 0
    stripe_items: int = 0
    stripe_matches: bool = False
    stripe_adjustment_items: int = 0
    #: Wall seconds per step (StepTimes), as the demo prints them at the end.
    steps: dict[str, float] = field(default_factory=dict)


#: The demo's Stripe key: a test-mode key the stand-in accepts (never a real one).
DEMO_STRIPE_KEY = "sk_test_meterline_demo"


def delivery_time(day: date) -> datetime:
    """A day's events are delivered at 00:30 UTC the next day (the nightly export)."""
    return datetime.combine(day + timedelta(days=1), clock(0, 30), tzinfo=UTC)


def demo_settings(config: DemoConfig) -> Settings:
    """The demo's own folder, whatever the environment says; the DAG tasks it runs
    read the same settings from the environment."""
    folder = config.folder.resolve()
    os.environ["METERLINE_WAREHOUSE_URL"] = f"chdb://{folder / 'warehouse'}"
    os.environ["METERLINE_LEDGER_URL"] = f"sqlite:///{folder / 'ledger.db'}"
    os.environ["METERLINE_BILLING_GO_LIVE"] = config.start.isoformat()
    settings.cache_clear()
    return settings()


def stripe_settings(stripe: StripeStandIn) -> None:
    """Point the Stripe settings at the stand-in (the DAG tasks read the environment).
    One request at a time: the stand-in answers in this process, under its interpreter
    lock, so requests in parallel only queue there (the demo's first delivery: 61 s with
    8, 54 s with 1)."""
    os.environ["METERLINE_STRIPE_API_KEY"] = DEMO_STRIPE_KEY
    os.environ["METERLINE_STRIPE_API_BASE"] = stripe.base_url
    os.environ["METERLINE_STRIPE_CONCURRENCY"] = "1"
    settings.cache_clear()


def _print_stripe(result: DemoResult, console: Console, stripe: StripeStandIn) -> None:
    """What Stripe holds after billing_close delivered the outbox: its issued invoices
    and their items, read from the stand-in's store in this process. That they equal the
    ledger, line by line, billing_close's stripe_reconcile task has just checked for
    every month the close touched (a difference fails the run, and the demo with it)."""
    with stripe.store.lock:
        issued = [i for i in stripe.store.invoices.values() if i.status != "draft"]
        result.stripe_invoices = len(issued)
        result.stripe_items = sum(len(i.item_ids) for i in issued)
    result.stripe_matches = True
    console.print(
        f"delivered {result.stripe_invoices:,} invoices ({result.stripe_items:,} items) to"
        " Stripe; Stripe totals = ledger totals"
    )


@dataclass
class StepTimes:
    """Wall seconds per step of the demo, in the order the steps first ran (a step that
    runs again adds to its time)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def print(self, console: Console, total: float) -> None:
        print_table(
            console,
            ["step", Column("seconds", "number")],
            [(name, f"{seconds:,.1f}") for name, seconds in self.seconds.items()],
            title=f"where the time went ({total:,.1f} s in all)",
        )


def _stripe_adjustments(stripe: StripeStandIn | None) -> int:
    """Adjustment items on the stand-in's invoices (the next periods' drafts)."""
    if stripe is None:
        return 0
    return sum(
        1
        for item in stripe.store.invoice_items.values()
        if item.metadata.get("meterline_kind") == "adjustment"
    )


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    started = time.perf_counter()
    times = StepTimes()
    if config.folder.exists():
        shutil.rmtree(config.folder)
    data = config.folder / "data"
    config_settings = demo_settings(config)
    console.print(
        f"[bold]meterline demo[/bold]: {config.customers:,} customers, {config.days} days from "
        f"{config.start}, seed {config.seed}; everything under {config.folder}/"
    )
    with times.step("generate"):
        manifest = _generate(config, data, console)
    from meterline.jobs.catalog import load_catalog_file
    from meterline.jobs.init import init_schemas

    with times.step("init, catalog load"):
        init_schemas(config_settings)  # `meterline init`: both schemas, before any other step
        loaded = load_catalog_file(config_settings.catalog_path, config=config_settings)
    # One chDB engine for every later step and DAG task of this process: each would
    # otherwise open the folder and load its tables again (~0.4 s, some 70 times).
    with open_warehouse(config_settings):
        console.print(loaded.text())
        daily = [
            (data / name, delivery_time(config.start + timedelta(days=offset)))
            for offset, name in enumerate(manifest.files)
        ]
        with times.step("ingest daily files"):
            daily_counts = _ingest(config_settings, daily, console, "ingest daily files")
        result = DemoResult(manifest, daily_counts, SourceCounts())

        end = datetime.combine(config.start + timedelta(days=config.days), clock(0), tzinfo=UTC)
        as_of = end + timedelta(hours=config_settings.finalize_grace_hours)
        runner = None
        stripe: StripeStandIn | None = None
        if config.billing:
            from meterline.demo.airflow_runner import DagRunner, prepare

            with times.step("Stripe stand-in, customers load, Airflow"):
                stripe = StripeStandIn().start()
                stripe_settings(stripe)
                console.print(f"Stripe: the stand-in at {stripe.base_url} (docs/stripe-standin.md)")
                _load_ledger(config_settings, data, console)
                prepare(config.folder / "airflow")
                runner = DagRunner()
            with progress("airflow: usage_rollup days, then billing_close", config.days) as tick:
                for offset in range(config.days):
                    day = config.start + timedelta(days=offset)
                    with times.step(f"usage_rollup, {config.days} days"):
                        runner.rollup_day(day)
                    tick.advance(detail=day.isoformat())
                tick(config.days, None, f"billing_close as of {as_of:%Y-%m-%d %H:%M}")
                _close(runner, as_of, times)
            console.print(
                f"ran usage_rollup for {config.days} days and billing_close as of "
                f"{as_of.isoformat()} (Airflow dag.test)"
            )
            _print_stripe(result, console, stripe)

        # The late file arrives after the invoices were finalized.
        late_at = as_of + timedelta(hours=12) if config.billing else delivery_time(end.date())
        late = [(data / name, late_at) for name in manifest.late_files]
        with times.step("ingest the late file"):
            result.late = _ingest(config_settings, late, console, "ingest the late file")
        result.matches_manifest = _matches(manifest, result.daily, result.late)
        _print_accounting(console, result)

        if runner is not None:
            result.invoices, top = _print_invoices(
                config_settings, console, config.top, adjustments=False
            )
            with times.step("usage_rollup, the late file's day"):
                runner.rollup_day(late_at.date())
            _close(runner, as_of + timedelta(days=1), times)
            result.adjustment_lines = _print_adjustments(config_settings, console)
            result.stripe_adjustment_items = _stripe_adjustments(stripe)
            console.print(
                f"delivered {result.stripe_adjustment_items:,} adjustment lines to Stripe, as"
                " items of the next invoices' drafts (billing_close's deliver task)"
            )
            with times.step("usage statements"):
                result.statements = _write_statements(
                    config_settings, config.folder / "statements", top, console
                )
        if stripe is not None:
            stripe.stop()
    result.seconds = time.perf_counter() - started
    times.add("other (reports, setup)", max(result.seconds - sum(times.seconds.values()), 0.0))
    result.steps = dict(times.seconds)
    times.print(console, result.seconds)
    console.print(f"done in {result.seconds:.1f}s")
    return result


def _close(runner: Any, as_of: datetime, times: StepTimes) -> None:
    """Run billing_close as of `as_of`; its tasks' times under their own names, the
    rest of the run (Airflow's own work) apart."""
    from meterline.demo.airflow_runner import task_seconds

    started = time.perf_counter()
    run = runner.close(as_of)
    seconds = time.perf_counter() - started
    tasks = task_seconds(run)
    for task, spent in tasks.items():
        times.add(f"billing_close: {task}", spent)
    times.add("billing_close: Airflow", max(seconds - sum(tasks.values()), 0.0))


def _generate(config: DemoConfig, data: Path, console: Console) -> Manifest:
    with progress("generate usage: rows") as tick:

        def on_generate(done: int, total: int, _file: str) -> None:
            tick(done, total)

        manifest = generate(
            GeneratorConfig(
                customers=config.customers,
                start=config.start,
                days=config.days,
                seed=config.seed,
                out=data,
                duplicates=config.duplicates,
                late=config.late,
                malformed=config.malformed,
            ),
            progress=on_generate,
        )
    console.print(
        f"generated {manifest.rows_written:,} rows in {len(manifest.files)} daily files "
        f"and {manifest.late.rows:,} late rows -> {data}/"
    )
    return manifest


def _ingest(
    config: Settings, deliveries: list[tuple[Path, datetime]], console: Console, label: str
) -> SourceCounts:
    """Ingest each file as delivered at its time; the accounting of them all."""
    counts = SourceCounts()
    catalog = meter_catalog(config)
    options = ingest_options(config)
    with open_warehouse(config) as warehouse, progress(label, len(deliveries)) as tick:
        for path, at in deliveries:
            ingestor = Ingestor(warehouse, catalog, ingested_at=at, options=options)
            counts.add(ingestor.ingest_files([path]).total)
            tick.advance(detail=path.name)
    return counts


def _load_ledger(config: Settings, data: Path, console: Console) -> None:
    from billing.customers import load_customers_file
    from billing.views import customers_load_text

    with ledger_session(config, write=True) as session:
        loaded = load_customers_file(session, data / "customers.jsonl")

    console.print(f"ledger: catalog loaded; customers file: {customers_load_text(loaded)}")


def _matches(manifest: Manifest, daily: SourceCounts, late: SourceCounts) -> bool:
    d, lt = manifest.daily, manifest.late
    return (
        daily.received == d.rows
        and daily.accepted == d.valid_events
        and daily.duplicates == d.exact_duplicates
        and daily.rejected == sum(d.malformed.values()) + d.conflicting_duplicates
        and late.received == lt.rows
        and late.accepted == lt.valid_events
        and late.duplicates == lt.exact_duplicates
        and daily.balanced
        and late.balanced
    )


def _print_accounting(console: Console, result: DemoResult) -> None:
    n = format_count
    print_table(
        console,
        [
            "delivery",
            Column("received", "number"),
            Column("accepted", "number"),
            Column("duplicates", "number"),
            Column("rejected", "number"),
        ],
        [
            (name, n(c.received), n(c.accepted), n(c.duplicates), n(c.rejected))
            for name, c in (("daily files", result.daily), ("late file", result.late))
        ],
        title="ingest accounting (received = accepted + duplicates + rejected)",
    )
    reasons = dict(result.daily.rejected_by_reason)
    for reason, count in result.late.rejected_by_reason.items():
        reasons[reason] = reasons.get(reason, 0) + count
    console.print(
        "rejected by reason: " + ", ".join(f"{r} {n(c)}" for r, c in sorted(reasons.items()))
    )
    verdict = "[green]yes[/green]" if result.matches_manifest else "[red]NO[/red]"
    console.print(f"counts match what the generator injected: {verdict}")


def _write_statements(
    config: Settings, folder: Path, top: list[tuple[str, str]], console: Console
) -> list[Path]:
    """One HTML usage statement per top customer (meterline statement)."""
    from meterline.audit.statement import write_statement

    paths = [
        write_statement(customer, period, folder / f"{customer}-{period}.html", config=config)
        for customer, period in top
    ]
    if paths:
        console.print(f"usage statements of the top customers: {folder}/ ({len(paths)} HTML files)")
    return paths


def _print_invoices(
    config: Settings, console: Console, top: int, *, adjustments: bool
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    from billing.models import Customer, Invoice, InvoiceLine

    summary: dict[str, dict[str, Any]] = {}
    top_customers: list[tuple[str, str]] = []
    with ledger_session(config) as session:
        rows = session.execute(
            select(Invoice.currency, Invoice.status, func.count(), func.sum(Invoice.total_minor))
            .group_by(Invoice.currency, Invoice.status)
            .order_by(Invoice.currency, Invoice.status)
        ).all()
        for currency, status, count, total in rows:
            summary.setdefault(currency, {})[status] = {
                "invoices": count,
                "total_minor": int(total or 0),
            }
        print_table(
            console,
            ["currency", "status", Column("invoices", "number"), Column("total", "money")],
            [
                (currency, status, format_count(count), format_minor(int(total or 0), currency))
                for currency, status, count, total in rows
            ],
            title="invoices per currency",
        )
        biggest = session.execute(
            select(Invoice, Customer.external_id, Customer.name)
            .join(Customer, Customer.id == Invoice.customer_id)
            .where(Invoice.status == "finalized")
            .order_by(Invoice.total_minor.desc())
            .limit(top)
        ).all()
        for invoice, external_id, name in biggest:
            top_customers.append((external_id, f"{invoice.period_start_local:%Y-%m}"))
            lines = session.scalars(
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id == invoice.id)
                .order_by(InvoiceLine.id)
            ).all()
            console.print("")
            print_table(
                console,
                LINE_COLUMNS,
                [line_row(line) for line in lines if line.amount_minor or line.kind != "usage"],
                title=f"{name} ({external_id}), invoice {invoice.id} for the period from"
                f" {invoice.period_start_local:%Y-%m-%d}:"
                f" {format_minor(invoice.total_minor, invoice.currency)}",
            )
    return summary, top_customers


LINE_COLUMNS: list[Column | str] = [
    "kind",
    "price",
    Column("quantity", "number"),
    Column("unit price", "money"),
    Column("amount", "money"),
    "tiers",
]


def line_row(line: Any) -> tuple[str, ...]:
    """An invoice line as the demo shows it: price and dimension group, quantity without
    trailing zeros, money with the currency's minor unit, the tiers it reached."""
    from billing.money import format_amount

    price = line.price_id + (f" [{line.dimension_group}]" if line.dimension_group else "")
    tiers = tiers_text(line.breakdown, line.currency)
    unit = ""
    # A line over several tiers has no one unit price: its tiers show theirs.
    if line.unit_amount is not None and " + " not in tiers:
        unit = format_amount(line.unit_amount, line.currency)
    return (
        line.kind,
        price,
        format_quantity(line.quantity, 2),
        unit,
        format_minor(line.amount_minor, line.currency),
        tiers,
    )


def tiers_text(breakdown: Any, currency: str) -> str:
    """Graduated and volume lines: units and unit price per tier reached
    ("t1 5,000 × 0.35 + t2 7,226 × 0.30")."""
    from billing.money import format_amount
    from billing.views import tiers_of

    parts = [
        f"t{e['tier']} {format_quantity(Decimal(str(e['units'])), 2)}"
        f" × {format_amount(Decimal(str(e['unit_amount'])), currency)}"
        for e in tiers_of(breakdown)
        if e.get("tier") and e.get("units") is not None and e.get("unit_amount") is not None
    ]
    return " + ".join(parts)


def _print_adjustments(config: Settings, console: Console) -> int:
    from billing.models import Customer, Invoice, InvoiceLine

    with ledger_session(config) as session:
        rows = session.execute(
            select(InvoiceLine, Customer.external_id)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .join(Customer, Customer.id == Invoice.customer_id)
            .where(InvoiceLine.kind == "adjustment")
            .order_by(InvoiceLine.id)
        ).all()
        console.print("")
        print_table(
            console,
            [
                "customer",
                "price",
                Column("quantity", "number"),
                Column("amount", "money"),
                Column("adjusts line", "number"),
            ],
            [
                (
                    customer,
                    line.price_id,
                    format_quantity(line.quantity, 2),
                    format_minor(line.amount_minor, line.currency),
                    str(line.adjusts_line_id or ""),
                )
                for line, customer in rows[:10]
            ],
            title=f"late usage after finalization: {format_count(len(rows))} adjustment"
            " lines on the next open invoices" + (" (the first 10)" if len(rows) > 10 else ""),
        )
        return len(rows)
