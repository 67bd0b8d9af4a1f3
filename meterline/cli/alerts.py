"""`meterline alerts add|list|history|evaluate`: spend and usage alerts (docs/alerts.md).
They call meterline.jobs.alerts.

Exit codes (the README's table): 0 done; 1 `evaluate` could not rate some current period
(listed; the others were evaluated); 2 a bad option (both or neither of --customer and
--plan, a threshold that is not a positive number or has more decimals than the
currency); 3 an unknown customer, plan, meter or alert; 4 the ledger or warehouse cannot
be reached.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from meterline.cli.options import AS_OF_HELP, Id, Timestamp
from meterline.output import format_minor, format_quantity, json_text


@click.group("alerts")
def alerts() -> None:
    """Spend and usage alerts: thresholds per billing period, announced by webhook."""


@alerts.command("add")
@click.option("--customer", help="The customer the alert watches (or --plan).")
@click.option("--plan", help="Watch every customer on this plan (or --customer).")
@click.option("--meter", help="A usage alert: the quantity of this meter (or --currency).")
@click.option("--currency", help="A spend alert: the rated amount in this currency (or --meter).")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    required=True,
    help="A quantity (usage) or an amount in major units, e.g. 500.00 (spend); repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def add(
    customer: str | None,
    plan: str | None,
    meter: str | None,
    currency: str | None,
    thresholds: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add an alert: its thresholds fire once per billing period each."""
    from meterline.jobs.alerts import add_alert

    # Wall clock: when the person added it (a record of the action, not a billing time).
    view = add_alert(
        customer=customer,
        plan=plan,
        meter=meter,
        currency=currency,
        thresholds=list(thresholds),
        created_at=datetime.now(UTC),
    )
    if as_json:
        click.echo(json_text(view))
        return
    click.echo(f"alert {view.alert_id}: {_describe(view)}")


def _describe(view: object) -> str:
    from meterline.jobs.alerts import AlertView

    assert isinstance(view, AlertView)
    who = f"customer {view.customer}" if view.customer else f"plan {view.plan}"
    shown = ", ".join(_shown(v, view.currency) for v in view.thresholds)
    if view.metric == "usage":
        return f"{who}, usage of {view.meter} at {shown}"
    return f"{who}, spend at {shown}"


def _shown(value: str, currency: str | None) -> str:
    """A threshold or amount as a person reads it: money (`USD 250.50`) for a spend
    alert, whose values the jobs give in minor units; a quantity for a usage alert."""
    if currency is None:
        return format_quantity(value)
    return format_minor(int(value), currency)


@alerts.command("list")
@click.option("--customer", help="Only this customer's alerts (its own and its plans').")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def list_command(customer: str | None, as_json: bool) -> None:
    """List the alerts."""
    from meterline.jobs.alerts import list_alerts

    views = list_alerts(customer=customer)
    if as_json:
        click.echo(json_text(views))
        return
    if not views:
        click.echo("no alerts (`meterline alerts add` makes one)")
    for view in views:
        click.echo(f"{view.alert_id:>6}  {_describe(view)}")


@alerts.command("history")
@click.option("--alert", "alert_id", type=Id("an alert id"), help="Only this alert's.")
@click.option("--customer", help="Only this customer's.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def history(alert_id: int | None, customer: str | None, as_json: bool) -> None:
    """What was announced: each threshold fired (and retracted) per billing period."""
    from meterline.jobs.alerts import alert_history, list_alerts

    rows = alert_history(alert_id=alert_id, customer=customer)
    if as_json:
        click.echo(json_text(rows))
        return
    if not rows:
        click.echo("nothing announced")
        return
    # Spend values are in minor units: shown as money in the alert's currency.
    currency = {view.alert_id: view.currency for view in list_alerts()}
    for row in rows:
        cur = currency.get(row.alert_id)
        text = (
            f"alert {row.alert_id}  {row.subscription} ({row.customer})  period"
            f" {row.period_start:%Y-%m-%dT%H:%MZ}..{row.period_end:%Y-%m-%dT%H:%MZ}"
            f"  threshold {_shown(row.threshold, cur)}: fired at {_shown(row.fired_amount, cur)}"
            f" (as of {row.fired_at:%Y-%m-%dT%H:%MZ}, event {row.fired_event_id})"
        )
        if row.state == "retracted" and row.retracted_at is not None:
            text += (
                f", retracted at {_shown(row.retracted_amount or '0', cur)}"
                f" (as of {row.retracted_at:%Y-%m-%dT%H:%MZ}, event {row.retracted_event_id})"
            )
        click.echo(text)


@alerts.command("evaluate")
@click.option(
    "--as-of", "as_of", type=Timestamp(), help=f"As of this time (default: now): {AS_OF_HELP}."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def evaluate_command(as_of: datetime | None, as_json: bool) -> None:
    """Evaluate every alert on the current period's rated usage; write what fires or is
    retracted to the outbox (`meterline outbox deliver --sink webhook` sends it)."""
    from meterline.jobs.alerts import evaluate_alerts

    # The one place a clock is read: the person asked for "now" by giving no time.
    report = evaluate_alerts(as_of if as_of is not None else datetime.now(UTC))
    if as_json:
        click.echo(json_text(report.to_json()))
    else:
        click.echo(report.summary())
        for line in report.errors:
            click.echo(f"  {line}")
    if not report.ok:
        sys.exit(1)
