"""`meterline usage CUSTOMER_ID` and `meterline preview CUSTOMER_ID`: a customer's usage so
far in its current billing periods, and the invoice each would end with if no more usage
arrived (docs/usage-preview.md). They call meterline.jobs.usage and meterline.jobs.preview.

Exit codes (the README's table): 0 shown; 1 a current period cannot be rated (listed with
the reason, as close says it); 2 a bad option (a time without an offset); 3 an unknown
customer; 4 the warehouse or ledger cannot be reached.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from meterline.cli.options import AS_OF_HELP, Timestamp, console
from meterline.jobs.preview import CustomerPreview, InvoicePreview, customer_preview
from meterline.jobs.usage import CustomerUsage, SubscriptionUsage, customer_usage
from meterline.output import (
    Column,
    format_minor,
    format_money,
    format_quantity,
    json_text,
    plain_numbers,
    print_table,
)

if TYPE_CHECKING:
    from rich.console import Console

AS_OF_OPTION_HELP = f"As of this time (default: now): {AS_OF_HELP}."


def _as_of(value: datetime | None) -> datetime:
    # The one place a clock is read: the person asked for "now" by giving no time.
    return value if value is not None else datetime.now(UTC)


@click.command("usage")
@click.argument("customer_id")
@click.option("--as-of", "as_of", type=Timestamp(), help=AS_OF_OPTION_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def usage(customer_id: str, as_of: datetime | None, as_json: bool) -> None:
    """A customer's usage so far in its current billing periods: quantity and cost per
    price.

    Counts the events timestamped before --as-of: from the rollup where it is complete,
    from the raw events for the days not rolled up yet and the day in progress. Prices
    are rated as close rates them, as if the period ended at the end of --as-of's hour
    (fixed fees prorated to it); discounts, credits and the minimum commitment are in
    `meterline preview`. Exit code 1 when a current period cannot be rated."""
    result = customer_usage(customer_id, _as_of(as_of))
    if as_json:
        click.echo(json_text(result))
    else:
        render_usage(result, console())
    if not result.ok:
        sys.exit(1)


@click.command("preview")
@click.argument("customer_id")
@click.option("--as-of", "as_of", type=Timestamp(), help=AS_OF_OPTION_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def preview(customer_id: str, as_of: datetime | None, as_json: bool) -> None:
    """The invoice each current billing period of a customer would end with if no more
    usage arrived.

    The whole period rated as close rates it (fixed fees, usage, proration, plan changes,
    discounts, credit grants drawn down, the minimum true-up), on the events timestamped
    before --as-of, with the keys close posts its lines under. Exit code 1 when a current
    period cannot be rated."""
    result = customer_preview(customer_id, _as_of(as_of))
    if as_json:
        click.echo(json_text(result))
    else:
        render_preview(result, console())
    if not result.ok:
        sys.exit(1)


# --- text ---------------------------------------------------------------------------------


def _utc(moment: datetime) -> str:
    """An instant as UTC text to the second, fractions kept when there are some."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def _counted(result: CustomerUsage | CustomerPreview) -> str:
    """What the numbers hold: events up to when, and from where."""
    through = (
        f"events counted through {_utc(result.computed_through)}"
        if result.computed_through is not None
        else "no events ingested yet"
    )
    raw = ", ".join(d.isoformat() for d in result.raw_days)
    where = f"from the rollup before {_utc(result.rolled_up_through)}"
    if raw:
        where += f", from the raw events on {raw} (UTC days not rolled up yet)"
    return f"{through}; {where}"


def _heading(item: SubscriptionUsage | InvoicePreview) -> str:
    """One subscription's identity and where it stands."""
    head = f"subscription {item.subscription}  plan {item.plan}  {item.currency}"
    if item.status == "not_started":
        assert item.starts_at is not None
        return f"{head}: not started, its first period starts {_utc(item.starts_at)}"
    if item.status == "ended":
        assert item.ended_at is not None
        return f"{head}: ended {_utc(item.ended_at)}, no current period"
    assert item.period_start is not None and item.period_end is not None
    return (
        f"{head}  period {_local(item.period_start, item.timezone)} .."
        f" {_local(item.period_end, item.timezone)} ({item.timezone}),"
        f" {_utc(item.period_start)} .. {_utc(item.period_end)}"
    )


def _local(moment: datetime, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(tz)).date().isoformat()


def _price(price_id: str, group: str | None) -> str:
    return f"{price_id} [{group}]" if group else price_id


def render_usage(result: CustomerUsage, out: Console) -> None:
    """The usage as text: what was counted, then per subscription its prices so far."""
    out.print(f"usage of {result.customer} as of {_utc(result.as_of)}: {_counted(result)}")
    if not result.subscriptions:
        out.print(f"{result.customer} has no subscription")
    for sub in result.subscriptions:
        out.print("")
        out.print(_heading(sub), markup=False, highlight=False)
        if sub.status != "current":
            continue
        if sub.error is not None:
            out.print(f"cannot be rated: {sub.error}", markup=False, highlight=False)
            continue
        assert sub.usage_end is not None
        if len(sub.segments) > 1:
            parts = ", then ".join(
                f"{s.plan} {_utc(s.start)} .. {_utc(s.end)}" for s in sub.segments
            )
            out.print(f"plan change in this period: {parts}", markup=False, highlight=False)
        print_table(
            out,
            ["price", "kind", Column("quantity", "number"), Column("amount", "money")],
            [
                (
                    _price(p.price_id, p.group),
                    p.kind,
                    format_quantity(p.quantity, 4),
                    format_money(p.amount, p.currency),
                )
                for p in sub.prices
            ],
            title=f"rated from the period's start to {_utc(sub.usage_end)}",
        )
        out.print(f"total so far {format_minor(sub.amount_minor, sub.currency)}")


def render_preview(result: CustomerPreview, out: Console) -> None:
    """The preview as text: what was counted, then per subscription the invoice's lines
    and totals, and how each line was computed."""
    out.print(
        f"invoice preview of {result.customer} as of {_utc(result.as_of)}, if no more usage"
        f" arrived: {_counted(result)}"
    )
    if not result.invoices:
        out.print(f"{result.customer} has no subscription")
    for inv in result.invoices:
        out.print("")
        out.print(_heading(inv), markup=False, highlight=False)
        if inv.status != "current":
            continue
        if inv.error is not None:
            out.print(f"cannot be rated: {inv.error}", markup=False, highlight=False)
            continue
        print_table(
            out,
            [
                "kind",
                "price",
                Column("version", "number"),
                Column("quantity", "number"),
                Column("amount", "money"),
            ],
            [
                (
                    ln.kind,
                    _price(ln.price_id, ln.group),
                    ln.price_version.split("#", 1)[0],
                    format_quantity(ln.quantity, 4),
                    format_money(ln.amount, ln.currency),
                )
                for ln in inv.lines
            ],
        )
        totals = [
            ("subtotal", inv.subtotal_minor),
            ("discounts", inv.discount_minor),
            ("adjustments", inv.adjustment_minor),
            ("total", inv.total_minor),
        ]
        shown = [format_minor(minor, inv.currency) for _, minor in totals]
        width = max(len(text) for text in shown)
        for (label, _), text in zip(totals, shown, strict=True):
            out.print(f"{label:>12} {text:>{width}}")
        out.print("how each line was computed:")
        for ln in inv.lines:
            out.print(
                f"  {_price(ln.price_id, ln.group)} ({ln.kind}): {plain_numbers(ln.description)}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
