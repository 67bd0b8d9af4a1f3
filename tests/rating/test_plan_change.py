"""Plan changes mid-period (rating/plan_change.py; docs/rating.md "Plan changes"). Every
expected number is worked out by hand in the comment above it.

April 2026 in UTC: 30 days = 720 h. The change on the 15th at 00:00: 14 days (336 h,
7/15 of the cycle) on the old plan, 16 days (384 h, 8/15) on the new one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from rating import Discount, Money, parse_price
from rating.period import PriceSpec, PriceVersionSpec, RatedLine, rate_period
from rating.plan_change import (
    PlanSegment,
    TierMode,
    rate_segments,
    segment_windows,
)

D = Decimal
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def _utc(m: int, d: int) -> datetime:
    return datetime(2026, m, d, tzinfo=UTC)


START, CHANGE, END = _utc(4, 1), _utc(4, 15), _utc(5, 1)


def _spec(
    plan: str, price_id: str, body: dict[str, Any], meter: str | None = None, agg: str = "count"
) -> PriceSpec:
    price = parse_price({"currency": "USD", **body}, name=f"{plan}/{price_id}")
    label = f"2026-01-01#{plan}"
    return PriceSpec(
        price_id, meter, {}, [PriceVersionSpec(label, JAN, price)], agg if meter else None
    )


def _ladder(first: str, beyond: str) -> dict[str, Any]:
    return {
        "model": "graduated",
        "tiers": [{"up_to": 100, "unit_amount": first}, {"up_to": None, "unit_amount": beyond}],
    }


STARTER = [
    _spec("starter", "platform_fee", {"model": "flat", "amount": "30"}),
    _spec("starter", "resolution", _ladder("1.00", "0.50"), meter="resolution"),
]
PRO = [
    _spec("pro", "platform_fee", {"model": "flat", "amount": "90"}),
    _spec("pro", "priority_support", {"model": "flat", "amount": "60"}),
    _spec("pro", "resolution", _ladder("0.80", "0.40"), meter="resolution"),
]
KEY = ("resolution", ())


def _segments(tiers: TierMode) -> list[PlanSegment]:
    return [
        PlanSegment("starter", START, CHANGE, STARTER),
        PlanSegment("pro", CHANGE, END, PRO, tiers),
    ]


def _quantities(before: int, after: int) -> dict[tuple[datetime, datetime], Any]:
    return {
        (START, END): {KEY: D(before + after)},
        (START, CHANGE): {KEY: D(before)},
        (CHANGE, END): {KEY: D(after)},
    }


def _amounts(lines: list[RatedLine]) -> dict[str, Decimal]:
    return {f"{ln.price_id}/{ln.kind}": ln.amount for ln in lines}


@pytest.mark.parametrize(
    ("tiers", "resolution"),
    [
        # continue: 80 on starter's ladder (80 x 1.00 = 80.00), then positions 80..140 on
        # pro's: 20 x 0.80 (to 100) + 40 x 0.40 = 32.00; 112.00
        ("continue", D("112.00")),
        # restart: 80 x 1.00 = 80.00, then pro's ladder from 0: 60 x 0.80 = 48.00; 128.00
        ("restart", D("128.00")),
    ],
)
def test_a_change_on_the_15th(tiers: TierMode, resolution: Decimal) -> None:
    lines = rate_segments(_segments(tiers), quantities=_quantities(80, 60))
    assert _amounts(lines) == {
        # 30 x 336/720 = 14.00 + 90 x 384/720 = 48.00
        "platform_fee/flat": D("62.00"),
        # only pro has it: 60 x 384/720 = 32.00; nothing before the change
        "priority_support/flat": D("32.00"),
        "resolution/usage": resolution,
    }
    fin = next(ln for ln in lines if ln.price_id == "resolution")
    assert fin.quantity == 140 and fin.price_version == "2026-01-01#pro"
    assert sum(e.amount for e in fin.detail.breakdown) == fin.amount_precise  # type: ignore[union-attr]
    assert {e.version for e in fin.detail.breakdown} == {"2026-01-01#starter", "2026-01-01#pro"}  # type: ignore[union-attr]
    assert "starter" in fin.description and "pro" in fin.description


def test_windows_needed_are_each_segments() -> None:
    assert segment_windows(_segments("continue")) == {(START, CHANGE), (CHANGE, END)}


def test_one_segment_is_rate_period() -> None:
    quantities = _quantities(80, 60)
    whole = [PlanSegment("pro", START, END, PRO)]
    assert rate_segments(whole, quantities=quantities) == rate_period(
        PRO, start=START, end=END, quantities=quantities
    )


def test_a_price_only_the_old_plan_has_bills_only_before() -> None:
    old = [*STARTER, _spec("starter", "legacy_fee", {"model": "flat", "amount": "15"})]
    segments = [PlanSegment("starter", START, CHANGE, old), PlanSegment("pro", CHANGE, END, PRO)]
    lines = rate_segments(segments, quantities=_quantities(0, 0))
    # 15 x 336/720 = 7.00
    assert _amounts(lines)["legacy_fee/flat"] == D("7.00")


def test_restart_gives_the_new_plan_its_free_units_and_minimum_again() -> None:
    body = {"model": "per_unit", "unit_amount": "1", "free_units": "50", "minimum_amount": "5"}
    old = [_spec("a", "resolution", body, meter="resolution")]
    new = [_spec("b", "resolution", {**body, "unit_amount": "2"}, meter="resolution")]
    q = _quantities(40, 30)
    for tiers, amount in [
        # continue: 50 free units for the period: 40 then 10 of the 30 free; 20 x 2 = 40
        ("continue", D("40.00")),
        # restart: 40 free (a: 0 -> minimum 5.00); b: 30 free again -> minimum 5.00
        ("restart", D("10.00")),
    ]:
        segments = [
            PlanSegment("a", START, CHANGE, old),
            PlanSegment("b", CHANGE, END, new, tiers),  # type: ignore[arg-type]
        ]
        assert _amounts(rate_segments(segments, quantities=q)) == {"resolution/usage": amount}


def test_discount_and_minimum_on_the_changed_period() -> None:
    discount = Discount(price_id="platform_fee", percent_off=D("10"), valid_from=JAN)
    lines = rate_segments(
        _segments("continue"),
        quantities=_quantities(0, 0),
        discounts=[discount],
        minimum_commitment=Money(D("200"), "USD"),
    )
    amounts = _amounts(lines)
    # 10% of the line as invoiced (62.00): -6.20
    assert amounts["platform_fee/discount"] == D("-6.20")
    # 62.00 - 6.20 + 32.00 + 0 = 87.80, trued up to 200 by 112.20
    assert amounts["minimum_commitment/minimum_true_up"] == D("112.20")


def test_a_period_that_is_part_of_a_cycle_prorates_by_the_cycle() -> None:
    # a subscription that started on Apr 8 (the cycle is still Apr 1..May 1, 720 h):
    # starter 30 x 168/720 = 7.00; pro 90 x 384/720 = 48.00
    begin = _utc(4, 8)
    segments = [
        PlanSegment("starter", begin, CHANGE, STARTER),
        PlanSegment("pro", CHANGE, END, PRO),
    ]
    q = {(begin, CHANGE): {KEY: D(0)}, (CHANGE, END): {KEY: D(0)}}
    lines = rate_segments(segments, quantities=q, cycle=(START, END))
    assert _amounts(lines)["platform_fee/flat"] == D("55.00")


def test_segments_must_be_contiguous() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        rate_segments(
            [PlanSegment("a", START, CHANGE, STARTER), PlanSegment("b", _utc(4, 16), END, PRO)],
            quantities={},
        )
