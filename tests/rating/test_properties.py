"""Property tests: the rules that must hold for every price and quantity, checked
against simple, independent oracles."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rating import Price, RoundingMode, minor_unit_exponent, parse_price, rate, rate_windows

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "GBP", "CLF"]

# Amounts with up to 4 decimals, quantities integral or with up to 3 decimals, from
# 0 to beyond 10^12.
amounts = st.integers(0, 10**7).map(lambda n: Decimal(n).scaleb(-4))
whole_quantities = st.integers(0, 10**13).map(Decimal)
fractional_quantities = st.integers(0, 10**12).map(lambda n: Decimal(n).scaleb(-3))
quantities = st.one_of(st.integers(0, 3000).map(Decimal), whole_quantities, fractional_quantities)
positive_sizes = st.integers(1, 10**6).map(lambda n: Decimal(n).scaleb(-2))
roundings = st.sampled_from(list(RoundingMode))


@st.composite
def ladders(draw: Any, *, same_unit: Decimal | None = None, flat: bool = True) -> list[dict]:
    bounds = sorted(draw(st.sets(st.integers(1, 10**6), min_size=0, max_size=5)))
    scale = draw(st.sampled_from([0, 0, 1, 2]))
    tiers: list[dict[str, Any]] = []
    for bound in [*bounds, None]:
        tier: dict[str, Any] = {
            "up_to": None if bound is None else str(Decimal(bound).scaleb(-scale)),
            "unit_amount": str(same_unit if same_unit is not None else draw(amounts)),
        }
        if flat:
            tier["flat_amount"] = str(draw(amounts))
        tiers.append(tier)
    return tiers


@st.composite
def prices(draw: Any) -> Price:
    model = draw(
        st.sampled_from(["per_unit", "graduated", "volume", "package", "percentage", "flat"])
    )
    data: dict[str, Any] = {"currency": draw(st.sampled_from(CURRENCIES)), "model": model}
    if model == "per_unit":
        data["unit_amount"] = str(draw(amounts))
    elif model in ("graduated", "volume"):
        data["tiers"] = draw(ladders())
    elif model == "package":
        data["package_size"] = str(draw(positive_sizes))
        data["package_amount"] = str(draw(amounts))
        data["round"] = draw(st.sampled_from(["up", "down"]))
    elif model == "percentage":
        data["rate"] = str(draw(st.integers(0, 10000).map(lambda n: Decimal(n).scaleb(-2))))
    else:
        data["amount"] = str(draw(amounts))
    if model != "flat" and draw(st.booleans()):
        data["free_units"] = str(draw(st.integers(0, 5000)))
    if draw(st.booleans()):
        minimum = draw(amounts)
        data["minimum_amount"] = str(minimum)
        if draw(st.booleans()):
            data["maximum_amount"] = str(minimum + draw(amounts) * 1000)
    return parse_price(data, name=f"generated {model}")


def _per_unit(currency: str, unit_amount: Decimal) -> Price:
    return parse_price(
        {"currency": currency, "model": "per_unit", "unit_amount": str(unit_amount)}, name="oracle"
    )


@given(unit=amounts, quantity=quantities, data=st.data())
def test_graduated_with_one_unit_price_equals_per_unit(
    unit: Decimal, quantity: Decimal, data: st.DataObject
) -> None:
    tiers = data.draw(ladders(same_unit=unit, flat=False))
    graduated = parse_price({"currency": "USD", "model": "graduated", "tiers": tiers}, name="g")
    assert (
        rate(graduated, quantity).amount_precise
        == rate(_per_unit("USD", unit), quantity).amount_precise
    )


@given(tiers=ladders(), first=quantities, second=quantities)
def test_graduated_amount_is_non_decreasing_in_quantity(
    tiers: list[dict], first: Decimal, second: Decimal
) -> None:
    price = parse_price({"currency": "USD", "model": "graduated", "tiers": tiers}, name="g")
    low, high = sorted((first, second))
    assert rate(price, low).amount_precise <= rate(price, high).amount_precise


@given(
    size=positive_sizes,
    block=amounts,
    quantity=quantities,
    free=st.integers(0, 5000).map(Decimal),
)
def test_package_equals_per_unit_on_started_blocks(
    size: Decimal, block: Decimal, quantity: Decimal, free: Decimal
) -> None:
    package = parse_price(
        {
            "currency": "EUR",
            "model": "package",
            "package_size": str(size),
            "package_amount": str(block),
            "free_units": str(free),
        },
        name="p",
    )
    billable = max(quantity - free, Decimal(0))
    # ceil(billable / size) in integer arithmetic (both have at most 3 decimals).
    numerator, denominator = int(billable * 1000), int(size * 1000)
    blocks = -(-numerator // denominator)
    oracle = rate(_per_unit("EUR", block), blocks)
    assert rate(package, quantity).amount_precise == oracle.amount_precise


@given(tiers=ladders(), quantity=st.integers(0, 400))
def test_graduated_matches_unit_by_unit_oracle(tiers: list[dict], quantity: int) -> None:
    """Price whole units one at a time at the tier each falls in (Stripe's definition),
    plus the flat fee of every tier reached; the first tier is reached at 0."""
    bounds = [None if t["up_to"] is None else Decimal(t["up_to"]) for t in tiers]
    assume(all(b is None or b == b.to_integral_value() for b in bounds))
    price = parse_price({"currency": "USD", "model": "graduated", "tiers": tiers}, name="g")

    expected = Decimal(0)
    reached = {0}
    for unit in range(1, quantity + 1):
        index = next(i for i, b in enumerate(bounds) if b is None or unit <= b)
        expected += Decimal(tiers[index]["unit_amount"])
        reached.add(index)
    expected += sum((Decimal(tiers[i]["flat_amount"]) for i in reached), Decimal(0))
    assert rate(price, quantity).amount_precise == expected


@given(tiers=ladders(), quantity=quantities)
def test_volume_prices_all_units_at_the_tier_of_the_total(
    tiers: list[dict], quantity: Decimal
) -> None:
    price = parse_price({"currency": "USD", "model": "volume", "tiers": tiers}, name="v")
    tier = next(t for t in tiers if t["up_to"] is None or quantity <= Decimal(t["up_to"]))
    expected = quantity * Decimal(tier["unit_amount"]) + Decimal(tier["flat_amount"])
    assert rate(price, quantity).amount_precise == expected


@given(price=prices(), quantity=quantities, rounding=roundings)
def test_breakdown_sums_to_amount_precise(
    price: Price, quantity: Decimal, rounding: RoundingMode
) -> None:
    charge = rate(price, quantity, rounding=rounding)
    assert sum((e.amount for e in charge.breakdown), Decimal(0)) == charge.amount_precise
    assert charge.subtotal_precise + charge.minimum_adjustment + charge.maximum_adjustment == (
        charge.amount_precise
    )
    assert charge.billable_quantity + charge.free_units == charge.quantity


@given(price=prices(), quantity=quantities, rounding=roundings)
def test_amount_is_amount_precise_rounded_once_to_the_minor_unit(
    price: Price, quantity: Decimal, rounding: RoundingMode
) -> None:
    charge = rate(price, quantity, rounding=rounding)
    exponent = minor_unit_exponent(charge.currency)
    assert charge.amount.as_tuple().exponent == -exponent
    assert abs(charge.amount - charge.amount_precise) <= Decimal(1).scaleb(-exponent) / 2
    assert price.minimum_amount <= charge.amount_precise
    if price.maximum_amount is not None:
        assert charge.amount_precise <= price.maximum_amount


def _floats(value: Any) -> list[Any]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in _floats(v)]
    return []


@given(price=prices(), quantity=quantities)
def test_results_never_contain_floats(price: Price, quantity: Decimal) -> None:
    charge = rate(price, quantity)
    assert _floats(charge.model_dump()) == []
    assert _floats(json.loads(charge.model_dump_json())) == []
    assert _floats(json.loads(charge.model_dump_json(), parse_float=float)) == []


@settings(max_examples=200)
@given(price=prices(), parts=st.lists(quantities, min_size=1, max_size=4))
def test_splitting_a_period_into_windows_of_one_version_changes_nothing(
    price: Price, parts: list[Decimal]
) -> None:
    windowed = rate_windows([(f"w{i}", price, q) for i, q in enumerate(parts)])
    whole = rate(price, sum(parts, Decimal(0)))
    assert windowed.amount_precise == whole.amount_precise
    assert windowed.amount == whole.amount
    assert windowed.free_units == whole.free_units
    assert sum((e.amount for e in windowed.breakdown), Decimal(0)) == windowed.amount_precise


@given(quantity=st.one_of(quantities, st.integers(0, 10**15), st.integers(0, 10**6).map(str)))
def test_quantity_types_give_the_same_result(quantity: Any) -> None:
    price = parse_price({"currency": "USD", "model": "per_unit", "unit_amount": "0.99"}, name="f")
    assert rate(price, quantity) == rate(price, Decimal(str(quantity)))
