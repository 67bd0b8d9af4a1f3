"""`meterline credits load|grant|list|balance|void`: credit grants by hand
(docs/credits.md). They call meterline.jobs.credits; errors and exit codes follow the
README's table (a refused grant or option 2, an unknown customer or grant 3)."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from meterline.cli.options import AS_OF_HELP, Timestamp, console
from meterline.jobs import credits as jobs
from meterline.output import Column, format_amount, format_money, format_quantity, print_table

WHEN_HELP = (
    "a date YYYY-MM-DD (midnight in the subscription's timezone, or the customer's), or"
    " an RFC 3339 time with its offset"
)


@click.group()
def credits() -> None:
    """Credit grants: prepaid commitments and promotional credits (docs/credits.md)."""


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _amount(value: str | Decimal, grant: dict[str, Any]) -> str:
    """An amount of the grant's unit: money through the one money formatter
    ("USD 5,000.00"), units with their meter ("10,000 fin_resolution")."""
    if grant["meter"] is None:
        return format_money(Decimal(value), grant["currency"])
    return f"{format_quantity(Decimal(value))} {grant['meter']}"


def _grant_cell(grant: dict[str, Any]) -> str:
    """The grant's id (void or not), and below it its terms: kind and unit (a currency,
    or the meter of a grant of units), rollover, price paid, reason, who granted it,
    whose it is, on what and when, and its link to the term before or after it."""
    g = grant
    applies = g["applies_to"] + (":" + ",".join(g["applies_to_ids"]) if g["applies_to_ids"] else "")
    lines = [
        g["grant_id"] + (" (void)" if g["voided_at"] else ""),
        f"  {g['kind']} in {g['unit']}",
        f"  rollover {'yes' if g['rollover'] else 'no'}",
    ]
    if g["price_paid"] is not None:
        lines.append(f"  price paid {format_money(Decimal(g['price_paid']), g['currency'])}")
    lines += [
        f"  reason: {g['reason']}",
        f"  by {g['created_by']}",
        f"  {g['customer']}"
        + (f" / {g['subscription']}" if g["subscription"] else "")
        + f", priority {g['priority']}, {applies}",
        f"  {g['effective_from']} -> {g['expires_at'] or 'never'}",
    ]
    if g["voided_at"]:
        lines.append(
            f"  voided {g['voided_at']} by {g['voided_by']}"
            + (f": {g['void_reason']}" if g.get("void_reason") else "")
        )
    if g.get("rolled_over_from"):
        lines.append(f"  rolled over from {g['rolled_over_from']}")
    if g.get("rolled_over_to"):
        lines.append(f"  rolled over to {g['rolled_over_to']}")
    return "\n".join(lines)


ACCOUNTS = ("granted", "consumed", "expired", "voided", "rolled_over", "remaining")


def _number(value: str, grant: dict[str, Any]) -> str:
    """An account in the table, its unit under the grant's id: money with its
    currency's decimals and digits grouped (the one money formatter's), units grouped."""
    if grant["meter"] is None:
        return format_amount(Decimal(value), grant["currency"])
    return format_quantity(Decimal(value))


def _table(grants: list[dict[str, Any]], title: str) -> None:
    """A row per grant: its id with its terms below, and its accounts in its unit (the
    identity of docs/credits.md: granted = consumed + expired + voided + rolled over +
    remaining)."""
    print_table(
        console(),
        ["grant", *(Column(a.replace("_", " "), "money") for a in ACCOUNTS)],
        [(_grant_cell(g), *(_number(g[a], g) for a in ACCOUNTS)) for g in grants],
        title=title,
    )


@credits.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(jobs.GRANT_FORMATS),
    help="File format (default: from the extension: .yaml/.yml, .jsonl, .csv).",
)
@click.option("--by", help="Who grants them (default: the user running the command).")
def load(file: Path, fmt: str | None, by: str | None) -> None:
    """Create the credit grants of FILE that the ledger does not hold yet. All or
    nothing: every problem is listed with its line and field."""
    result = jobs.load_file(file, fmt, by=by or getpass.getuser())  # type: ignore[arg-type]
    click.echo(
        f"{file}: {result.rows} grant(s): {result.created} created,"
        f" {result.unchanged} already in the ledger as given"
    )


@credits.command("grant")
@click.option("--grant-id", required=True, help="The grant's own id (printable, no '|').")
@click.option("--customer", required=True, help="The customer's external id.")
@click.option("--subscription", help="Only this subscription of the customer draws on it.")
@click.option(
    "--kind", type=click.Choice(jobs.GRANT_KINDS), required=True, help="The kind of grant."
)
@click.option("--currency", required=True, help="The customer's currency (ISO 4217).")
@click.option("--amount", help="Money granted, in major units (or give --units and --meter).")
@click.option("--units", help="Units of --meter granted (instead of --amount).")
@click.option("--meter", help="The meter whose units --units counts.")
@click.option(
    "--priority",
    type=click.IntRange(0, 100),
    default=50,
    show_default=True,
    help="0..100, lower is drawn first.",
)
@click.option("--effective-from", required=True, help=f"When it takes effect: {WHEN_HELP}.")
@click.option("--expires-at", help=f"When it expires (default: never): {WHEN_HELP}.")
@click.option(
    "--applies-to",
    default="all_usage",
    show_default=True,
    help="all_usage, prices:ID[,ID...] or meters:METER[,METER...].",
)
@click.option("--price-paid", help="What the customer paid for a paid_commit (major units).")
@click.option("--rollover", is_flag=True, help="Unused balance rolls over to the next term.")
@click.option("--reason", required=True, help="Why the grant is given (kept with it).")
@click.option("--by", help="Who grants it (default: the user running the command).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def grant(as_json: bool, by: str | None, **fields: Any) -> None:
    """Create one credit grant (the rules of a grants file's row)."""
    record = {k: v for k, v in fields.items() if v is not None}
    record["customer_id"] = record.pop("customer")
    if "subscription" in record:
        record["subscription_id"] = record.pop("subscription")
    stored = jobs.grant_one(record, by=by or getpass.getuser())
    if as_json:
        _echo_json(stored)
        return
    click.echo(
        f"grant {stored['grant_id']}: {_amount(stored['granted'], stored)} for"
        f" {stored['customer']}, remaining {_amount(stored['remaining'], stored)}"
    )


@credits.command("list")
@click.option("--customer", help="Only this customer's grants.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(customer: str | None, as_json: bool) -> None:
    """List credit grants with what each granted, consumed, lost to expiry, rolled over
    to its next term's grant and holds."""
    grants = jobs.list_grants(customer=customer)
    if as_json:
        _echo_json({"grants": grants})
        return
    _table(grants, f"{len(grants):,} grant(s)")


@credits.command("balance")
@click.option("--customer", required=True, help="The customer's external id.")
@click.option("--as-of", "as_of", type=Timestamp(), help=f"Balances as of then: {AS_OF_HELP}.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def balance(customer: str, as_of: datetime | None, as_json: bool) -> None:
    """A customer's grants and balances (as of a moment: the entries effective by then)."""
    grants = jobs.balances(customer, as_of=as_of)
    if as_json:
        _echo_json({"customer": customer, "grants": grants})
        return
    _table(grants, f"credit balances of {customer}")
    totals: dict[str, tuple[Decimal, dict[str, Any]]] = {}
    for g in grants:
        if not g["voided_at"]:
            total = totals.get(g["unit"], (Decimal(0), g))[0] + Decimal(g["remaining"])
            totals[g["unit"]] = (total, g)
    for _unit, (total, g) in sorted(totals.items()):
        console().print(f"remaining {_amount(total, g)}")


@credits.command("void")
@click.argument("grant_id")
@click.option("--as-of", "as_of", type=Timestamp(), required=True, help=AS_OF_HELP)
@click.option("--reason", required=True, help="Why the grant is voided (kept with it).")
@click.option("--by", help="Who voids it (default: the user running the command).")
def void(grant_id: str, as_of: datetime, reason: str, by: str | None) -> None:
    """Void credit grant GRANT_ID: its remaining balance goes back; nothing draws on it."""
    stored = jobs.void(grant_id, as_of=as_of, by=by or getpass.getuser(), reason=reason)
    # Voided past its expiry, what was left then expired (breakage) or rolled over to the
    # next term's grant (which stays) before the void.
    expired = (
        f", {_amount(stored['expired'], stored)} expired unused at {stored['expires_at']}"
        if Decimal(stored["expired"])
        else ""
    )
    rolled = (
        f", {_amount(stored['rolled_over'], stored)} rolled over to"
        f" {stored['rolled_over_to']} at {stored['expires_at']}"
        if Decimal(stored["rolled_over"])
        else ""
    )
    click.echo(
        f"grant {stored['grant_id']} voided: {_amount(stored['voided'], stored)} returned,"
        f" {_amount(stored['consumed'], stored)} consumed stays paid{expired}{rolled}"
    )
