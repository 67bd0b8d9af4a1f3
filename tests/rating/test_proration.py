"""Proration of fixed fees for a partial first or last period (rating/period.py,
`prorated`; docs/rating.md "Proration of fixed fees"). Every expected number is worked
out by hand in the comment above it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from rating import Discount, Money, PriceError, parse_price, rate
from rating.period import (
    PriceSpec,
    PriceVersionSpec,
    Proration,
    RatedLine,
    prorated,
    rate_period,
)

D = Decimal
JAN = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(
    price_id: str,
    body: dict[str, str],
    *,
    meter: str | None = None,
    aggregation: str | None = None,
    starts: datetime = JAN,
) -> PriceSpec:
    price = parse_price(body, name=price_id)
    return PriceSpec(price_id, meter, {}, [PriceVersionSpec("v1", starts, price)], aggregation)


def _utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def _one(lines: list[RatedLine], price_id: str) -> RatedLine:
    (line,) = [ln for ln in lines if ln.price_id == price_id and ln.kind != "discount"]
    return line


MARCH = (_utc(2026, 3, 1), _utc(2026, 4, 1))  # 31 days = 744 h
FEE_JPY = {"currency": "JPY", "model": "flat", "amount": "10000"}


def test_the_issue_case_a_six_day_last_period_bills_its_share() -> None:
    # Issue 16: JPY 10,000 a month, the subscription runs 2026-03-01 to 2026-03-07:
    # 10,000 x 6/31 = 10,000 x 144 h / 744 h = 1,935.483870967742 -> JPY 1,935 (half-up).
    fee = _spec("fee", FEE_JPY)
    (line,) = rate_period([fee], start=MARCH[0], end=_utc(2026, 3, 7), quantities={}, cycle=MARCH)
    assert (line.kind, line.amount, line.amount_precise) == (
        "flat",
        D(1935),
        D("1935.483870967742"),
    )
    assert line.proration is not None
    assert (line.proration.billed_seconds, line.proration.cycle_seconds) == (144 * 3600, 744 * 3600)
    assert line.proration.share == D("0.193548387097")
    # The charge for the whole cycle stays the detail; the line says it was prorated.
    assert line.detail.amount == D(10000)
    assert line.description.endswith(
        "prorated for 144 h of the billing cycle's 744 h: 10000 × 144/744 = 1935.483870967742"
        " → JPY 1,935"
    )
    doc = line.breakdown()["proration"]
    assert doc == {
        "billed_seconds": 518400,
        "cycle_seconds": 2678400,
        "share": "0.193548387097",
        "full_amount_precise": "10000",
        "amount_precise": "1935.483870967742",
        "amount": "1935",
    }
    assert Proration.from_doc(doc, "JPY") == line.proration


def test_a_first_period_that_starts_mid_cycle_is_prorated_too() -> None:
    # Starts 2026-03-25: 7 days of 31 = 168 h / 744 h; 10,000 x 168/744 = 2,258.06 -> 2,258.
    fee = _spec("fee", FEE_JPY)
    (line,) = rate_period([fee], start=_utc(2026, 3, 25), end=MARCH[1], quantities={}, cycle=MARCH)
    assert line.amount == D(2258)


def test_a_whole_cycle_or_no_cycle_given_bills_in_full_without_a_proration_step() -> None:
    fee = _spec("fee", FEE_JPY)
    for cycle in (MARCH, None):
        (line,) = rate_period([fee], start=MARCH[0], end=MARCH[1], quantities={}, cycle=cycle)
        assert (line.amount, line.proration) == (D(10000), None)
        assert "proration" not in line.breakdown()


def test_by_elapsed_time_in_a_dst_month_not_by_calendar_days() -> None:
    # America/New_York, clocks go forward on 2026-03-08: March is 743 h. A subscription
    # ending 2026-03-15 has a last period of 14 local days = 335 h (one is 23 h long).
    # 10,000 x 335/743 = 4,508.748317631225 -> JPY 4,509 (by calendar days, 14/31 of
    # 10,000 would be 4,516). Given as local times: the share is still of elapsed time.
    tz = ZoneInfo("America/New_York")
    cycle = (datetime(2026, 3, 1, tzinfo=tz), datetime(2026, 4, 1, tzinfo=tz))
    end = datetime(2026, 3, 15, tzinfo=tz)
    (line,) = rate_period(
        [_spec("fee", FEE_JPY)], start=cycle[0], end=end, quantities={}, cycle=cycle
    )
    assert (line.amount, line.amount_precise) == (D(4509), D("4508.748317631225"))
    assert "335 h of the billing cycle's 743 h" in line.description


def test_proration_full_bills_the_whole_amount_for_a_partial_period() -> None:
    full = _spec("support", {**FEE_JPY, "proration": "full"})
    (line,) = rate_period([full], start=MARCH[0], end=_utc(2026, 3, 7), quantities={}, cycle=MARCH)
    assert (line.amount, line.proration) == (D(10000), None)


def test_the_version_in_effect_at_the_period_end_decides() -> None:
    # v1 prorates, v2 (from Mar 5) bills in full: a period Mar 1 - Mar 7 ends under v2.
    v1 = parse_price(FEE_JPY, name="v1")
    v2 = parse_price({**FEE_JPY, "amount": "12000", "proration": "full"}, name="v2")
    spec = PriceSpec(
        "fee",
        None,
        {},
        [PriceVersionSpec("v1", JAN, v1), PriceVersionSpec("v2", _utc(2026, 3, 5), v2)],
    )
    (line,) = rate_period([spec], start=MARCH[0], end=_utc(2026, 3, 7), quantities={}, cycle=MARCH)
    assert (line.price_version, line.amount, line.proration) == ("v2", D(12000), None)


SEATS_KEY = ("seats", ())
LICENCES_KEY = ("licences", ())


def test_a_time_weighted_seat_price_is_not_prorated_twice_and_usage_never() -> None:
    # 6 of 31 days: the warehouse already divided the seats' integral by the whole cycle
    # (2 seats x 144 h / 744 h = 0.387096774), so the line is 0.387096774 x 30.00 = 11.61;
    # a count price bills what was used (50 x 1.00). Neither has a proration step.
    seats = _spec(
        "seat",
        {"currency": "USD", "model": "per_unit", "unit_amount": "30"},
        meter="seats",
        aggregation="time_weighted",
    )
    calls = _spec(
        "calls",
        {"currency": "USD", "model": "per_unit", "unit_amount": "1"},
        meter="calls",
        aggregation="count",
    )
    end = _utc(2026, 3, 7)
    quantities = {(MARCH[0], end): {SEATS_KEY: D("0.387096774"), ("calls", ()): D(50)}}
    lines = rate_period([seats, calls], start=MARCH[0], end=end, quantities=quantities, cycle=MARCH)
    assert [(ln.price_id, ln.amount, ln.proration) for ln in lines] == [
        ("calls", D("50.00"), None),
        ("seat", D("11.61"), None),
    ]


def test_a_price_on_a_latest_meter_is_a_per_seat_fixed_fee_and_is_prorated() -> None:
    # 3 licences held at 20.00 = 60.00 a month; 6 of 31 days: 60 x 144/744 =
    # 11.612903225806 -> 11.61; the unit amount shown is the prorated one per licence.
    licences = _spec(
        "licence",
        {"currency": "USD", "model": "per_unit", "unit_amount": "20"},
        meter="licences",
        aggregation="latest",
    )
    end = _utc(2026, 3, 7)
    quantities = {(MARCH[0], end): {LICENCES_KEY: D(3)}}
    (line,) = rate_period([licences], start=MARCH[0], end=end, quantities=quantities, cycle=MARCH)
    assert (line.kind, line.quantity, line.amount) == ("usage", D(3), D("11.61"))
    assert line.amount_precise == D("11.612903225806")
    assert line.unit_amount == D("3.870967741935")


def test_a_discount_takes_its_percent_of_the_prorated_line() -> None:
    # USD 100 a month for 6 of 31 days: 100 x 144/744 = 19.354838709677 -> 19.35;
    # 10% off the line as invoiced: -1.935 -> -1.94 (half-up away from zero).
    fee = _spec("fee", {"currency": "USD", "model": "flat", "amount": "100"})
    off = Discount(price_id="fee", percent_off=D(10))
    lines = rate_period(
        [fee], start=MARCH[0], end=_utc(2026, 3, 7), quantities={}, discounts=[off], cycle=MARCH
    )
    assert [(ln.kind, ln.amount) for ln in lines] == [
        ("flat", D("19.35")),
        ("discount", D("-1.94")),
    ]


def test_the_minimum_commitment_trues_up_the_prorated_lines() -> None:
    # The commitment is not prorated (docs/rating.md): 50.00 - 19.35 = 30.65.
    fee = _spec("fee", {"currency": "USD", "model": "flat", "amount": "100"})
    lines = rate_period(
        [fee],
        start=MARCH[0],
        end=_utc(2026, 3, 7),
        quantities={},
        minimum_commitment=Money(D(50), "USD"),
        cycle=MARCH,
    )
    assert [(ln.kind, ln.amount) for ln in lines] == [
        ("flat", D("19.35")),
        ("minimum_true_up", D("30.65")),
    ]


def test_a_period_outside_its_cycle_is_refused() -> None:
    fee = _spec("fee", FEE_JPY)
    with pytest.raises(ValueError, match="does not lie inside its billing cycle"):
        rate_period(
            [fee], start=_utc(2026, 2, 27), end=_utc(2026, 3, 7), quantities={}, cycle=MARCH
        )


def test_half_up_on_the_twelve_place_precise_amount() -> None:
    # USD 0.31 a month for 12 h of March's 744 h: 0.31 x 12/744 = 0.005 exactly -> 0.01
    # (half-up on the tie).
    fee = parse_price({"currency": "USD", "model": "flat", "amount": "0.31"}, name="fee")
    charge = rate(fee, D(1))
    found = prorated(charge, (MARCH[0], _utc(2026, 3, 1).replace(hour=12)), MARCH)
    assert found is not None and (found.amount_precise, found.amount) == (D("0.005"), D("0.01"))


@pytest.mark.parametrize(("written", "stored"), [("prorate", None), ("full", "full"), (None, None)])
def test_the_price_option_reads_prorate_or_full(written: str | None, stored: str | None) -> None:
    body = {**FEE_JPY, "proration": written}
    assert parse_price(body, name="fee").proration == stored


def test_another_proration_value_is_refused_naming_the_choices() -> None:
    with pytest.raises(PriceError, match=r"proration must be 'prorate' .* or 'full'"):
        parse_price({**FEE_JPY, "proration": "daily"}, name="fee")
