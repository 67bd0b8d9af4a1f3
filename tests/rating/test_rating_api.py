"""The API the rest of meterline calls: parse_price, rate, rate_windows, the result
types, the dispatcher, and their errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import ValidationError

from rating import (
    BreakdownEntry,
    CurrencyMismatchError,
    FloatNotAllowedError,
    Price,
    PriceError,
    PriceModel,
    QuantityError,
    RatedCharge,
    RatingError,
    charge_model,
    parse_price,
    rate,
    rate_windows,
)
from rating.models import Flat, Graduated, Package, Percentage, PerUnit, Volume

FIN = {"currency": "usd", "model": "per_unit", "unit_amount": "0.99"}
TIERS = {
    "currency": "USD",
    "model": "graduated",
    "tiers": [
        {"up_to": 1000, "unit_amount": "0.99"},
        {"up_to": 10000, "unit_amount": "0.89"},
        {"up_to": None, "unit_amount": "0.79"},
    ],
}


def test_parse_price_normalizes_and_freezes() -> None:
    price = parse_price(FIN, name="fin")
    assert price.currency == "USD"
    assert price.model is PriceModel.PER_UNIT
    assert price.unit_amount == Decimal("0.99")
    assert price.free_units == Decimal(0)
    with pytest.raises(ValidationError):
        price.unit_amount = Decimal(1)
    assert hash(price) == hash(parse_price(FIN, name="again"))


def test_parse_price_accepts_ints_decimals_and_strings() -> None:
    a = parse_price(
        {
            "currency": "EUR",
            "model": "package",
            "package_size": 100,
            "package_amount": Decimal("5"),
            "free_units": "10",
        },
        name="p",
    )
    assert a.package_size == Decimal(100) and a.round == "up"
    assert a.package_amount == Decimal(5) and a.free_units == Decimal(10)


def test_price_round_trips_through_json_and_python_dumps() -> None:
    price = parse_price(TIERS, name="fin")
    assert parse_price(json.loads(price.model_dump_json()), name="again") == price
    assert parse_price(price.model_dump(), name="again") == price
    assert Price.model_validate(price.model_dump(exclude_none=True)) == price


def test_model_copy_revalidates_and_recomputes_the_ladder() -> None:
    price = parse_price(TIERS, name="fin")
    cheaper = price.model_copy(
        update={
            "tiers": [{"up_to": 10, "unit_amount": "0.5"}, {"up_to": None, "unit_amount": "0.1"}]
        }
    )
    assert rate(cheaper, 20).amount == Decimal("6.00")
    with pytest.raises(ValidationError, match="unit_amount is a float"):
        price.model_copy(update={"model": "per_unit", "tiers": None, "unit_amount": 0.5})


def test_price_constructed_directly_is_validated_too() -> None:
    with pytest.raises(ValidationError, match="tier 2: up_to 5 is not above"):
        Price.model_validate(
            {
                "currency": "USD",
                "model": "volume",
                "tiers": [
                    {"up_to": 10, "unit_amount": "1"},
                    {"up_to": 5, "unit_amount": "1"},
                    {"up_to": None, "unit_amount": "1"},
                ],
            }
        )
    with pytest.raises(ValidationError, match="float"):
        Price(currency="USD", model=PriceModel.PER_UNIT, unit_amount=0.99)  # type: ignore[arg-type]


def test_parse_price_rejects_non_mappings() -> None:
    with pytest.raises(PriceError, match="price 'x': must be a mapping"):
        parse_price(["per_unit"], name="x")  # type: ignore[arg-type]


def test_rated_charge_fields_and_json() -> None:
    charge = rate(parse_price(TIERS, name="fin"), "12000")
    assert isinstance(charge, RatedCharge)
    assert charge.currency == "USD"
    assert charge.quantity == Decimal(12000)
    assert charge.billable_quantity == Decimal(12000)
    assert charge.amount == Decimal("10580.00")
    assert charge.amount_precise == Decimal("10580.00")
    assert charge.effective_unit_amount == Decimal("0.881666666667")
    assert all(isinstance(e, BreakdownEntry) for e in charge.breakdown)
    assert [e.tier for e in charge.breakdown] == [1, 2, 3]
    assert charge.explanation == (
        "quantity 12,000, graduated: tier 1: 1,000 × 0.99 + tier 2: 9,000 × 0.89 + "
        "tier 3: 2,000 × 0.79 = 10,580.00 → USD 10,580.00 (rounded half-up)"
    )
    payload = json.loads(charge.model_dump_json())
    assert payload["amount"] == "10580.00"
    assert payload["amount_precise"] == "10580.00"
    assert payload["currency"] == "USD"
    assert payload["breakdown"][2]["units"] == "2000"
    assert payload["explanation"] == charge.explanation
    assert RatedCharge.model_validate_json(charge.model_dump_json()) == charge
    with pytest.raises(ValidationError):
        charge.amount = Decimal(0)


def test_effective_unit_amount_is_none_without_billable_units() -> None:
    charge = rate(parse_price({**FIN, "minimum_amount": "5"}, name="fin"), 0)
    assert charge.effective_unit_amount is None
    assert charge.amount == Decimal("5.00")


def test_json_decimals_are_plain_notation() -> None:
    price = parse_price(
        {"currency": "USD", "model": "per_unit", "unit_amount": "0.0000001"}, name="n"
    )
    payload = json.loads(rate(price, 1).model_dump_json())
    assert payload["amount_precise"] == "0.0000001"
    assert payload["amount"] == "0.00"


@pytest.mark.parametrize(
    ("quantity", "error", "message"),
    [
        (0.5, FloatNotAllowedError, "quantity is a float"),
        (-1, QuantityError, "quantity must not be negative"),
        ("-0.5", QuantityError, "must not be negative"),
        ("abc", QuantityError, "quantity is not a decimal number"),
        ("1e", QuantityError, "quantity is not a decimal number"),
        ("0x10", QuantityError, "quantity is not a decimal number"),
        ("1e999999999", QuantityError, "quantity is out of range"),
        (Decimal("NaN"), QuantityError, "finite"),
        (Decimal("Infinity"), QuantityError, "finite"),
        (True, QuantityError, "must be a number"),
        (None, QuantityError, "decimal string or an integer"),
        ("1" * 80, QuantityError, "too large or too precise"),
    ],
)
def test_invalid_quantities(quantity: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        rate(parse_price(FIN, name="fin"), quantity)  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    for error in (
        PriceError,
        RatingError,
        QuantityError,
        CurrencyMismatchError,
        FloatNotAllowedError,
    ):
        assert issubclass(error, ValueError)
    assert issubclass(FloatNotAllowedError, TypeError)


def test_negative_zero_quantity_is_zero() -> None:
    charge = rate(parse_price(FIN, name="fin"), Decimal("-0"))
    assert str(charge.quantity) == "0"


def test_rate_needs_a_price() -> None:
    with pytest.raises(RatingError, match="needs a Price"):
        rate(FIN, 1)  # type: ignore[arg-type]


def test_rate_windows_labels_breakdown_by_version() -> None:
    v1, v2 = parse_price(TIERS, name="v1"), parse_price(TIERS, name="v2")
    charge = rate_windows([("2026-01-01", v1, Decimal(600)), ("2026-11-15", v2, Decimal(600))])
    assert charge.versions == ("2026-01-01", "2026-11-15")
    assert [(e.version, e.tier, e.units) for e in charge.breakdown] == [
        ("2026-01-01", 1, Decimal(600)),
        ("2026-11-15", 1, Decimal(400)),
        ("2026-11-15", 2, Decimal(200)),
    ]
    assert charge.quantity == Decimal(1200)
    assert "[2026-11-15] tier 2: 200 × 0.89" in charge.explanation


def test_rate_windows_with_one_window_is_rate_with_a_label() -> None:
    price = parse_price(TIERS, name="fin")
    charge = rate_windows([("2026-01-01", price, "1500")])
    assert charge.versions == ("2026-01-01",)
    assert {e.version for e in charge.breakdown} == {"2026-01-01"}
    assert charge.amount == rate(price, 1500).amount


def test_rate_windows_errors() -> None:
    usd = parse_price(FIN, name="usd")
    eur = parse_price({**FIN, "currency": "EUR"}, name="eur")
    with pytest.raises(RatingError, match="at least one"):
        rate_windows([])
    with pytest.raises(CurrencyMismatchError, match="version 'a' is priced in USD"):
        rate_windows([("a", usd, Decimal(1)), ("b", eur, Decimal(1))])
    with pytest.raises(RatingError, match="expected a Price"):
        rate_windows([("a", FIN, Decimal(1))])  # type: ignore[list-item]
    with pytest.raises(RatingError, match="label must be a string"):
        rate_windows([(1, usd, Decimal(1))])  # type: ignore[list-item]
    with pytest.raises(QuantityError, match="quantity of version window 'b'"):
        rate_windows([("a", usd, Decimal(1)), ("b", usd, Decimal(-1))])
    with pytest.raises(FloatNotAllowedError):
        rate_windows([("a", usd, 1.5)])  # type: ignore[list-item]


def test_rate_windows_may_change_model_between_versions() -> None:
    per_unit = parse_price(FIN, name="v1")
    graduated = parse_price(TIERS, name="v2")
    charge = rate_windows([("v1", per_unit, Decimal(500)), ("v2", graduated, Decimal(1000))])
    # v1: 500 x 0.99; v2 continues at position 500: 500 in tier 1, 500 in tier 2.
    assert charge.amount == Decimal("1435.00")
    assert charge.model is PriceModel.GRADUATED


def test_one_module_per_model_behind_one_dispatcher() -> None:
    expected = {
        PriceModel.PER_UNIT: PerUnit,
        PriceModel.GRADUATED: Graduated,
        PriceModel.VOLUME: Volume,
        PriceModel.PACKAGE: Package,
        PriceModel.PERCENTAGE: Percentage,
        PriceModel.FLAT: Flat,
    }
    for model, cls in expected.items():
        rater = charge_model(model)
        assert isinstance(rater, cls)
        assert rater.model is model
        assert cls.__module__ == f"rating.models.{model.value}"
