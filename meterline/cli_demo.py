"""`meterline demo`."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click
from rich.console import Console

from meterline.demo import DemoConfig, run_demo


@click.command("demo")
@click.option(
    "--customers", default=DemoConfig.customers, show_default=True, type=click.IntRange(1)
)
@click.option(
    "--start",
    default=DemoConfig.start.isoformat(),
    show_default=True,
    type=click.DateTime(["%Y-%m-%d"]),
)
@click.option("--days", default=DemoConfig.days, show_default=True, type=click.IntRange(1, 40))
@click.option("--seed", default=DemoConfig.seed, show_default=True, type=click.IntRange(0))
@click.option(
    "--dir",
    "folder",
    default=str(DemoConfig.folder),
    show_default=True,
    type=click.Path(path_type=Path),
)
def demo(customers: int, start: datetime, days: int, seed: int, folder: Path) -> None:
    """Run the whole job on generated data in a fresh folder (embedded; no server needed)."""
    config = DemoConfig(
        folder=folder,
        customers=customers,
        start=date.fromordinal(start.toordinal()),
        days=days,
        seed=seed,
    )
    result = run_demo(config, Console())
    if not result.matches_manifest:
        raise SystemExit(1)
