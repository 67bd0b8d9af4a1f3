"""ChargeLine: Decimal only, rounded once, deterministic keys and content hashes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing import ChargeLine, line_key
from billing.charges import adjustment_key
from billing.money import from_minor, to_minor
from billing.periods import period_containing

D = Decimal
PERIOD = period_containing(1, "America/New_York", datetime(2026, 3, 10, tzinfo=UTC))


def charge(**over: object) -> ChargeLine:
    fields: dict[str, object] = {
        "price_id": "fin_resolution",
        "price_version": "2026-01-01#abc",
        "kind": "usage",
        "quantity": D(3),
        "unit_amount": D("0.99"),
        "amount": D("2.97"),
        "amount_precise": D("2.97"),
        "currency": "USD",
        "breakdown": {"tiers": [{"units": D(3), "unit_amount": D("0.99")}]},
    }
    fields.update(over)
    return ChargeLine(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["quantity", "amount", "amount_precise", "unit_amount"])
def test_a_float_anywhere_is_a_type_error(field: str) -> None:
    with pytest.raises(TypeError, match="float"):
        charge(**{field: 2.97})


def test_a_float_inside_the_breakdown_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"breakdown\.tiers\[0\]\.unit_amount.*float"):
        charge(breakdown={"tiers": [{"units": D(3), "unit_amount": 0.99}]})


def test_strings_are_not_decimals() -> None:
    with pytest.raises(TypeError, match="must be a Decimal"):
        charge(amount="2.97")


def test_non_finite_decimals_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        charge(quantity=D("NaN"))


def test_amount_must_be_rounded_to_the_minor_unit() -> None:
    with pytest.raises(ValueError, match="more than 2 decimal"):
        charge(amount=D("2.975"), amount_precise=D("2.975"))
    jpy = charge(currency="JPY", amount=D(3), amount_precise=D("2.97"))
    assert jpy.amount_minor == 3
    with pytest.raises(ValueError, match="more than 0 decimal"):
        charge(currency="JPY", amount=D("2.9"), amount_precise=D("2.97"))
    kwd = charge(currency="KWD", amount=D("2.970"), amount_precise=D("2.97"))
    assert kwd.amount_minor == 2970


def test_amount_must_be_a_rounding_of_the_precise_amount() -> None:
    with pytest.raises(ValueError, match="not a rounding"):
        charge(amount=D("3.00"), amount_precise=D("2.97"))


def test_sign_rules() -> None:
    assert (
        charge(kind="discount", amount=D("-0.30"), amount_precise=D("-0.297")).amount_minor == -30
    )
    with pytest.raises(ValueError, match="discount"):
        charge(kind="discount")
    with pytest.raises(ValueError, match="negative"):
        charge(amount=D("-1.00"), amount_precise=D("-1"))


def test_currency_and_kind_are_checked() -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        charge(currency="usd")
    with pytest.raises(ValueError, match="unknown ISO 4217"):
        charge(currency="ABC")
    with pytest.raises(ValueError, match="kind"):
        charge(kind="bonus")
    with pytest.raises(ValueError, match="must not contain"):
        charge(price_id="a|b")


def test_content_hash_ignores_decimal_spelling_only() -> None:
    a = charge()
    b = charge(quantity=D("3.000"), amount=D("2.970"), amount_precise=D("2.9700"))
    assert a.content_hash() == b.content_hash()
    assert (
        charge(quantity=D(4), amount=D("3.96"), amount_precise=D("3.96")).content_hash()
        != a.content_hash()
    )
    assert charge(description="other").content_hash() != a.content_hash()
    assert charge(breakdown={"tiers": []}).content_hash() != a.content_hash()
    # Breakdown key order does not matter; it is stored as canonical JSON.
    x = charge(breakdown={"a": 1, "b": 2})
    y = charge(breakdown={"b": 2, "a": 1})
    assert x.content_hash() == y.content_hash() and x.breakdown_json == y.breakdown_json


def test_idempotency_key_is_deterministic() -> None:
    key = line_key("sub_1", PERIOD, charge())
    assert key == "sub_1|2026-03-01T05:00:00Z|fin_resolution|2026-01-01#abc|usage"
    grouped = line_key("sub_1", PERIOD, charge(group="seat_type=advanced"))
    assert grouped == key + "|seat_type=advanced"
    assert (
        line_key("sub_1", PERIOD, charge(quantity=D(9), amount=D("8.91"), amount_precise=D("8.91")))
        == key
    )
    assert adjustment_key(key, PERIOD) == key + "|adj>2026-03-01T05:00:00Z"


def test_minor_units_round_trip() -> None:
    for currency, amount, minor in (
        ("USD", D("12.30"), 1230),
        ("JPY", D(5), 5),
        ("KWD", D("1.234"), 1234),
    ):
        assert to_minor(amount, currency) == minor
        assert from_minor(minor, currency) == amount
