"""The pricing calculator behind `meterline quote`: read a price (a JSON or YAML file,
or an inline JSON object, through billing.yamlio, the one reader of user files: every
number exact from its text), parse it (rating.parse_price) and rate a quantity against
it (rating.rate). Pure but for reading the price file.

Raises PriceInputError (a price that cannot be read or is invalid, the message naming
the field) and QuantityError (a quantity that cannot be rated); both are ValueErrors the
command turns into a refused option (exit code 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from billing import yamlio
from rating import Price, PriceError, RatedCharge, RoundingMode, parse_price, rate
from rating.decimals import fmt

__all__ = [
    "ROUNDING_MODES",
    "PriceInputError",
    "QuantityError",
    "Quote",
    "decimal_text",
    "quote",
    "read_price",
]

ROUNDING_MODES: tuple[str, ...] = tuple(mode.value for mode in RoundingMode)
DEFAULT_ROUNDING = RoundingMode.HALF_UP.value


class PriceInputError(ValueError):
    """The price given cannot be used; the message says why (and names the field)."""


class QuantityError(ValueError):
    """The quantity cannot be rated; the message says why."""


@dataclass(frozen=True)
class Quote:
    """A price and the charge it gives a quantity (units, tiers, precise and rounded)."""

    price: Price
    charge: RatedCharge


def decimal_text(value: Decimal, grouping: bool = False) -> str:
    """A Decimal in plain notation, never scientific (1E+3 -> 1000; rating.decimals)."""
    return fmt(value, grouping)


def read_price(value: str) -> tuple[Mapping[str, Any], str]:
    """The price fields from ``value`` (a path to a .json/.yaml file, or an inline JSON
    object), and a name for messages (the file's name, or "inline")."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = yamlio.load_json(text)
        except yamlio.InputError as exc:
            raise PriceInputError(f"inline JSON is invalid: {exc}") from None
        name = "inline"
    else:
        path = Path(value)
        if not path.is_file():
            raise PriceInputError(
                f"{value!r} is neither a file nor an inline JSON object ({{...}})"
            )
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PriceInputError(f"cannot read {value}: {exc}") from None
        try:
            data = (
                yamlio.load_json(content)
                if path.suffix.lower() == ".json"
                else yamlio.load(content)
            )
        except yamlio.InputError as exc:
            raise PriceInputError(f"cannot parse {value}: {exc}") from None
        name = path.name
    if not isinstance(data, Mapping):
        raise PriceInputError(
            "expected an object with the price fields (currency, model, ...), "
            f"got {type(data).__name__}"
        )
    return data, name


def quote(
    data: Mapping[str, Any],
    quantity: str,
    *,
    name: str = "inline",
    rounding: str = DEFAULT_ROUNDING,
) -> Quote:
    """Parse the price fields and rate ``quantity`` (decimal text) against them,
    rounding the line once to the currency's minor unit with ``rounding``."""
    try:
        price = parse_price(data, name=name)
    except PriceError as exc:
        raise PriceInputError(str(exc)) from None
    try:
        charge = rate(price, quantity, rounding=RoundingMode(rounding))
    except ValueError as exc:
        raise QuantityError(str(exc)) from None
    return Quote(price, charge)
