"""`meterline demo`: the whole job on generated data, embedded, with no server.

1. Generate a month of Intercom-like usage with exact and conflicting re-sends,
   malformed rows and a late file.
2. Ingest each day's file as the nightly delivery would arrive (00:30 UTC next day).
3. Load the customers and the catalog into the ledger.
4. Run the real usage_rollup DAG (Airflow, dag.test()) for every day of the month,
   then the real billing_close DAG once the grace period has passed.
5. Print the ingest accounting (checked against what the generator injected), the
   invoices per currency and the top customers with their lines.
6. Ingest the late file, run the next day's DAGs, and show the adjustment lines.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from meterline.app import ingest_options, init_warehouse, open_warehouse
from meterline.settings import Settings, settings
from meterline.synthetic import GeneratorConfig, Manifest, generate
from meters.catalog import load_meters
from meters.ingest import Ingestor, SourceCounts


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


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    started = time.perf_counter()
    if config.folder.exists():
        shutil.rmtree(config.folder)
    data = config.folder / "data"
    config_settings = demo_settings(config)
    console.print(
        f"[bold]meterline demo[/bold]: {config.customers:,} customers, {config.days} days from "
        f"{config.start}, seed {config.seed}; everything under {config.folder}/"
    )
    manifest = _generate(config, data, console)
    daily = [
        (data / name, delivery_time(config.start + timedelta(days=offset)))
        for offset, name in enumerate(manifest.files)
    ]
    result = DemoResult(
        manifest, _ingest(config_settings, daily, console, "ingest daily files"), SourceCounts()
    )

    end = datetime.combine(config.start + timedelta(days=config.days), clock(0), tzinfo=UTC)
    as_of = end + timedelta(hours=config_settings.finalize_grace_hours)
    runner = None
    if config.billing:
        from meterline.airflow_runner import DagRunner, prepare

        _load_ledger(config_settings, data, console)
        with _progress(console) as progress:
            task = progress.add_task("airflow: preparing", total=None)
            prepare(config.folder / "airflow")
            runner = DagRunner()
            progress.update(
                task, description="airflow: usage_rollup", total=config.days, completed=0
            )
            for offset in range(config.days):
                runner.rollup_day(config.start + timedelta(days=offset))
                progress.advance(task)
            progress.update(
                task, description=f"airflow: billing_close as of {as_of:%Y-%m-%d %H:%M}"
            )
            runner.close(as_of)
        console.print(
            f"ran usage_rollup for {config.days} days and billing_close as of "
            f"{as_of.isoformat()} (Airflow dag.test)"
        )

    # The late file arrives after the invoices were finalized.
    late_at = as_of + timedelta(hours=12) if config.billing else delivery_time(end.date())
    late = [(data / name, late_at) for name in manifest.late_files]
    result.late = _ingest(config_settings, late, console, "ingest the late file")
    result.matches_manifest = _matches(manifest, result.daily, result.late)
    _print_accounting(console, result)

    if runner is not None:
        result.invoices, top = _print_invoices(
            config_settings, console, config.top, adjustments=False
        )
        runner.rollup_day(late_at.date())
        runner.close(as_of + timedelta(days=1))
        result.adjustment_lines = _print_adjustments(config_settings, console)
        result.statements = _write_statements(
            config_settings, config.folder / "statements", top, console
        )
    result.seconds = time.perf_counter() - started
    console.print(f"done in {result.seconds:.1f}s")
    return result


def _generate(config: DemoConfig, data: Path, console: Console) -> Manifest:
    with _progress(console) as progress:
        task = progress.add_task("generate usage", total=None)

        def on_generate(done: int, total: int, _file: str) -> None:
            progress.update(task, completed=done, total=total)

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
    catalog = load_meters(config.catalog_path)
    options = ingest_options(config)
    with open_warehouse(config) as warehouse, _progress(console) as progress:
        init_warehouse(warehouse)
        task = progress.add_task(label, total=len(deliveries))
        for path, at in deliveries:
            ingestor = Ingestor(warehouse, catalog, ingested_at=at, options=options)
            counts.add(ingestor.ingest_files([path]).total)
            progress.advance(task)
    return counts


def _load_ledger(config: Settings, data: Path, console: Console) -> None:
    from billing.catalog import load_catalog
    from billing.customers import load_customers_file
    from billing.db import create_ledger_engine, session_factory
    from billing.migrate import upgrade

    upgrade(config.ledger_url)
    engine = create_ledger_engine(config.ledger_url)
    try:
        with session_factory(engine).begin() as session:
            load_catalog(session, config.catalog_path)
            loaded = load_customers_file(session, data / "customers.jsonl")
    finally:
        engine.dispose()
    console.print(f"ledger: catalog loaded; {loaded}")


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
    table = Table(title="ingest accounting (received = accepted + duplicates + rejected)")
    for column in ("delivery", "received", "accepted", "duplicates", "rejected"):
        table.add_column(column, justify="left" if column == "delivery" else "right")
    for name, counts in (("daily files", result.daily), ("late file", result.late)):
        table.add_row(
            name,
            *(
                f"{n:,}"
                for n in (counts.received, counts.accepted, counts.duplicates, counts.rejected)
            ),
        )
    console.print(table)
    reasons = dict(result.daily.rejected_by_reason)
    for reason, n in result.late.rejected_by_reason.items():
        reasons[reason] = reasons.get(reason, 0) + n
    console.print(
        "rejected by reason: " + ", ".join(f"{r} {n:,}" for r, n in sorted(reasons.items()))
    )
    verdict = "[green]yes[/green]" if result.matches_manifest else "[red]NO[/red]"
    console.print(f"counts match what the generator injected: {verdict}")


def _money(minor: int, currency: str) -> str:
    """Minor units shown in major units, exactly (Decimal, never float)."""
    from billing.money import from_minor

    return f"{currency} {from_minor(minor, currency):,}"


def _write_statements(
    config: Settings, folder: Path, top: list[tuple[str, str]], console: Console
) -> list[Path]:
    """One HTML usage statement per top customer (meterline statement)."""
    from meterline.statement import write_statement

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
    from billing.db import create_ledger_engine, session_factory
    from billing.models import Customer, Invoice, InvoiceLine

    engine = create_ledger_engine(config.ledger_url)
    summary: dict[str, dict[str, Any]] = {}
    top_customers: list[tuple[str, str]] = []
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(
                    Invoice.currency, Invoice.status, func.count(), func.sum(Invoice.total_minor)
                )
                .group_by(Invoice.currency, Invoice.status)
                .order_by(Invoice.currency, Invoice.status)
            ).all()
            table = Table(title="invoices per currency")
            for column in ("currency", "status", "invoices", "total"):
                table.add_column(
                    column, justify="right" if column in ("invoices", "total") else "left"
                )
            for currency, status, count, total in rows:
                summary.setdefault(currency, {})[status] = {
                    "invoices": count,
                    "total_minor": int(total or 0),
                }
                table.add_row(currency, status, f"{count:,}", _money(int(total or 0), currency))
            console.print(table)
            biggest = session.execute(
                select(Invoice, Customer.external_id, Customer.name)
                .join(Customer, Customer.id == Invoice.customer_id)
                .where(Invoice.status == "finalized")
                .order_by(Invoice.total_minor.desc())
                .limit(top)
            ).all()
            for invoice, external_id, name in biggest:
                top_customers.append((external_id, f"{invoice.period_start_local:%Y-%m}"))
                lines = Table(
                    title=f"{name} ({external_id}) invoice {invoice.id}, "
                    f"{invoice.period_start:%Y-%m-%d}..{invoice.period_end:%Y-%m-%d} UTC: "
                    f"{_money(invoice.total_minor, invoice.currency)}",
                    title_justify="left",
                )
                for column in ("kind", "price", "group", "quantity", "unit", "amount", "tiers"):
                    lines.add_column(
                        column,
                        justify="right" if column in ("quantity", "unit", "amount") else "left",
                    )
                for line in session.scalars(
                    select(InvoiceLine)
                    .where(InvoiceLine.invoice_id == invoice.id)
                    .order_by(InvoiceLine.id)
                ):
                    if line.amount_minor == 0 and line.kind == "usage":
                        continue
                    lines.add_row(
                        line.kind,
                        line.price_id,
                        line.dimension_group or "",
                        _qty(line.quantity),
                        "" if line.unit_amount is None else _qty(line.unit_amount),
                        _money(line.amount_minor, line.currency),
                        _tiers(line.breakdown),
                    )
                console.print(lines)
    finally:
        engine.dispose()
    return summary, top_customers


def _qty(value: Any) -> str:
    text = f"{value.normalize():f}"
    whole, _, frac = text.partition(".")
    return f"{int(whole):,}" + (f".{frac[:4]}" if frac else "")


def _tiers(breakdown: Any) -> str:
    """Graduated and volume lines: units and unit price per tier reached."""
    entries = breakdown.get("breakdown", []) if isinstance(breakdown, dict) else []
    parts = [
        f"t{e['tier']} {_qty(Decimal(e['units']))}×{e['unit_amount']}"
        for e in entries
        if isinstance(e, dict) and e.get("kind") == "tier" and e.get("tier")
    ]
    return " + ".join(parts)


def _print_adjustments(config: Settings, console: Console) -> int:
    from billing.db import create_ledger_engine, session_factory
    from billing.models import Customer, Invoice, InvoiceLine

    engine = create_ledger_engine(config.ledger_url)
    try:
        with session_factory(engine)() as session:
            rows = session.execute(
                select(InvoiceLine, Customer.external_id)
                .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
                .join(Customer, Customer.id == Invoice.customer_id)
                .where(InvoiceLine.kind == "adjustment")
                .order_by(InvoiceLine.id)
            ).all()
            table = Table(
                title=f"late usage after finalization: {len(rows):,} adjustment lines "
                "on the next open invoices"
            )
            for column in ("customer", "price", "quantity", "amount", "adjusts line"):
                table.add_column(column)
            for line, customer in rows[:10]:
                table.add_row(
                    customer,
                    line.price_id,
                    f"{line.quantity.normalize():f}",
                    _money(line.amount_minor, line.currency),
                    str(line.adjusts_line_id or ""),
                )
            console.print(table)
            return len(rows)
    finally:
        engine.dispose()
