"""The one tier-splitting rule graduated and volume share (rating/models/tiers.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating import parse_price
from rating.models.tiers import tier_holding, tier_slices

D = Decimal
LADDER = parse_price(
    {
        "currency": "USD",
        "model": "graduated",
        "tiers": [
            {"up_to": 1000, "unit_amount": "1", "flat_amount": "20"},
            {"up_to": 5000, "unit_amount": "0.5"},
            {"up_to": None, "unit_amount": "0.25"},
        ],
    },
    name="ladder",
).ladder


def test_a_range_is_split_at_each_tier_edge() -> None:
    # Units (800, 6000]: 200 in tier 1, 4000 in tier 2, 1000 in tier 3.
    got = [s[:4] for s in tier_slices(LADDER, D(800), D(6000))]
    assert got == [(0, D(800), D(1000), D(1)), (1, D(1000), D(5000), D("0.5")), (2, D(5000), D(6000), D("0.25"))]


def test_tiers_passed_before_the_range_are_empty_slices_and_unreached_ones_absent() -> None:
    # A second window (1200, 1300] after a first that used 1200 units: tier 1 is empty
    # (its top 1000 is below its bottom 1200), tier 3 is not reached.
    got = [s[:3] for s in tier_slices(LADDER, D(1200), D(1300))]
    assert got == [(0, D(1200), D(1000)), (1, D(1200), D(1300))]


def test_the_first_tier_is_reached_at_zero_and_a_later_one_only_above_its_lower_bound() -> None:
    assert [s[0] for s in tier_slices(LADDER, D(0), D(0))] == [0]
    assert [s[0] for s in tier_slices(LADDER, D(0), D(1000))] == [0]
    assert [s[0] for s in tier_slices(LADDER, D(0), D("1000.5"))] == [0, 1]


@pytest.mark.parametrize(
    ("quantity", "tier"),
    [("0", 0), ("1", 0), ("1000", 0), ("1000.000000001", 1), ("5000", 1), ("5001", 2), ("1e9", 2)],
)
def test_a_total_falls_in_the_first_tier_whose_inclusive_up_to_holds_it(quantity: str, tier: int) -> None:
    holding = tier_holding(LADDER, D(quantity))
    assert holding[0] == tier
    assert holding[3] == LADDER[tier][2]
