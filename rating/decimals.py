"""Decimal plumbing shared by the rating modules: strict parsing (no floats) and the
exact arithmetic context.

Rating arithmetic runs in EXACT_CONTEXT, which traps Inexact: a product or sum that
would need more than EXACT_PRECISION significant digits raises instead of being
rounded silently, so every amount_precise is exact. The only rounding in the engine is
the explicit one to the currency's minor unit (money.round_money), done once per line.
"""

from __future__ import annotations

import re
from decimal import (
    Clamped,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    Underflow,
)
from typing import Annotated

from pydantic import PlainSerializer

from rating.errors import FloatNotAllowedError

EXACT_PRECISION = 60

EXACT_CONTEXT = Context(
    prec=EXACT_PRECISION,
    traps=[Inexact, InvalidOperation, Overflow, Underflow, DivisionByZero, Clamped],
)

ZERO = Decimal(0)
ONE = Decimal(1)

# The one grammar of a number a person writes, in a catalog, a price file or an option:
# JSON's number (also YAML 1.2's): an optional sign, digits with an optional fraction, an
# optional exponent: "0.99", "1000", "-3", ".5", "1e-2", "12345678901234567890.123456789".
# It is read exactly from its text; no separators, no NaN or Infinity, no hexadecimal.
NUMBER_PATTERN = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUMBER_TEXT = re.compile(NUMBER_PATTERN + r"\Z")
# A number written with an exponent could ask for a billion digits ("1e999999999"); none
# that a price or a quantity needs has more than this many digits either side of the point.
MAX_DIGITS = 100


def parse_number(text: str, what: str) -> Decimal:
    """The exact Decimal of a number's text (NUMBER_PATTERN, surrounding blanks ignored).

    Raises ValueError naming `what` when the text is not a number of that grammar or has
    more than MAX_DIGITS digits before or after the decimal point."""
    stripped = text.strip()
    if not _NUMBER_TEXT.match(stripped):
        raise ValueError(f'{what} is not a decimal number: {text!r} (write e.g. "0.99")')
    return _in_range(Decimal(stripped), what, text)


def _in_range(value: Decimal, what: str, shown: object) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and (value.adjusted() >= MAX_DIGITS or exponent < -MAX_DIGITS):
        raise ValueError(
            f"{what} is out of range: {shown!r} has more than {MAX_DIGITS} digits before or"
            " after the decimal point"
        )
    return value


def to_decimal(value: object, what: str) -> Decimal:
    """Convert an int, a Decimal or a number's text (NUMBER_PATTERN) to Decimal.

    Floats (and bools) are rejected with a message naming `what`, the field."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{what} must be a finite number, got {value}")
        return _in_range(value, what, str(value))
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, int):
        return _in_range(Decimal(value), what, value)
    if isinstance(value, str):
        return parse_number(value, what)
    if isinstance(value, float):
        raise FloatNotAllowedError(
            f'{what} is a float ({value!r}); write it as a decimal string, e.g. "{value!r}", '
            "because a float cannot hold most decimal amounts exactly"
        )
    raise ValueError(
        f"{what} must be a decimal string or an integer, got {type(value).__name__} {value!r}"
    )


def to_nonnegative(value: object, what: str) -> Decimal:
    number = to_decimal(value, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {fmt(number)}")
    if number.is_zero():
        # "-0" and "0" are the same quantity; keep the positive sign for display.
        return number.copy_abs()
    return number


def fmt(value: Decimal, grouping: bool = False) -> str:
    """Plain (never scientific) notation: Decimal('1E+3') -> '1000'."""
    return format(value, ",f" if grouping else "f")


def plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to an exponent: 990.00 -> 990, 0.50 -> 0.5."""
    if value.is_zero():
        return ZERO
    normal = value.normalize(EXACT_CONTEXT)
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return normal.quantize(ONE)
    return normal


# Decimal fields of the result types: serialized to JSON as plain decimal strings.
JsonDecimal = Annotated[Decimal, PlainSerializer(fmt, return_type=str, when_used="json")]
