"""`meterline quote`: a pricing calculator for engineers and sales, and the contract
for external test cases.

    meterline quote --price fin.yaml --quantity 12000
    meterline quote --price '{"currency": "USD", "model": "per_unit", "unit_amount": "0.99"}' \\
        --quantity 1500 --json

PRICE is a path to a JSON or YAML file, or an inline JSON object, with the fields of
the price vocabulary (docs/rating.md). Amounts are in major units, written as numbers
(``0.99``, ``1e-2``) or decimal strings (``"0.99"``): every number is read exactly from
its text (billing.yamlio, the one reader of user files), never through a float. An
invalid price or quantity exits with code 2 and a message that names the field.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.table import Table
from rich.text import Text

from meterline.cli.options import console as make_console
from meterline.jobs.quote import (
    DEFAULT_ROUNDING,
    ROUNDING_MODES,
    PriceInputError,
    QuantityError,
    read_price,
)
from meterline.jobs.quote import decimal_text as fmt
from meterline.jobs.quote import (
    quote as rate_quote,
)

if TYPE_CHECKING:
    from rating import RatedCharge

_ITEM = {
    "unit": "per unit",
    "percentage": "percentage",
    "flat": "flat fee",
    "free": "free units",
    "minimum": "minimum true-up",
    "maximum": "maximum cap",
}


def _bad_price(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="'--price'")


def _item(kind: str, tier: int | None, blocks: str | None) -> str:
    if kind == "tier":
        return f"tier {tier}"
    if kind == "package":
        return f"package × {blocks}"
    return _ITEM.get(kind, kind)


def _print_table(charge: RatedCharge) -> None:
    console = make_console()
    with_versions = bool(charge.versions)
    table = Table(
        title=f"{charge.model} price in {charge.currency}, quantity {fmt(charge.quantity, True)}",
        title_justify="left",
    )
    if with_versions:
        table.add_column("Version")
    table.add_column("Item")
    table.add_column("Units", justify="right", no_wrap=True)
    table.add_column("Unit amount", justify="right", no_wrap=True)
    table.add_column("Flat", justify="right", no_wrap=True)
    table.add_column("Amount", justify="right", no_wrap=True)
    for entry in charge.breakdown:
        blocks = fmt(entry.blocks, True) if entry.blocks is not None else None
        cells = [
            _item(entry.kind, entry.tier, blocks),
            fmt(entry.units, True),
            fmt(entry.unit_amount, True),
            fmt(entry.flat_amount, True) if entry.flat_amount else "",
            fmt(entry.amount, True),
        ]
        if with_versions:
            cells.insert(0, entry.version or "")
        table.add_row(*(Text(cell) for cell in cells))
    blank = [Text("")] * (len(table.columns) - 2)
    table.add_section()
    table.add_row(Text("precise total"), *blank, Text(fmt(charge.amount_precise, True)))
    table.add_row(
        Text(f"total, rounded {charge.rounding.replace('_', '-')}", style="bold"),
        *blank,
        Text(f"{charge.currency} {fmt(charge.amount, True)}", style="bold"),
    )
    console.print(table)
    console.print(Text(charge.explanation), soft_wrap=True)


@click.command("quote")
@click.option(
    "--price",
    "price_arg",
    required=True,
    metavar="PRICE",
    help="Path to a JSON or YAML price file, or an inline JSON object.",
)
@click.option(
    "--quantity",
    required=True,
    metavar="Q",
    help="Billable quantity for the period, a decimal such as 1500 or 12.5.",
)
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object.")
@click.option(
    "--rounding",
    type=click.Choice(ROUNDING_MODES),
    default=DEFAULT_ROUNDING,
    show_default=True,
    help="Rounding to the currency's minor unit, once per line.",
)
def quote(price_arg: str, quantity: str, as_json: bool, rounding: str) -> None:
    """Rate a quantity against a price and show the breakdown."""
    try:
        data, name = read_price(price_arg)
        result = rate_quote(data, quantity, name=name, rounding=rounding)
    except PriceInputError as exc:
        raise _bad_price(str(exc)) from None
    except QuantityError as exc:
        raise click.BadParameter(str(exc), param_hint="'--quantity'") from None
    charge = result.charge
    if as_json:
        payload = charge.model_dump(mode="json")
        payload["price"] = result.price.model_dump(mode="json", exclude_none=True)
        click.echo(json.dumps(payload))
    else:
        _print_table(charge)
