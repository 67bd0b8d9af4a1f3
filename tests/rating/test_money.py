"""Money and rounding: py-moneyed's rules (no currency mixing, no floats) and ISO 4217
minor units from the maintained `iso4217` table."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating import (
    CurrencyMismatchError,
    FloatNotAllowedError,
    Money,
    RoundingMode,
    minor_unit_exponent,
    normalize_currency,
    round_money,
)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2),
        ("usd", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("CLF", 4),
    ],
)
def test_minor_unit_exponent_comes_from_iso_4217(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("code", ["XAU", "XXX", "USX", "", "US", 840])
def test_codes_without_a_minor_unit_or_unknown_are_rejected(code: object) -> None:
    with pytest.raises(ValueError, match="currency"):
        normalize_currency(code)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "currency", "mode", "expected"),
    [
        ("1.005", "USD", "half_up", "1.01"),
        ("1.005", "USD", "half_even", "1.00"),
        ("1.015", "USD", "half_even", "1.02"),
        ("-1.005", "USD", "half_up", "-1.01"),
        ("-1.005", "USD", "half_even", "-1.00"),
        ("2.5", "JPY", "half_up", "3"),
        ("2.5", "JPY", "half_even", "2"),
        ("0.0005", "KWD", "half_up", "0.001"),
        ("5", "USD", "half_up", "5.00"),
        ("0", "JPY", "half_up", "0"),
        (
            "123456789012345678901234567890.125",
            "USD",
            "half_up",
            "123456789012345678901234567890.13",
        ),
    ],
)
def test_round_money(amount: str, currency: str, mode: str, expected: str) -> None:
    rounded = round_money(Decimal(amount), currency, RoundingMode(mode))
    assert str(rounded) == expected


def test_round_money_rejects_floats() -> None:
    with pytest.raises(FloatNotAllowedError):
        round_money(1.005, "USD")  # type: ignore[arg-type]


def test_rounding_mode_accepts_catalog_spellings() -> None:
    assert RoundingMode("half_up") is RoundingMode.HALF_UP
    assert RoundingMode("HALF-EVEN") is RoundingMode.HALF_EVEN
    with pytest.raises(ValueError):
        RoundingMode("up")


def test_money_arithmetic_same_currency() -> None:
    a, b = Money("0.99", "usd"), Money(1, "USD")
    assert a + b == Money("1.99", "USD")
    assert b - a == Money("0.01", "USD")
    assert a * 3 == Money("2.97", "USD")
    assert 3 * a == Money("2.97", "USD")
    assert a * Decimal("0.5") == Money("0.495", "USD")
    assert -a == Money("-0.99", "USD")
    assert sum([a, a, a]) == Money("2.97", "USD")
    assert a < b and b >= a
    assert (a * Decimal("0.5")).round() == Money("0.50", "USD")
    assert (a * Decimal("0.5")).round(RoundingMode.HALF_EVEN) == Money("0.50", "USD")
    assert str(Money("1234.5", "EUR")) == "EUR 1,234.5"
    assert repr(a) == "Money('0.99', 'USD')"
    assert hash(Money("1.0", "USD")) == hash(Money("1", "USD"))


def test_money_mixing_currencies_is_an_error() -> None:
    usd, eur = Money("1", "USD"), Money("1", "EUR")
    with pytest.raises(CurrencyMismatchError):
        usd + eur
    with pytest.raises(CurrencyMismatchError):
        usd - eur
    with pytest.raises(CurrencyMismatchError):
        _ = usd < eur
    assert usd != eur


def test_money_floats_are_an_error() -> None:
    with pytest.raises(FloatNotAllowedError):
        Money(0.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(FloatNotAllowedError):
        Money("1", "USD") * 1.1
    with pytest.raises(FloatNotAllowedError):
        Money("1", "USD") + 1.1
    with pytest.raises(TypeError):
        Money("1", "USD") * Money("1", "USD")
    with pytest.raises(TypeError):
        Money("1", "USD") * True
    with pytest.raises(TypeError):
        Money("1", "USD") + 1  # only Money, and sum()'s starting 0


def test_money_is_immutable() -> None:
    money = Money("1", "USD")
    with pytest.raises(AttributeError):
        money.amount = Decimal(2)


def test_money_sums_are_exact_or_raise() -> None:
    big = Money("1" * 59, "USD")
    assert (big + Money("0", "USD")).amount == Decimal("1" * 59)
    with pytest.raises(ArithmeticError):
        big * Decimal("1111111111.1")  # 70 significant digits: never rounded silently


@given(
    a=st.integers(-(10**15), 10**15),
    b=st.integers(-(10**15), 10**15),
    scale=st.integers(0, 6),
)
def test_money_addition_is_exact_and_commutative(a: int, b: int, scale: int) -> None:
    x, y = Money(Decimal(a).scaleb(-scale), "USD"), Money(Decimal(b).scaleb(-scale), "USD")
    assert x + y == y + x
    assert (x + y) - y == x
