"""`meterline demo`: the whole job on generated data, embedded, with no server.

Generates a month of Intercom-like usage (with duplicates, late and malformed rows),
ingests it day by day as the nightly deliveries would arrive, then the late file, and
checks the ingest accounting against what the generator injected.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from meterline.app import open_warehouse
from meterline.settings import Settings, load_settings
from meterline.synthetic import GeneratorConfig, Manifest, generate
from meters.catalog import load_meters
from meters.ingest import IngestOptions, Ingestor, SourceCounts
from meters.migrations import migrate


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


@dataclass
class DemoResult:
    manifest: Manifest
    daily: SourceCounts
    late: SourceCounts
    matches_manifest: bool
    seconds: float


def delivery_time(day: date) -> datetime:
    """A day's events are delivered at 00:30 UTC the next day (the nightly export)."""
    return datetime.combine(day + timedelta(days=1), clock(0, 30), tzinfo=UTC)


def demo_settings(config: DemoConfig) -> Settings:
    folder = config.folder.resolve()
    return load_settings(
        warehouse_url=f"chdb://{folder / 'warehouse'}",
        ledger_url=f"sqlite:///{folder / 'ledger.db'}",
    )


def run_demo(config: DemoConfig, console: Console) -> DemoResult:
    started = time.perf_counter()
    if config.folder.exists():
        shutil.rmtree(config.folder)
    data = config.folder / "data"
    settings = demo_settings(config)
    console.print(
        f"[bold]meterline demo[/bold]: {config.customers:,} customers, {config.days} days "
        f"from {config.start}, seed {config.seed}; everything under {config.folder}/"
    )

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

    catalog = load_meters(settings.catalog_path)
    options = IngestOptions(
        max_event_age=timedelta(days=settings.max_event_age_days),
        future_tolerance=timedelta(seconds=settings.future_tolerance_s),
        batch_rows=settings.ingest_batch_rows,
    )
    daily, late = SourceCounts(), SourceCounts()
    with open_warehouse(settings) as warehouse:
        migrate(warehouse)
        with _progress(console) as progress:
            task = progress.add_task("ingest daily files", total=len(manifest.files))
            for offset, name in enumerate(manifest.files):
                day = config.start + timedelta(days=offset)
                summary = Ingestor(
                    warehouse, catalog, ingested_at=delivery_time(day), options=options
                )
                daily.add(summary.ingest_files([data / name]).total)
                progress.advance(task)
            late_at = delivery_time(config.start + timedelta(days=config.days + 1))
            for name in manifest.late_files:
                summary = Ingestor(warehouse, catalog, ingested_at=late_at, options=options)
                late.add(summary.ingest_files([data / name]).total)

    matches = _matches(manifest, daily, late)
    result = DemoResult(manifest, daily, late, matches, time.perf_counter() - started)
    _print_accounting(console, result)
    return result


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
    console.print(
        "inspect rejected rows: METERLINE_WAREHOUSE_URL=chdb://.meterline/demo/warehouse "
        "meterline rejected --reason conflicting_duplicate"
    )
    console.print(f"done in {result.seconds:.1f}s")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
