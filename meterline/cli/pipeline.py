"""`meterline rollup` and `meterline backfill`: the usage_rollup DAG's step, by hand."""

from __future__ import annotations

import json
from datetime import date

import click

from meterline.cli.options import Day
from meterline.jobs.rollup import RollupReport, backfill, days_between, rollup_day
from meterline.output import format_count, progress


@click.command("rollup")
@click.option("--day", required=True, type=Day(), help="The UTC day to rebuild (YYYY-MM-DD).")
@click.option("--no-late", is_flag=True, help="Do not rebuild earlier days that got late events.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def rollup(day: date, no_late: bool, as_json: bool, quiet: bool) -> None:
    """Rebuild one day's usage rollup (and earlier days with late events), atomically."""
    with progress("rollup: days rebuilt", quiet=quiet or as_json) as tick:
        report = rollup_day(day, late=not no_late, on_progress=tick)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    for line in rollup_lines(report):
        click.echo(line)


def rollup_lines(report: RollupReport) -> list[str]:
    """One line per rebuilt day: its events and rollup rows; late days marked. Then one
    line per interrupted ingest the rollup rolled back first (rolled_back_lines)."""
    return [
        *(
            f"{result['day']}: {format_count(result['events'])} events ->"
            f" {format_count(result['rollup_rows'])} rollup rows"
            + ("  (late events)" if result["day"] != report.day.isoformat() else "")
            for result in report.rebuilt
        ),
        *rolled_back_lines(report.rolled_back_ingests),
    ]


def rolled_back_lines(ingest_ids: list[str]) -> list[str]:
    """One line per ingest whose process died before it committed: the rollup removed
    its rows before building, so its files must be ingested again."""
    return [
        f"rolled back interrupted ingest {ingest_id}: its rows were removed; re-run that"
        " ingest (`meterline ingest` with its files)"
        for ingest_id in ingest_ids
    ]


@click.command("backfill")
@click.option("--from", "first", required=True, type=Day(), help="First UTC day (YYYY-MM-DD).")
@click.option("--to", "last", required=True, type=Day(), help="Last UTC day, included.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def backfill_command(first: date, last: date, quiet: bool) -> None:
    """Run the nightly rollup for every day in a range, in order, in this process.

    The same task code as the usage_rollup DAG, for users without a scheduler; with
    one, `airflow backfill create --dag-id usage_rollup --from-date ... --to-date ...`.
    """
    try:
        days = days_between(first, last)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--to'") from None
    with progress("backfill: days", total=len(days), quiet=quiet) as tick:

        def advance(report: RollupReport) -> None:
            tick.advance(detail=report.day.isoformat())

        reports = backfill(days[0], days[-1], on_day=advance)
    events = sum(
        r["events"] for rep in reports for r in rep.rebuilt if r["day"] == rep.day.isoformat()
    )
    late = sorted({d for rep in reports for d in rep.late_days})
    click.echo(
        f"rolled up {format_count(len(reports))} days ({format_count(events)} events)"
        + (f"; rebuilt late days: {', '.join(late)}" if late else "")
    )
    for line in rolled_back_lines([i for rep in reports for i in rep.rolled_back_ingests]):
        click.echo(line)
