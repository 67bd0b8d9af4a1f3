"""The statement's text: amounts with their currency's minor unit, quantities with their
meaningful decimals, and how a rated charge's amount was reached. Pure.

Amounts render from typed values: ledger integers in minor units, and the rating's
Decimals, with the currency's ISO 4217 minor unit (JPY 0, USD 2, KWD 3), never cut
(billing.money.format_amount, the one money formatter).
"""

from __future__ import annotations

from decimal import Decimal

from billing.money import format_amount, from_minor
from meterline.output import format_quantity
from rating import RatedCharge


def money_text(value: Decimal, currency: str) -> str:
    """An amount in major units, exact, grouped, with at least the currency's ISO 4217
    minor-unit decimals (billing.money.format_amount): USD 3667.8 -> "3,667.80", KWD
    12.345 -> "12.345", JPY 3668 -> "3,668"; an unrounded tier amount or unit price
    keeps its digits (USD 0.0125): a line is rounded once, on its total."""
    return format_amount(value, currency)


def minor_text(minor: int, currency: str) -> str:
    """Integer minor units as grouped major-unit text: 366780 USD -> "3,667.80"."""
    return money_text(from_minor(minor, currency), currency)


def quantity_text(value: Decimal, places: int | None = None) -> str:
    """A quantity with its meaningful decimals, grouped (meterline.output.format_quantity):
    12226.000000000 -> "12,226", 1.500000000 -> "1.5". With ``places``, at most that
    many decimals, and "≈" in front when that rounded the value (10.333333333 ->
    "≈ 10.333")."""
    return format_quantity(value, places)


def plain_text(value: Decimal, places: int | None = None) -> str:
    """A quantity as plain machine-readable text (no grouping, no "≈"), for the page's
    data attributes: quantity_text's digits without its marks."""
    return quantity_text(value, places).removeprefix("≈ ").replace(",", "")


def working(charge: RatedCharge) -> str:
    """How the charge's amount was reached, from its typed breakdown, for a person with a
    calculator: "12,226, volume: tier 2: 12,226 × 0.30 = 3,667.80 → 3,667.80"."""
    cur = charge.currency
    several = len(charge.versions) > 1
    parts = []
    for e in charge.breakdown:
        if e.kind in ("free", "minimum", "maximum"):
            continue
        if e.kind == "flat":
            text = f"flat {money_text(e.amount, cur)}"
        elif e.kind == "package":
            blocks = quantity_text(e.blocks if e.blocks is not None else Decimal(0))
            text = (
                f"{quantity_text(e.units)} units in {blocks} package(s)"
                f" × {money_text(e.unit_amount, cur)}"
            )
        elif e.kind == "percentage":
            text = f"{quantity_text(e.unit_amount.scaleb(2))}% of {money_text(e.units, cur)}"
        else:
            tier = f"tier {e.tier}: " if e.kind == "tier" else ""
            text = f"{tier}{quantity_text(e.units)} × {money_text(e.unit_amount, cur)}"
        if e.kind != "flat" and e.flat_amount:
            text += f" + flat {money_text(e.flat_amount, cur)}"
        if several and e.version:
            text = f"[{e.version}] {text}"
        parts.append(text)
    head = quantity_text(charge.quantity)
    if charge.free_units:
        head += f" ({quantity_text(charge.free_units)} free)"
    out = f"{head}, {charge.model}: {' + '.join(parts) or 'nothing to price'}"
    out += f" = {money_text(charge.subtotal_precise, cur)}"
    if charge.minimum_adjustment:
        out += f"; raised to the minimum by {money_text(charge.minimum_adjustment, cur)}"
    if charge.maximum_adjustment:
        out += f"; capped at the maximum by {money_text(-charge.maximum_adjustment, cur)}"
    return f"{out} → {money_text(charge.amount, cur)} ({charge.rounding.value.replace('_', '-')})"
