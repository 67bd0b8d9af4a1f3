"""`meterline generate`: synthetic Intercom-like usage files with their ground truth."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import click

from meterline.cli.options import Day
from meterline.demo.synthetic import GeneratorConfig, Manifest
from meterline.demo.synthetic import generate as generate_data
from meterline.output import format_count, progress


@click.command("generate")
@click.option(
    "--customers",
    type=click.IntRange(1, 10_000_000),
    required=True,
    help="Number of customers (at most 10,000,000).",
)
@click.option(
    "--start",
    type=Day(),
    required=True,
    help="First UTC day of the range (YYYY-MM-DD).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3_660),
    required=True,
    help="Days in the range (at most 3660).",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=1,
    show_default=True,
    help="Random seed: the same seed and options write the same files.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output folder (created if missing).",
)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Re-send this fraction of events as exact copies (a tenth as many conflicting copies).",
)
@click.option(
    "--late",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Move this fraction of events to the late file.",
)
@click.option(
    "--malformed",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Add this fraction of malformed rows, spread evenly over the rejection reasons.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["parquet", "jsonl"]),
    default="parquet",
    show_default=True,
    help="Format of the event files.",
)
@click.option(
    "--events-per-day",
    type=click.IntRange(1, 1_000_000_000),
    default=None,
    help="Scale resolution volume to about this many events per day (e.g. 10000000; at most 10^9).",
)
@click.option("--overwrite", is_flag=True, help="Replace earlier generated files in --out.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def generate(
    customers: int,
    start: date,
    days: int,
    seed: int,
    out: Path,
    duplicates: float,
    late: float,
    malformed: float,
    file_format: str,
    events_per_day: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write deterministic synthetic usage (customers, daily event files, late file, truth).

    The same arguments always give identical files. OUT/manifest.json holds the exact
    counts (valid events, duplicates, conflicts, malformed rows per reason, late events)
    that an ingestion of the files must reproduce.
    """
    try:
        config = GeneratorConfig(
            customers=customers,
            start=start,
            days=days,
            seed=seed,
            out=out,
            duplicates=duplicates,
            late=late,
            malformed=malformed,
            format="jsonl" if file_format == "jsonl" else "parquet",
            events_per_day=events_per_day,
            overwrite=overwrite,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    began = time.perf_counter()
    with progress("generate: rows", quiet=quiet) as tick:

        def report(done: int, total: int, current: str) -> None:
            tick(done, total, current)

        try:
            manifest = generate_data(config, progress=report)
        except (FileExistsError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(_summary(manifest, out, time.perf_counter() - began))


def _summary(manifest: Manifest, out: Path, seconds: float) -> str:
    late = manifest.late
    files = len(manifest.files) + len(manifest.late_files)
    bad = sum(manifest.daily.malformed.values())
    n = format_count
    return (
        f"wrote {n(manifest.daily.rows + late.rows)} rows in {n(files)} files to {out} "
        f"in {seconds:.1f}s: {n(manifest.daily.valid_events)} valid events, "
        f"{n(manifest.daily.exact_duplicates)} exact duplicates, "
        f"{n(manifest.daily.conflicting_duplicates)} conflicting, {n(bad)} malformed, "
        f"{n(late.rows)} late rows ({n(manifest.customers)} customers, {manifest.days} days)"
    )
