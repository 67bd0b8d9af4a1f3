"""Rating one subscription's period from quantities (rating/period.py): the business
rules, by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from rating import Discount, Money, parse_price
from rating.period import (
    PriceSpec,
    PriceVersionSpec,
    rate_period,
    version_windows,
    windows_needed,
)

NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
MID = datetime(2026, 11, 15, tzinfo=UTC)


def spec(price_id: str, body: dict, *, meter: str | None = "fin_resolution", filt: dict | None = None,
         aggregation: str | None = "count", changes: list[tuple[datetime, dict]] | None = None) -> PriceSpec:
    versions = [PriceVersionSpec("v1", datetime(2026, 1, 1, tzinfo=UTC), parse_price(body, name=price_id))]
    for n, (starts, other) in enumerate(changes or [], start=2):
        versions.append(PriceVersionSpec(f"v{n}", starts, parse_price(other, name=price_id)))
    return PriceSpec(price_id, meter, filt or {}, versions, aggregation)


def test_seat_price_targets_its_group() -> None:
    seats = spec("seat_advanced", {"currency": "USD", "model": "per_unit", "unit_amount": "85"},
                 meter="seats", filt={"seat_type": "advanced"}, aggregation="time_weighted")
    quantities = {NOV: {("seats", (("seat_type", "advanced"),)): Decimal("2.333333333"),
                        ("seats", (("seat_type", "expert"),)): Decimal("5")}}
    (line,) = rate_period([seats], start=NOV[0], end=NOV[1], quantities=quantities)
    assert line.quantity == Decimal("2.333333333")
    assert line.amount == Decimal("198.33")  # 2.333333333 x 85 = 198.333333305
    assert line.group == "seat_type=advanced" and line.kind == "usage"


def test_price_change_mid_period_is_rated_per_window_continuing_tiers() -> None:
    tiers1 = {"currency": "USD", "model": "graduated", "tiers": [{"up_to": 1000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.5"}]}
    tiers2 = {"currency": "USD", "model": "graduated", "tiers": [{"up_to": 1000, "unit_amount": "1"}, {"up_to": None, "unit_amount": "0.25"}]}
    fin = spec("fin_resolution", tiers1, changes=[(MID, tiers2)])
    assert [(w.label, w.start, w.end) for w in version_windows(fin, *NOV)] == [("v1", NOV[0], MID), ("v2", MID, NOV[1])]
    assert windows_needed([fin], *NOV) == {NOV, (NOV[0], MID), (MID, NOV[1])}
    key = ("fin_resolution", (("channel", "chat"),))
    quantities = {NOV: {key: Decimal(2000)}, (NOV[0], MID): {key: Decimal(1200)}, (MID, NOV[1]): {key: Decimal(800)}}
    (line,) = rate_period([fin], start=NOV[0], end=NOV[1], quantities=quantities)
    # 1000 x 1 + 200 x 0.5 in the first window; the second continues in tier 2: 800 x 0.25.
    assert line.amount == Decimal("1300.00")
    assert line.price_version == "v2"
    # The tier breakdown, per version window: positions in the period's cumulative units.
    assert [(e.version, e.tier, e.range_from, e.range_to, e.amount) for e in line.detail.breakdown] == [
        ("v1", 1, 0, 1000, Decimal(1000)),
        ("v1", 2, 1000, 1200, Decimal(100)),
        ("v2", 2, 1200, 2000, Decimal(200)),
    ]


def test_discount_and_minimum_commitment() -> None:
    fin = spec("fin_resolution", {"currency": "USD", "model": "per_unit", "unit_amount": "0.99"})
    fee = spec("platform_fee", {"currency": "USD", "model": "flat", "amount": "250"}, meter=None, aggregation=None)
    quantities = {NOV: {("fin_resolution", ()): Decimal(1000)}}
    discount = Discount(price_id="fin_resolution", percent_off=Decimal(10), valid_from=datetime(2026, 10, 1, tzinfo=UTC))
    lines = rate_period([fin, fee], start=NOV[0], end=NOV[1], quantities=quantities, discounts=[discount],
                        minimum_commitment=Money(Decimal(2000), "USD"))
    by_kind = {(ln.price_id, ln.kind): ln.amount for ln in lines}
    assert by_kind[("fin_resolution", "usage")] == Decimal("990.00")
    assert by_kind[("fin_resolution", "discount")] == Decimal("-99.00")
    assert by_kind[("platform_fee", "flat")] == Decimal("250.00")
    # 990 - 99 + 250 = 1141 < 2000: trued up by 859.
    assert by_kind[("minimum_commitment", "minimum_true_up")] == Decimal("859.00")
    assert sum(ln.amount for ln in lines) == Decimal("2000.00")


def test_no_usage_still_gives_an_explicit_zero_line() -> None:
    fin = spec("fin_resolution", {"currency": "EUR", "model": "per_unit", "unit_amount": "0.92"})
    (line,) = rate_period([fin], start=NOV[0], end=NOV[1], quantities={})
    assert line.amount == Decimal("0.00") and line.quantity == 0
