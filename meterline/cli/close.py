"""`meterline close`: the billing_close DAG's step, by hand."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from meterline.cli.options import AS_OF_HELP, Month, Timestamp
from meterline.jobs.close import CloseReport, NotRolledUp, close_periods, iso_utc, period_due
from meterline.output import json_text
from meterline.settings import settings


@click.command("close")
@click.option(
    "--as-of", "as_of", type=Timestamp(), help=f"Close periods due at this time: {AS_OF_HELP}."
)
@click.option(
    "--period",
    type=Month(),
    help="Close as of the time every period ending in that month is due, in any timezone: "
    "the month's end (UTC) + 12 h (the latest local midnight, UTC-12) + the grace period.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def close(as_of: datetime | None, period: str | None, as_json: bool) -> None:
    """Close due billing periods: rate, post, finalize; adjust late usage.

    Exit code 1 when some subscription period could not be billed (listed with the
    reason: no price for its plan or currency, an amount beyond the ledger's limits),
    or holds a day whose events changed since it was rolled up (listed with the days and
    the `meterline rollup` / `backfill` command to run; nothing of it is posted or
    finalized until then); every other period is billed."""
    if (as_of is None) == (period is None):
        raise click.UsageError("give exactly one of --as-of or --period")
    if period:
        as_of = period_due(period, settings().finalize_grace_hours)
    assert as_of is not None
    report = close_periods(as_of)
    if as_json:
        click.echo(json_text(report))
    else:
        for line in render_close(report, taxed=settings().tax_sink == "avalara"):
            click.echo(line)
    if not report.ok:
        sys.exit(1)


# Periods listed per group of stale days in the text; --json lists them all.
SHOWN_PER_GROUP = 20


def render_close(report: CloseReport, *, taxed: bool = False) -> list[str]:
    """The close report as text: one summary line (with ``taxed``, the tax sink enabled,
    then what the invoices finalized wait for: docs/tax.md), then the periods held back
    for days not rolled up (per group of days: the command to run, then the periods),
    then one line per subscription that could not be billed, with what is missing."""
    out = [
        f"as of {report.as_of.isoformat()}: closed {report.periods_closed:,} periods, "
        f"{report.lines_created:,} new lines ({report.lines_unchanged:,} unchanged), "
        f"finalized {len(report.invoices_finalized):,} invoices; "
        f"{report.adjustment_lines:,} adjustment lines for late usage"
    ]
    if taxed and report.invoices_finalized:
        out.append(
            "their tax is pending: `meterline outbox deliver --sink avalara` records it;"
            " they reach Stripe after it (`meterline outbox deliver`)"
        )
    held = report.not_rolled_up
    if held:
        out.append(
            f"NOT closed: {len(held):,} period(s) of {len({h.subscription for h in held}):,}"
            " subscription(s) hold days whose events changed since they were rolled up;"
            " nothing was posted, finalized or adjusted for them. Roll the days up, then"
            " close again:"
        )
        groups: dict[tuple[str, ...], list[NotRolledUp]] = {}
        for h in held:
            groups.setdefault(tuple(d.isoformat() for d in h.days), []).append(h)
        for days, items in groups.items():
            out.append(f"  days {', '.join(days)}: run `{items[0].command}`")
            for h in items[:SHOWN_PER_GROUP]:
                start, end = iso_utc(h.period[0])[:10], iso_utc(h.period[1])[:10]
                what = "late usage not adjusted" if h.what == "adjustment" else "not invoiced"
                out.append(f"    {h.subscription} ({h.customer}): period {start}..{end} {what}")
            if len(items) > SHOWN_PER_GROUP:
                out.append(f"    ... and {len(items) - SHOWN_PER_GROUP:,} more (--json lists all)")
    failed = report.not_billed
    if failed:
        periods = sum(len(f.periods) for f in failed)
        out.append(
            f"NOT billed: {periods:,} period(s) of {len({f.subscription for f in failed}):,}"
            " subscription(s); nothing was posted or finalized for them:"
        )
        for f in failed:
            first, last = iso_utc(f.periods[0][0]), iso_utc(f.periods[-1][1])
            what = "late usage not adjusted" if f.what == "adjustment" else "not invoiced"
            out.append(
                f"  {f.subscription} ({f.customer}): {len(f.periods)} period(s)"
                f" {first[:10]}..{last[:10]} {what}: {f.reason}"
            )
    return out
