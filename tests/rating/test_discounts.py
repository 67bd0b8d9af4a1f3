"""Line-item discounts and the plan-level minimum commitment (rating.discounts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from rating import (
    CurrencyMismatchError,
    Discount,
    Money,
    RoundingMode,
    apply_discount,
    minimum_commitment_true_up,
    parse_price,
    rate,
)

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
FIN = parse_price({"currency": "USD", "model": "per_unit", "unit_amount": "0.99"}, name="fin")


def _discount(**fields: object) -> Discount:
    return Discount(price_id="fin_resolution", **fields)  # type: ignore[arg-type]


def test_percent_off_is_a_negative_rounded_line_on_the_rounded_charge() -> None:
    charge = rate(FIN, 1000)  # 990.00
    result = apply_discount(charge, _discount(percent_off="10"), JAN, FEB)
    assert result.applied
    assert result.amount == Decimal("-99.00")
    assert str(result.amount) == "-99.00"
    assert "10% off USD 990.00" in result.explanation


def test_percent_off_rounds_once_half_up_away_from_zero() -> None:
    charge = rate(FIN, 1)  # 0.99
    result = apply_discount(charge, _discount(percent_off="50"), JAN, FEB)
    assert result.amount_precise == Decimal("-0.495")
    assert result.amount == Decimal("-0.50")
    even = apply_discount(charge, _discount(percent_off="50"), JAN, FEB, rounding="half_even")
    assert even.amount == Decimal("-0.50")
    cent = rate(parse_price({"currency": "USD", "model": "flat", "amount": "0.01"}, name="c"), 0)
    assert apply_discount(cent, _discount(percent_off="50"), JAN, FEB).amount == Decimal("-0.01")
    halved = apply_discount(cent, _discount(percent_off="50"), JAN, FEB, rounding="half_even")
    assert halved.amount == Decimal("0.00")


def test_discount_uses_the_charge_rounding_mode_by_default() -> None:
    charge = rate(
        parse_price({"currency": "USD", "model": "flat", "amount": "0.01"}, name="c"),
        0,
        rounding=RoundingMode.HALF_EVEN,
    )
    assert apply_discount(charge, _discount(percent_off="50"), JAN, FEB).amount == Decimal("0.00")


def test_amount_off_never_takes_the_line_below_zero() -> None:
    charge = rate(FIN, 1000)
    assert apply_discount(charge, _discount(amount_off="50", currency="usd"), JAN, FEB).amount == (
        Decimal("-50.00")
    )
    capped = apply_discount(charge, _discount(amount_off=Money("2000", "USD")), JAN, FEB)
    assert capped.amount == Decimal("-990.00")
    assert "limited to the line's USD 990.00" in capped.explanation


def test_amount_off_in_another_currency_is_an_error() -> None:
    with pytest.raises(CurrencyMismatchError):
        apply_discount(rate(FIN, 10), _discount(amount_off="5", currency="EUR"), JAN, FEB)


def test_order_minimum_then_maximum_then_discount() -> None:
    """The minimum and maximum shape the line; the discount applies to that line and
    may take it below the minimum (a concession on top of the list price)."""
    price = parse_price(
        {
            "currency": "USD",
            "model": "per_unit",
            "unit_amount": "0.99",
            "minimum_amount": "100",
            "maximum_amount": "500",
        },
        name="fin",
    )
    low = rate(price, 50)  # 49.50 -> minimum 100
    assert low.amount == Decimal("100.00")
    assert apply_discount(low, _discount(percent_off="10"), JAN, FEB).amount == Decimal("-10.00")
    high = rate(price, 1000)  # 990 -> maximum 500
    assert high.amount == Decimal("500.00")
    assert apply_discount(high, _discount(percent_off="10"), JAN, FEB).amount == Decimal("-50.00")


@pytest.mark.parametrize(
    ("valid_from", "valid_to", "applies"),
    [
        (None, None, True),
        (JAN, FEB, True),  # exactly the period
        (JAN - timedelta(days=90), FEB, True),  # ends exactly at the period's end
        (JAN + timedelta(days=14), None, True),  # starts mid-period: whole period, no pro-rating
        (JAN - timedelta(days=30), JAN + timedelta(days=20), False),  # ends mid-period
        (FEB, None, False),  # starts at the period's end: next period
        (FEB + timedelta(days=1), None, False),
        (JAN - timedelta(days=60), JAN, False),  # ended before the period
        (JAN + timedelta(days=1), JAN + timedelta(days=2), False),  # inside the period only
    ],
)
def test_discount_applies_when_valid_at_the_period_end(
    valid_from: datetime | None, valid_to: datetime | None, applies: bool
) -> None:
    discount = _discount(percent_off="10", valid_from=valid_from, valid_to=valid_to)
    result = apply_discount(rate(FIN, 1000), discount, JAN, FEB)
    assert result.applied is applies
    if not applies:
        assert result.amount == Decimal("0.00")
        assert "not valid at the period's end" in result.explanation


def test_validity_compares_instants_across_timezones() -> None:
    paris = timezone(timedelta(hours=1))
    discount = _discount(percent_off="10", valid_to=datetime(2026, 2, 1, 1, tzinfo=paris))
    assert apply_discount(rate(FIN, 1), discount, JAN, FEB).applied  # = FEB 00:00 UTC


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of percent_off or amount_off"),
        ({"percent_off": "10", "amount_off": "5", "currency": "USD"}, "exactly one"),
        ({"percent_off": "0"}, "percent_off must be above 0"),
        ({"percent_off": "101"}, "at most 100"),
        ({"percent_off": 10.0}, "percent_off is a float"),
        ({"amount_off": "5"}, "amount_off needs a currency"),
        ({"amount_off": "-5", "currency": "USD"}, "amount_off must be above 0"),
        ({"percent_off": "10", "valid_from": datetime(2026, 1, 1)}, "timezone"),
        ({"percent_off": "10", "valid_from": FEB, "valid_to": JAN}, "valid_to must be after"),
    ],
)
def test_invalid_discounts_are_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _discount(**fields)


def test_period_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        apply_discount(rate(FIN, 1), _discount(percent_off="10"), datetime(2026, 1, 1), FEB)


@pytest.mark.parametrize(
    ("lines", "commitment", "rounding", "expected"),
    [
        ("1500.00", "2000", "half_up", "500.00"),
        ("0.00", "2000", "half_up", "2000.00"),
        ("2000.00", "2000", "half_up", None),
        ("2500.00", "2000", "half_up", None),
        ("1500.00", "2000.005", "half_up", "500.01"),
        ("1500.00", "2000.005", "half_even", "500.00"),
        ("1999.999", "2000", "half_up", None),  # a shortfall that rounds to zero
    ],
)
def test_minimum_commitment_true_up(
    lines: str, commitment: str, rounding: str, expected: str | None
) -> None:
    result = minimum_commitment_true_up(
        Money(lines, "USD"), Money(commitment, "USD"), RoundingMode(rounding)
    )
    if expected is None:
        assert result is None
    else:
        assert result == Money(expected, "USD")
        assert result is not None and str(result.amount) == expected


def test_minimum_commitment_of_the_committed_plan() -> None:
    """catalog/intercom.yaml, plan `committed`: USD 250 platform fee + 10 advanced
    seats at 85 + 1,200 resolutions with 500 free at 0.99 = 1,793.00, trued up to the
    2,000 minimum commitment by a 207.00 line."""
    platform = rate(parse_price({"currency": "USD", "model": "flat", "amount": "250"}, name="p"), 0)
    seats = rate(
        parse_price({"currency": "USD", "model": "per_unit", "unit_amount": "85"}, name="s"), 10
    )
    fin = rate(
        parse_price(
            {"currency": "USD", "model": "per_unit", "unit_amount": "0.99", "free_units": "500"},
            name="f",
        ),
        1200,
    )
    total = sum((c.money for c in (platform, seats, fin)), Money.zero("USD"))
    assert total == Money("1793.00", "USD")
    assert minimum_commitment_true_up(total, Money("2000", "USD")) == Money("207.00", "USD")


def test_minimum_commitment_currency_mismatch() -> None:
    with pytest.raises(CurrencyMismatchError):
        minimum_commitment_true_up(Money("1", "USD"), Money("2", "EUR"))
