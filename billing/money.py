"""Exact money helpers for the ledger: Decimal only, minor units from ISO 4217 (the
table is rating.money's).

Amounts arrive in major units, already rounded once per line by the rating engine
(invariant 4); the ledger only checks that and converts them to integer minor units.
"""

from __future__ import annotations

from decimal import Context, Decimal
from functools import cache
from typing import Any

from rating.money import minor_unit_exponent


class CurrencyError(ValueError):
    """Not an ISO 4217 currency code."""


@cache
def exponent(currency: str) -> int:
    """Digits after the decimal point of the currency's minor unit (JPY 0, USD 2, KWD 3),
    from rating's one ISO 4217 table. The ledger takes a code only as stored: three
    upper-case letters (rating also reads "usd"). Raises CurrencyError."""
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise CurrencyError(
            f"currency must be a 3-letter upper-case ISO 4217 code, got {currency!r}"
        )
    try:
        return minor_unit_exponent(currency)
    except ValueError as exc:
        raise CurrencyError(str(exc)) from None


def require_decimal(value: Any, what: str, *, allow_int: bool = True) -> Decimal:
    """``value`` as a finite Decimal; a float (or anything else inexact) is a TypeError."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{what} must be a finite decimal, got {value}")
        return value
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        raise TypeError(f"{what} is a float ({value!r}): money and quantities must be Decimal")
    raise TypeError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}")


def to_minor(amount: Decimal, currency: str, what: str = "amount") -> int:
    """Integer minor units of an already-rounded major-unit amount.

    An amount with more decimals than the currency's minor unit was not rounded by the
    rating engine, which is a bug upstream; refusing it keeps invariant 4 honest.
    """
    exp = exponent(currency)
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{what} {amount} has more than {exp} decimal(s), the minor unit of {currency}:"
            " round it once per line before posting"
        )
    return int(scaled)


def from_minor(minor: int, currency: str) -> Decimal:
    """Major-unit Decimal of integer minor units, with exactly the currency's decimals."""
    return Decimal(minor).scaleb(-exponent(currency))


def minor_text(minor: int, currency: str) -> str:
    """Integer minor units as plain major-unit text with the currency's decimals
    ("1234.50" for 123450 USD), as reports and JSON show amounts."""
    return format(from_minor(minor, currency), "f")


def canonical(value: Decimal) -> str:
    """One spelling per number (``1.0`` and ``1.00`` are the same content)."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of the currency, in major units (USD 0.01)."""
    return Decimal(1).scaleb(-exponent(currency))


# Wide enough that trimming zeros never rounds a ledger amount (Decimal(38, 9) at most).
_WIDE = Context(prec=100)


def format_amount(amount: Decimal, currency: str) -> str:
    """An amount in major units as people read it: digits grouped by thousands, at least
    the currency's ISO 4217 minor-unit decimals, and never fewer digits than the amount
    has (an unrounded precise amount or unit price is shown whole, never cut).

    JPY 3668 -> "3,668"; USD 1234.5 -> "1,234.50"; KWD 12.345 -> "12.345";
    USD 0.0125 -> "0.0125"; USD 0.9900 -> "0.99". Raises CurrencyError for an unknown
    currency and TypeError for a float."""
    value = require_decimal(amount, "amount")
    places = exponent(currency)
    normal = Decimal(0) if value.is_zero() else value.normalize(_WIDE)
    tail = normal.as_tuple().exponent
    if isinstance(tail, int) and tail > -places:
        normal = normal.quantize(minor_unit(currency), context=_WIDE)
    return format(normal, ",f")


def format_money(amount: Decimal, currency: str) -> str:
    """``format_amount`` with the currency code in front: "USD 1,234.50", "JPY -3,668"."""
    return f"{currency} {format_amount(amount, currency)}"


def format_minor(minor: int, currency: str) -> str:
    """Integer minor units as ``format_money`` text: 123450 USD -> "USD 1,234.50"."""
    return format_money(from_minor(minor, currency), currency)
