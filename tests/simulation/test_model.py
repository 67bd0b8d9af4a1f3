"""The simulator's clean model, on cases worked out by hand: the oracle must be right
before it can judge the pipeline. Each expected value is computed in the comment beside
it from the rule the docs state."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from meterline.simulation.catalog import plans
from meterline.simulation.model import cycle, due_periods, invoice, periods
from meterline.simulation.world import Customer, Event

PRICE_CHANGE = date(2026, 9, 16)


def catalog() -> dict:
    return {
        "meters": [
            {"name": "resolution", "aggregation": "count"},
            {"name": "seats", "aggregation": "time_weighted"},
            {"name": "tokens", "aggregation": "sum"},
        ],
        "plans": plans(1, PRICE_CHANGE),
    }


def sub(plan: str = "metered", *, anchor: int = 1, tz: str = "UTC", currency: str = "USD",
        start: date = date(2026, 9, 1), end: date | None = date(2026, 10, 1),
        discount: tuple | None = None) -> Customer:
    return Customer("c1_00", f"s1_{plan}", currency, tz, anchor, start, end, discount)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def resolutions(n: int, first: str, channel: str = "chat") -> list[Event]:
    return [Event(f"r{first}{i}", "c1_00", "resolution", utc(first) + timedelta(minutes=i),
                  channel=channel) for i in range(n)]


def test_anchor_31_clamps_to_february_28() -> None:
    found = periods(sub(anchor=31, start=date(2027, 2, 1), end=date(2027, 3, 1)), date(2027, 4, 1))
    assert [(p.local_start, p.local_end) for p in found] == [
        (date(2027, 2, 1), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2027, 3, 1)),
    ]


def test_open_ended_anchor_30_is_clamped_each_month_not_chained() -> None:
    found = periods(sub(anchor=30, start=date(2027, 2, 1), end=None), date(2027, 5, 1))
    assert [(p.local_start, p.local_end) for p in found] == [
        (date(2027, 2, 1), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2027, 3, 30)),
        (date(2027, 3, 30), date(2027, 4, 30)),
    ]


def test_a_skipped_local_midnight_starts_the_period_at_the_first_instant() -> None:
    # America/Santiago: 2026-09-06 00:00 does not exist (clocks go from -04 to -03);
    # the day starts at 01:00 -03 = 04:00 UTC.
    found = periods(sub(anchor=6, tz="America/Santiago"), date(2026, 10, 1))
    assert found[1].start == utc("2026-09-06 04:00")


def test_a_dst_month_is_an_hour_longer_in_utc() -> None:
    (october,) = periods(sub(tz="Europe/Berlin", start=date(2026, 10, 1),
                             end=date(2026, 11, 1)), date(2026, 12, 1))
    assert october.start == utc("2026-09-30 22:00") and october.end == utc("2026-10-31 23:00")


def test_due_only_after_end_plus_grace() -> None:
    c = sub(anchor=1, end=None)
    assert due_periods(c, utc("2026-10-01 01:59"), timedelta(hours=2)) == []
    assert len(due_periods(c, utc("2026-10-01 02:00"), timedelta(hours=2))) == 1


def test_time_weighted_seats_docs_example() -> None:
    # 2 seats from the 1st, 3 from the 21st of a 30-day month: (2*20 + 3*10) / 30
    events = [Event("s1", "c1_00", "seats", utc("2026-09-01 00:00"), Decimal(2)),
              Event("s2", "c1_00", "seats", utc("2026-09-21 00:00"), Decimal(3))]
    got = invoice(catalog(), sub(), periods(sub(), date(2026, 10, 1))[0], events)
    assert got.lines[("seats", "usage")] == Decimal("23.33")  # 2.333333333 x 10


def test_a_partial_period_bills_its_share_of_the_anchor_cycle() -> None:
    # Berlin, anchor 14, from Sep 1: the period Sep 1-14 (13 days) of the cycle Aug 14 -
    # Sep 14 (31 days): 6 seats x 13/31 = 2.516129032, x 9 EUR (metered: 10 x 0.9) = 22.65.
    c = sub(anchor=14, tz="Europe/Berlin", currency="EUR", end=None)
    first = periods(c, date(2026, 10, 1))[0]
    assert (first.local_start, first.local_end) == (date(2026, 9, 1), date(2026, 9, 14))
    assert cycle(c, first) == (utc("2026-08-13 22:00"), utc("2026-09-13 22:00"))
    events = [Event("s1", "c1_00", "seats", first.start, Decimal(6))]
    assert invoice(catalog(), c, first, events).lines[("seats", "usage")] == Decimal("22.65")


def test_graduated_tiers_run_on_across_the_price_change() -> None:
    # 30 before Sep 16 at v1 (tier 1: 1.00) = 30; then positions 31..60 at v2:
    # 10 x 0.90 (tier 1) + 20 x 0.60 (tier 2) = 21; total 51.00
    events = resolutions(30, "2026-09-02 00:00") + resolutions(30, "2026-09-20 00:00")
    got = invoice(catalog(), sub(), periods(sub(), date(2026, 10, 1))[0], events)
    assert got.lines[("resolution", "usage")] == Decimal("51.00")


def test_volume_total_picks_the_tier_of_each_window() -> None:
    # 40 in all (tier 2): 20 x 0.70 (v1) + 20 x 0.65 (v2) = 27.00
    events = resolutions(20, "2026-09-02 00:00") + resolutions(20, "2026-09-20 00:00")
    c = sub("volume")
    got = invoice(catalog(), c, periods(c, date(2026, 10, 1))[0], events)
    assert got.lines[("resolution", "usage")] == Decimal("27.00")


def test_percent_discount_rounds_half_up_on_the_rounded_line() -> None:
    # 51.00 x 12.5% = 6.375 -> 6.38
    events = resolutions(30, "2026-09-02 00:00") + resolutions(30, "2026-09-20 00:00")
    c = sub(discount=("resolution", Decimal("12.5"), None))
    got = invoice(catalog(), c, periods(c, date(2026, 10, 1))[0], events)
    assert got.lines[("resolution", "discount")] == Decimal("-6.38")


def test_amount_off_never_takes_a_line_below_zero() -> None:
    c = sub(discount=("resolution", None, Decimal("20")))
    got = invoice(catalog(), c, periods(c, date(2026, 10, 1))[0], resolutions(5, "2026-09-02"))
    assert got.lines[("resolution", "discount")] == Decimal("-5.00")
    assert got.total == 0


@pytest.mark.parametrize(
    ("currency", "true_up"),
    [("USD", Decimal("100.00")), ("JPY", Decimal("15000")), ("KWD", Decimal("30.000"))],
)
def test_minimum_commitment_trues_up_the_flat_fee(currency: str, true_up: Decimal) -> None:
    # commitment 150 units, platform fee 50 units: the true-up is 100 units
    # (USD 1, JPY 150, KWD 0.3 per unit)
    c = sub("committed", currency=currency)
    got = invoice(catalog(), c, periods(c, date(2026, 10, 1))[0], [])
    assert got.lines[("minimum_commitment", "minimum_true_up")] == true_up


def test_filtered_prices_count_their_channel_only() -> None:
    events = resolutions(3, "2026-09-02", "chat") + resolutions(4, "2026-09-03", "email")
    c = sub("committed")
    got = invoice(catalog(), c, periods(c, date(2026, 10, 1))[0], events)
    assert got.lines[("resolution_chat", "usage")] == Decimal("3.00")
    assert got.lines[("resolution_email", "usage")] == Decimal("1.00")  # 4 x 0.25
