"""Money: an exact amount in MAJOR units with its ISO 4217 currency, and rounding to
the currency's minor unit.

Minor-unit exponents come from the `iso4217` package (the ISO 4217 maintenance
agency's published table), never from a hand-written table: JPY 0, USD 2, KWD 3,
CLF 4. Codes whose minor unit is "N.A." (XAU gold, XXX, XTS...) are not currencies an
invoice can be rounded in, and are rejected.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

import iso4217

from rating.decimals import EXACT_CONTEXT, fmt, to_decimal
from rating.errors import CurrencyMismatchError, FloatNotAllowedError


class RoundingMode(StrEnum):
    """How a line's precise amount is rounded to the minor unit, once per line.

    half_up rounds ties away from zero (0.125 -> 0.13, -0.125 -> -0.13), which is what
    people expect on an invoice; half_even (banker's rounding) is available for
    catalogs that need it."""

    HALF_UP = "half_up"
    HALF_EVEN = "half_even"

    @classmethod
    def _missing_(cls, value: object) -> RoundingMode | None:
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            for member in cls:
                if member.value == key:
                    return member
        return None


#: The rounding mode of every charge: each line's precise amount is rounded half-up to
#: the currency's minor unit (DESIGN.md invariant 4; the catalog refuses any other
#: rounding_mode at load). Close, adjustments and the audit all rate with this one.
ROUNDING: Final = RoundingMode.HALF_UP

DECIMAL_ROUNDING: Final = {
    RoundingMode.HALF_UP: ROUND_HALF_UP,
    RoundingMode.HALF_EVEN: ROUND_HALF_EVEN,
}

# Quantize needs room for every digit of the result; no Inexact trap here because
# rounding is the point of this context.
ROUNDING_CONTEXT: Final = Context(prec=EXACT_CONTEXT.prec + 10, traps=[InvalidOperation])

# currency code as given -> (normalized code, quantum such as Decimal('0.01'))
_CURRENCIES: dict[str, tuple[str, Decimal]] = {}


def _currency(currency: object) -> tuple[str, Decimal]:
    try:
        return _CURRENCIES[currency]  # type: ignore[index]
    except (KeyError, TypeError):
        pass
    if not isinstance(currency, str):
        raise ValueError(f"currency must be an ISO 4217 code such as 'USD', got {currency!r}")
    code = currency.strip().upper()
    try:
        entry = iso4217.Currency(code)
    except ValueError:
        raise ValueError(f"unknown ISO 4217 currency {currency!r}") from None
    exponent = entry.exponent
    if exponent is None:
        raise ValueError(
            f"currency {code!r} ({entry.currency_name}) has no minor unit in ISO 4217"
            " and cannot be invoiced"
        )
    info = (code, Decimal(1).scaleb(-exponent))
    _CURRENCIES[currency] = info
    return info


def minor_unit(currency: str) -> Decimal:
    """The currency's minor unit as a quantum: USD Decimal('0.01'), JPY Decimal('1')."""
    return _currency(currency)[1]


def normalize_currency(currency: str) -> str:
    """'usd' -> 'USD'; raises ValueError for a code that is not ISO 4217."""
    return _currency(currency)[0]


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places of the currency's minor unit: USD 2, JPY 0, KWD 3."""
    exponent = _currency(currency)[1].as_tuple().exponent
    assert isinstance(exponent, int)
    return -exponent


def round_money(amount: Decimal, currency: str, mode: RoundingMode | str = ROUNDING) -> Decimal:
    """Round a precise amount to the currency's minor unit: Decimal('1.005'), 'USD' ->
    Decimal('1.01') (half-up). The result always carries exactly the minor-unit
    exponent, so 5 USD reads '5.00'."""
    if isinstance(amount, float):
        raise FloatNotAllowedError(f"amount is a float ({amount!r}); use Decimal")
    if not isinstance(amount, Decimal):
        amount = to_decimal(amount, "amount")
    quantum = _currency(currency)[1]
    rounding = DECIMAL_ROUNDING[RoundingMode(mode)]
    return amount.quantize(quantum, rounding=rounding, context=ROUNDING_CONTEXT)


class Money:
    """An exact amount in major units and its currency, immutable.

    Arithmetic follows py-moneyed: + and - only between the same currency, * only by
    an int or a Decimal. A float anywhere raises FloatNotAllowedError; mixing
    currencies raises CurrencyMismatchError. Sums are exact (they raise rather than
    round when they would exceed the exact context's precision)."""

    __slots__ = ("amount", "currency")

    amount: Decimal
    currency: str

    def __init__(self, amount: Decimal | int | str, currency: str) -> None:
        object.__setattr__(self, "amount", to_decimal(amount, "amount"))
        object.__setattr__(self, "currency", normalize_currency(currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Money is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Money is immutable")

    def _same_currency(self, other: Money, operation: str) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot {operation} {self} and {other}: different currencies"
            )

    def __add__(self, other: object) -> Money:
        if isinstance(other, Money):
            self._same_currency(other, "add")
            return Money(EXACT_CONTEXT.add(self.amount, other.amount), self.currency)
        if isinstance(other, float):
            raise FloatNotAllowedError(f"cannot add a float ({other!r}) to {self}")
        return NotImplemented

    def __radd__(self, other: object) -> Money:
        # sum() starts from the int 0; adding that 0 is harmless and allows sum(lines).
        if type(other) is int and other == 0:
            return self
        return self.__add__(other)

    def __sub__(self, other: object) -> Money:
        if isinstance(other, Money):
            self._same_currency(other, "subtract")
            return Money(EXACT_CONTEXT.subtract(self.amount, other.amount), self.currency)
        if isinstance(other, float):
            raise FloatNotAllowedError(f"cannot subtract a float ({other!r}) from {self}")
        return NotImplemented

    def __mul__(self, factor: object) -> Money:
        if isinstance(factor, float):
            raise FloatNotAllowedError(
                f"cannot multiply {self} by a float ({factor!r}); use Decimal or int"
            )
        if isinstance(factor, Decimal | int) and not isinstance(factor, bool):
            return Money(EXACT_CONTEXT.multiply(self.amount, Decimal(factor)), self.currency)
        if isinstance(factor, Money):
            raise TypeError("cannot multiply money by money")
        return NotImplemented

    __rmul__ = __mul__

    def __neg__(self) -> Money:
        return Money(self.amount.copy_negate(), self.currency)

    def __pos__(self) -> Money:
        return self

    def __abs__(self) -> Money:
        return Money(self.amount.copy_abs(), self.currency)

    def __bool__(self) -> bool:
        return not self.amount.is_zero()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        return self.currency == other.currency and self.amount == other.amount

    def __hash__(self) -> int:
        return hash((self.amount, self.currency))

    def _other(self, other: object) -> Decimal:
        if not isinstance(other, Money):
            raise TypeError(f"cannot compare {self} with {type(other).__name__}")
        self._same_currency(other, "compare")
        return other.amount

    def __lt__(self, other: object) -> bool:
        return self.amount < self._other(other)

    def __le__(self, other: object) -> bool:
        return self.amount <= self._other(other)

    def __gt__(self, other: object) -> bool:
        return self.amount > self._other(other)

    def __ge__(self, other: object) -> bool:
        return self.amount >= self._other(other)

    def round(self, mode: RoundingMode | str = ROUNDING) -> Money:
        """The amount rounded to the currency's minor unit."""
        return Money(round_money(self.amount, self.currency, mode), self.currency)

    def __repr__(self) -> str:
        return f"Money('{fmt(self.amount)}', '{self.currency}')"

    def __str__(self) -> str:
        return f"{self.currency} {fmt(self.amount, grouping=True)}"
