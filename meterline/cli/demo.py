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
@click.option(
    "--serve",
    is_flag=True,
    help="After the demo, run the HTTP service on its ledger and warehouse and print the"
    " support console's address and an API key (scopes read, support) created for it;"
    " until Ctrl-C.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65_535),
    help="With --serve: the local port to listen on (default 8080; 0: any free port).",
)
def demo(
    customers: int,
    start: date,
    days: int,
    seed: int,
    folder: Path,
    serve: bool,
    port: int | None,
) -> None:
    """Run the whole job on generated data in a fresh folder (embedded; no server needed).

    With --serve, then serve the result on 127.0.0.1 (`meterline serve`) and print the
    support console's URL and an API key to sign in with, until Ctrl-C."""
    from meterline.cli.options import console
    from meterline.demo.run import run_demo

    if port is not None and not serve:
        raise click.UsageError("--port is for --serve: add --serve, or leave --port out")
    config = DemoConfig(
        folder=folder,
        customers=customers,
        start=start,
        days=days,
        seed=seed,
    )
    out = console(wrap=True)
    result = run_demo(config, out)
    if not result.matches_manifest:
        raise SystemExit(1)
    if serve:
        from meterline.demo.serve import serve_demo

        serve_demo(config, out, port=8080 if port is None else port)
