"""`meterline demo`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from meterline.cli.options import Day
from meterline.demo.run import DemoConfig


@click.command("demo")
@click.option(
    "--customers",
    default=DemoConfig.customers,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Number of generated customers (at most 1,000,000).",
)
@click.option(
    "--start",
    default=DemoConfig.start.isoformat(),
    show_default=True,
    type=Day(),
    help="First UTC day of generated usage (YYYY-MM-DD).",
)
@click.option(
    "--days",
    default=DemoConfig.days,
    show_default=True,
    type=click.IntRange(1, 40),
    help="Days of generated usage.",
)
@click.option(
    "--seed",
    default=DemoConfig.seed,
    show_default=True,
    type=click.IntRange(0, 2**32 - 1),
    help="Random seed of the generator (same seed, same data).",
)
@click.option(
    "--dir",
    "folder",
    default=str(DemoConfig.folder),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for everything the demo writes; emptied first.",
)
def demo(customers: int, start: date, days: int, seed: int, folder: Path) -> None:
    """Run the whole job on generated data in a fresh folder (embedded; no server needed)."""
    from meterline.cli.options import console
    from meterline.demo.run import run_demo

    config = DemoConfig(
        folder=folder,
        customers=customers,
        start=start,
        days=days,
        seed=seed,
    )
    result = run_demo(config, console(wrap=True))
    if not result.matches_manifest:
        raise SystemExit(1)
