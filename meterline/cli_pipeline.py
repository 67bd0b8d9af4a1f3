"""`meterline rollup` and `meterline backfill`: the usage_rollup DAG's step, by hand."""

from __future__ import annotations

import json
from datetime import date, datetime

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from meterline.pipeline import RollupReport, backfill, days_between, rollup_day

DAY = click.DateTime(["%Y-%m-%d"])


def _day(value: datetime) -> date:
    return value.date()


@click.command("rollup")
@click.option("--day", required=True, type=DAY, help="The UTC day to rebuild (YYYY-MM-DD).")
@click.option("--no-late", is_flag=True, help="Do not rebuild earlier days that got late events.")
@click.option("--json", "as_json", is_flag=True)
def rollup(day: datetime, no_late: bool, as_json: bool) -> None:
    """Rebuild one day's usage rollup (and earlier days with late events), atomically."""
    report = rollup_day(_day(day), late=not no_late)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    _print(report)


def _print(report: RollupReport) -> None:
    for result in report.rebuilt:
        click.echo(
            f"{result['day']}: {result['events']:,} events -> {result['rollup_rows']:,} rollup rows"
            + ("  (late events)" if result["day"] != report.day.isoformat() else "")
        )


@click.command("backfill")
@click.option("--from", "first", required=True, type=DAY)
@click.option("--to", "last", required=True, type=DAY)
@click.option("--quiet", is_flag=True)
def backfill_command(first: datetime, last: datetime, quiet: bool) -> None:
    """Run the nightly rollup for every day in a range, in order, in this process.

    The same task code as the usage_rollup DAG, for users without a scheduler; with
    one, `airflow backfill create --dag-id usage_rollup --from-date ... --to-date ...`.
    """
    try:
        days = days_between(_day(first), _day(last))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    console = Console(stderr=True)
    with Progress(
        TextColumn("backfill {task.fields[day]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("backfill", total=len(days), day="")

        def advance(report: RollupReport) -> None:
            progress.update(task, advance=1, day=report.day.isoformat())

        reports = backfill(days[0], days[-1], on_day=advance)
    events = sum(
        r["events"] for rep in reports for r in rep.rebuilt if r["day"] == rep.day.isoformat()
    )
    late = sorted({d for rep in reports for d in rep.late_days})
    click.echo(
        f"rolled up {len(reports)} days ({events:,} events)"
        + (f"; rebuilt late days: {', '.join(late)}" if late else "")
    )
