"""`meterline subscriptions change|changes`: a subscription's plan changes mid-period
(docs/rating.md, "Plan changes"). They call meterline.jobs.plan_change; errors and exit
codes follow the README's table (a refused change or option 2, an unknown subscription
3, a change at the same instant recorded by someone else meanwhile 4)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import click

from meterline.cli.exits import Unavailable
from meterline.cli.options import Timestamp, console, parse_day
from meterline.jobs import plan_change as jobs
from meterline.output import Column, print_table

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
    print_table(
        console(),
        ["price", "kind", Column("quantity", "number"), Column("amount", "money"), "how"],
        [
            (ln["price_id"], ln["kind"], ln["quantity"], ln["amount"], ln["description"])
            for ln in invoice["lines"]
        ],
        title=f"invoice {doc['period_start']} .. {doc['period_end']}, total {invoice['total']}",
    )


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
