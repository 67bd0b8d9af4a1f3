"""`meterline subscriptions change|changes`: a subscription's plan changes mid-period
(docs/rating.md, "Plan changes"). They call meterline.jobs.plan_change; errors and exit
codes follow the README's table (a refused change or option 2, an unknown subscription
3, a change at the same instant recorded by someone else meanwhile 4)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import click

from meterline.cli.exits import Unavailable
from meterline.cli.options import Timestamp, console, parse_day
from meterline.jobs import plan_change as jobs
from meterline.output import Column, format_money, format_quantity, plain_numbers, print_table

AT_HELP = (
    "a date YYYY-MM-DD (midnight in the subscription's timezone), or an RFC 3339 time with"
    " its offset (2026-10-15T00:00:00Z)"
)


class When(click.ParamType):
    """An instant of a subscription: a date is its midnight in the subscription's
    timezone, as `credits grant --effective-from` reads one (billing/credits/rows.py),
    resolved once the subscription is known (billing.plan_changes.resolve_at); a time
    is RFC 3339 with its offset (options.Timestamp's rules)."""

    name = "when"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str:
        return "DATE|TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> date | datetime:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            if len(text) == len("2026-10-15") and text[:4].isdigit() and text[4:5] == "-":
                return parse_day(text)
            return Timestamp().convert(value, param, ctx)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        except click.BadParameter as exc:
            # Timestamp's words for a date are "midnight UTC"; here it is the
            # subscription's midnight.
            self.fail(exc.message.replace("midnight UTC", "midnight in its timezone"), param, ctx)


@click.group()
def subscriptions() -> None:
    """Subscriptions: plan changes mid-period (docs/rating.md, "Plan changes")."""


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@subscriptions.command("change")
@click.argument("subscription")
@click.option(
    "--at",
    "at",
    type=When(),
    required=True,
    help=f"When the new plan takes effect: {AT_HELP}.",
)
@click.option("--plan", "plan", required=True, help="The plan it moves to (a catalog plan id).")
@click.option(
    "--tiers",
    type=click.Choice(["continue", "restart"]),
    required=True,
    help="Whether the period's cumulative tiers continue across the change or restart at it.",
)
@click.option(
    "--direction",
    type=click.Choice(["upgrade", "downgrade", "lateral"]),
    required=True,
    help="What you call the change (recorded as said, never inferred from the prices).",
)
@click.option("--by", "by", required=True, help="Who makes the change.")
@click.option("--reason", help="Why (recorded with the change).")
@click.option(
    "--preview", is_flag=True, help="Show the period's invoice with the change; write nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def change(
    subscription: str,
    at: date | datetime,
    plan: str,
    tiers: str,
    direction: str,
    by: str,
    reason: str | None,
    preview: bool,
    as_json: bool,
) -> None:
    """Change SUBSCRIPTION's plan at an instant: usage before it is rated by the old
    plan's prices, after it by the new plan's; fixed fees are prorated across the split.
    A date --at is midnight in the subscription's timezone (as for `credits grant`); the
    output shows the instant in UTC."""
    request = jobs.ChangeRequest(subscription, at, plan, tiers, direction, by, reason)
    try:
        result = jobs.change(request, preview=preview)
    except jobs.PlanChangeConflict as exc:
        # Someone else's change at the same instant won: look, then try again (exit 4).
        raise Unavailable(str(exc)) from None
    doc = result.to_json()
    if as_json:
        _echo_json(doc)
        return
    head = (
        f"{doc['subscription']}: {doc['from_plan']} -> {doc['to_plan']} at {doc['at']}"
        f" ({doc['direction']}, tiers {doc['tiers']}, by {doc['changed_by']})"
    )
    if result.recorded:
        click.echo(f"recorded {head}")
        return
    click.echo(f"preview (nothing written) of {head}")
    invoice = doc["invoice"]
    if invoice["error"]:
        click.echo(f"the period cannot be rated: {invoice['error']}")
        return
    print_preview({**invoice, "period_start": doc["period_start"], "period_end": doc["period_end"]})


# A price version's content hash ("2026-01-01#e31f7e54295a"): --json and `audit explain`
# have it; a person reads the version by its date, as `invoices show` prints it.
_VERSION_HASH = re.compile(r"(\d{4}-\d{2}-\d{2})#[0-9a-f]{6,}\b")


def _readable(text: str) -> str:
    """A rating description as `invoices show` prints it: long decimals without trailing
    zeros (output.plain_numbers), versions by their date."""
    return plain_numbers(_VERSION_HASH.sub(r"\1", text))


def print_preview(invoice: dict[str, Any]) -> None:
    """The previewed invoice as `invoices show` prints one: a table of its lines
    (quantities without trailing zeros, money with its currency through the one money
    formatter), the total, then how each line was computed."""
    out = console()
    lines = invoice["lines"]
    currency = invoice["currency"]
    print_table(
        out,
        [
            "price",
            "kind",
            Column("version", "number"),
            Column("quantity", "number"),
            Column("amount", "money"),
        ],
        [
            (
                ln["price_id"] + (f" [{ln['group']}]" if ln["group"] else ""),
                ln["kind"],
                str(ln["price_version"] or "").split("#", 1)[0],
                format_quantity(Decimal(ln["quantity"]), 4),
                format_money(Decimal(ln["amount"]), ln["currency"]),
            )
            for ln in lines
        ],
        title=f"invoice {invoice['period_start']} .. {invoice['period_end']}",
    )
    out.print(f"total {format_money(Decimal(invoice['total']), currency)}", markup=False)
    notes = [f"  {ln['price_id']}: {_readable(ln['description'])}" for ln in lines]
    notes = [n for n, ln in zip(notes, lines, strict=True) if ln["description"]]
    if notes:
        out.print("how each line was computed:", markup=False)
        for note in notes:
            out.print(note, markup=False, highlight=False)


@subscriptions.command("changes")
@click.argument("subscription")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def changes(subscription: str, as_json: bool) -> None:
    """List SUBSCRIPTION's recorded plan changes, in time order."""
    rows = jobs.list_changes(subscription)
    if as_json:
        _echo_json(rows)
        return
    print_table(
        console(),
        ["at", "from", "to", "tiers", "direction", "by", "reason", "recorded"],
        [
            (
                r["at"],
                r["from_plan"],
                r["to_plan"],
                r["tiers"],
                r["direction"],
                r["changed_by"],
                r["reason"] or "",
                r["created_at"] or "",
            )
            for r in rows
        ],
        title=f"plan changes of {subscription}",
    )
