"""`meterline close`: the billing_close DAG's step, by hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import click

from meterline.cli_ingest import Timestamp
from meterline.close import close_periods
from meterline.settings import settings


def month_end(period: str) -> datetime:
    try:
        first = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise click.BadParameter(f"{period!r} is not YYYY-MM", param_hint="--period") from None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return datetime.combine(following, datetime.min.time(), tzinfo=UTC)


@click.command("close")
@click.option("--as-of", "as_of", type=Timestamp(), help="Close periods due at this time.")
@click.option("--period", help="YYYY-MM: close as of that month's end plus the grace period.")
@click.option("--json", "as_json", is_flag=True)
def close(as_of: datetime | None, period: str | None, as_json: bool) -> None:
    """Close due billing periods: rate, post, finalize; adjust late usage."""
    if (as_of is None) == (period is None):
        raise click.UsageError("give exactly one of --as-of or --period")
    if period:
        as_of = month_end(period) + timedelta(hours=settings().finalize_grace_hours)
    assert as_of is not None
    report = close_periods(as_of)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    doc = report.to_json()
    click.echo(
        f"as of {doc['as_of']}: closed {doc['periods_closed']:,} periods, "
        f"{doc['lines_created']:,} new lines ({doc['lines_unchanged']:,} unchanged), "
        f"finalized {doc['invoices_finalized']:,} invoices; "
        f"{doc['adjustment_lines']:,} adjustment lines for late usage"
    )
