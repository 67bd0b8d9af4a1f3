"""billing.charges.to_json_doc: plain JSON comes back equal and unshared (the fast copy);
anything else is converted or refused by the full walk, with the path of the bad value."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

import pytest

from billing.charges import to_json_doc


class Kind(StrEnum):
    UNIT = "unit"


def test_plain_json_is_copied_not_shared() -> None:
    doc = {"a": [1, "x", True, None, {"b": []}], "c": {"d": "0.35"}}
    out = to_json_doc(doc)
    assert out == doc
    assert out is not doc and out["a"] is not doc["a"] and out["a"][4] is not doc["a"][4]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"units": Decimal("1.50")}, {"units": "1.50"}),
        ({"t": (1, Decimal("2E+1"))}, {"t": [1, "20"]}),
        ({"at": datetime(2026, 3, 1, tzinfo=UTC)}, {"at": "2026-03-01T00:00:00Z"}),
        ({"day": date(2026, 3, 1)}, {"day": "2026-03-01"}),
        ({"kind": Kind.UNIT}, {"kind": "unit"}),
        ([{"deep": [{"x": Decimal("0.1")}]}], [{"deep": [{"x": "0.1"}]}]),
    ],
)
def test_other_values_are_converted(value: object, expected: object) -> None:
    assert to_json_doc(value) == expected


def test_a_float_deep_inside_is_named_by_its_path() -> None:
    with pytest.raises(TypeError, match=r"breakdown\.tiers\[1\]\.amount holds a float"):
        to_json_doc({"tiers": [{"amount": "1"}, {"amount": 0.5}]})


def test_a_non_string_key_is_refused() -> None:
    with pytest.raises(TypeError, match=r"breakdown\.tiers has a non-string key 1"):
        to_json_doc({"tiers": {1: "x"}})


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        to_json_doc({"at": datetime(2026, 3, 1)})
