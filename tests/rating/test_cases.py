"""Golden-file table tests: every case in tests/rating/cases/*.yaml.

A new case is a line of data (see the key list at the top of cases/per_unit.yaml).
Prices are written as the catalog writes them; numbers are compared as Decimals,
except the rounded amount, which is compared as the exact string ("990.00", "1050").
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from rating import Price, PriceError, RatedCharge, RoundingMode, parse_price, rate, rate_windows
from rating.decimals import fmt

CASES = Path(__file__).parent / "cases"
RATING_FILES = sorted(p for p in CASES.glob("*.yaml") if p.name != "invalid_prices.yaml")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _price(spec: Any, prices: dict[str, Any], where: str) -> Price:
    if isinstance(spec, str):
        return parse_price(prices[spec], name=spec)
    return parse_price(spec, name=where)


def _label(case: dict[str, Any]) -> str:
    if "windows" in case:
        return " + ".join(f"{w[0]}:{w[1]}={w[2]}" for w in case["windows"])
    price = case["price"] if isinstance(case["price"], str) else "inline"
    text = f"{price} q={case['quantity']}"
    if "rounding" in case:
        text += f" {case['rounding']}"
    return text


def _rating_cases() -> list[Any]:
    params = []
    for path in RATING_FILES:
        data = _load(path)
        for number, case in enumerate(data["cases"], start=1):
            params.append(
                pytest.param(
                    data.get("prices", {}),
                    case,
                    id=f"{path.stem}:{number}:{_label(case)}",
                )
            )
    return params


def _same_number(actual: object, expected: object) -> bool:
    if expected is None:
        return actual is None
    if isinstance(actual, Decimal):
        return actual == Decimal(str(expected))
    return bool(actual == expected)


def _rate_case(prices: dict[str, Any], case: dict[str, Any]) -> RatedCharge:
    rounding = RoundingMode(case.get("rounding", "half_up"))
    if "windows" in case:
        windows = [
            (str(label), _price(spec, prices, str(label)), Decimal(str(quantity)))
            for label, spec, quantity in case["windows"]
        ]
        return rate_windows(windows, rounding=rounding)
    return rate(_price(case["price"], prices, "case"), case["quantity"], rounding=rounding)


@pytest.mark.parametrize(("prices", "case"), _rating_cases())
def test_rating_case(prices: dict[str, Any], case: dict[str, Any]) -> None:
    charge = _rate_case(prices, case)
    assert fmt(charge.amount) == str(case["amount"]), charge.explanation
    checks = {
        "precise": "amount_precise",
        "billable": "billable_quantity",
        "free": "free_units",
        "min_adj": "minimum_adjustment",
        "max_adj": "maximum_adjustment",
    }
    for key, field in checks.items():
        if key in case:
            actual = getattr(charge, field)
            assert _same_number(actual, case[key]), f"{field}: {actual} != {case[key]}"
    if "entries" in case:
        assert len(charge.breakdown) == len(case["entries"]), charge.breakdown
        for entry, expected in zip(charge.breakdown, case["entries"], strict=True):
            for key, value in expected.items():
                actual = getattr(entry, key)
                assert _same_number(actual, value), f"{key}: {actual} != {value} in {entry}"
    if "explain" in case:
        assert case["explain"] in charge.explanation
    # Invariants every case must satisfy.
    assert sum((e.amount for e in charge.breakdown), Decimal(0)) == charge.amount_precise


def _invalid_cases() -> list[Any]:
    data = _load(CASES / "invalid_prices.yaml")
    return [pytest.param(case, id=case["name"]) for case in data["cases"]]


@pytest.mark.parametrize("case", _invalid_cases())
def test_invalid_price_is_rejected_naming_price_and_field(case: dict[str, Any]) -> None:
    with pytest.raises(PriceError) as caught:
        parse_price(case["price"], name=case["name"])
    message = str(caught.value)
    assert message.startswith(f"price '{case['name']}': "), message
    assert case["error"] in message, message


def test_every_case_file_is_used() -> None:
    names = {p.name for p in CASES.glob("*.yaml")}
    assert {
        "per_unit.yaml",
        "graduated.yaml",
        "volume.yaml",
        "package.yaml",
        "percentage.yaml",
        "flat.yaml",
        "minimum_maximum.yaml",
        "public_examples.yaml",
        "windows.yaml",
        "invalid_prices.yaml",
    } <= names
