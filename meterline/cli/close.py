"""`meterline close`: the billing_close DAG's step, by hand."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from meterline.cli.ingest import Timestamp
from meterline.jobs.close import close_periods
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def close(as_of: datetime | None, period: str | None, as_json: bool) -> None:
    """Close due billing periods: rate, post, finalize; adjust late usage.

    Exit code 1 when some subscription period could not be billed (listed with the
    reason: no price for its plan or currency, an amount beyond the ledger's limits);
    every other period is billed."""
    if (as_of is None) == (period is None):
        raise click.UsageError("give exactly one of --as-of or --period")
    if period:
        as_of = month_end(period) + timedelta(hours=settings().finalize_grace_hours)
    assert as_of is not None
    report = close_periods(as_of)
    doc = report.to_json()
    if as_json:
        click.echo(json.dumps(doc))
    else:
        for line in render_close(doc):
            click.echo(line)
    if not report.ok:
        sys.exit(1)


def render_close(doc: dict[str, Any]) -> list[str]:
    """The close report as text: one summary line, then one line per subscription that
    could not be billed, with what is missing."""
    out = [
        f"as of {doc['as_of']}: closed {doc['periods_closed']:,} periods, "
        f"{doc['lines_created']:,} new lines ({doc['lines_unchanged']:,} unchanged), "
        f"finalized {doc['invoices_finalized']:,} invoices; "
        f"{doc['adjustment_lines']:,} adjustment lines for late usage"
    ]
    failed = doc["not_billed"]
    if failed:
        periods = sum(len(f["periods"]) for f in failed)
        out.append(
            f"NOT billed: {periods:,} period(s) of {len({f['subscription'] for f in failed}):,}"
            " subscription(s); nothing was posted or finalized for them:"
        )
        for f in failed:
            first, last = f["periods"][0][0], f["periods"][-1][1]
            what = "late usage not adjusted" if f["what"] == "adjustment" else "not invoiced"
            out.append(
                f"  {f['subscription']} ({f['customer']}): {len(f['periods'])} period(s)"
                f" {first[:10]}..{last[:10]} {what}: {f['reason']}"
            )
    return out
