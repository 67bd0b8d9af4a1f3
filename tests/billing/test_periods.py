"""Billing periods: anchor day and timezone, month ends, leap years, DST (pure)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.periods import (
    Period,
    Terms,
    anchor_date,
    iter_periods,
    local_midnight,
    next_period,
    period_containing,
    periods_ended_by,
    subscription_period_containing,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(UTC)


# (anchor, tz, instant, expected local start date, expected local end date)
CASES = [
    # Anchor 31 clamps to each month's last day, and comes back to 31 after it.
    (31, "UTC", utc(2026, 2, 10), date(2026, 1, 31), date(2026, 2, 28)),
    (31, "UTC", utc(2026, 3, 1), date(2026, 2, 28), date(2026, 3, 31)),
    (31, "UTC", utc(2026, 4, 15), date(2026, 3, 31), date(2026, 4, 30)),
    (31, "UTC", utc(2026, 5, 5), date(2026, 4, 30), date(2026, 5, 31)),
    (30, "UTC", utc(2026, 2, 28, 12), date(2026, 2, 28), date(2026, 3, 30)),
    (29, "UTC", utc(2026, 3, 1), date(2026, 2, 28), date(2026, 3, 29)),
    # Leap year: February has a 29th.
    (31, "UTC", utc(2028, 2, 29, 12), date(2028, 2, 29), date(2028, 3, 31)),
    (29, "UTC", utc(2028, 2, 29), date(2028, 2, 29), date(2028, 3, 29)),
    (29, "UTC", utc(2028, 2, 28, 23, 59), date(2028, 1, 29), date(2028, 2, 29)),
    (30, "Europe/Dublin", utc(2024, 2, 29, 12), date(2024, 2, 29), date(2024, 3, 30)),
    # Anchor 1 and mid-month anchors; the instant of the boundary belongs to the new period.
    (1, "UTC", utc(2026, 1, 1), date(2026, 1, 1), date(2026, 2, 1)),
    (1, "UTC", utc(2025, 12, 31, 23, 59, 59), date(2025, 12, 1), date(2026, 1, 1)),
    (15, "UTC", utc(2026, 1, 14), date(2025, 12, 15), date(2026, 1, 15)),
    # Local midnight, not UTC midnight: 03:00 UTC on the 1st is still the 31st in New York.
    (1, "America/New_York", utc(2026, 3, 1, 3), date(2026, 2, 1), date(2026, 3, 1)),
    (1, "America/New_York", utc(2026, 3, 1, 5), date(2026, 3, 1), date(2026, 4, 1)),
    # Tokyo is ahead of UTC: 16:00 UTC on the 31st is already the 1st there.
    (1, "Asia/Tokyo", utc(2026, 3, 31, 16), date(2026, 4, 1), date(2026, 5, 1)),
]


@pytest.mark.parametrize(("anchor", "tz", "instant", "start", "end"), CASES)
def test_period_containing(anchor: int, tz: str, instant: datetime, start: date, end: date) -> None:
    period = period_containing(anchor, tz, instant)
    assert period.start == local_midnight(start, tz)
    assert period.end == local_midnight(end, tz)
    assert period.contains(instant)
    assert period.start.tzinfo is UTC and period.end.tzinfo is UTC


def test_new_york_across_dst() -> None:
    # DST starts 2026-03-08 and ends 2026-11-01 in New York.
    march = period_containing(1, "America/New_York", utc(2026, 3, 15))
    assert march.start == utc(2026, 3, 1, 5)  # EST, UTC-5
    assert march.end == utc(2026, 4, 1, 4)  # EDT, UTC-4
    assert march.end - march.start == timedelta(days=31, hours=-1)
    october = period_containing(1, "America/New_York", utc(2026, 10, 15))
    assert october.start == utc(2026, 10, 1, 4)
    assert october.end == utc(2026, 11, 1, 4)  # midnight is still EDT; DST ends at 02:00
    november = period_containing(1, "America/New_York", utc(2026, 11, 15))
    assert november.start == utc(2026, 11, 1, 4)
    assert november.end == utc(2026, 12, 1, 5)
    assert november.end - november.start == timedelta(days=30, hours=1)


def test_dublin_across_dst() -> None:
    # Irish Standard Time (UTC+1) from 2026-03-29 to 2026-10-25; GMT otherwise.
    period = period_containing(29, "Europe/Dublin", utc(2026, 4, 1))
    assert period.start == utc(2026, 3, 29, 0)  # midnight GMT; clocks change at 01:00
    assert period.end == utc(2026, 4, 28, 23)  # midnight IST
    assert period.end - period.start == timedelta(days=31, hours=-1)
    # IST ends at 02:00 local on 10-25, so local midnight of the 25th is still IST (UTC+1),
    # and the period ending at the November anchor is an hour longer than its days.
    autumn = period_containing(25, "Europe/Dublin", utc(2026, 11, 1))
    assert autumn.start == local("Europe/Dublin", 2026, 10, 25) == utc(2026, 10, 24, 23)
    assert autumn.end == utc(2026, 11, 25, 0)
    assert autumn.end - autumn.start == timedelta(days=31, hours=1)


def test_dublin_autumn_boundary_is_local_midnight() -> None:
    period = period_containing(25, "Europe/Dublin", utc(2026, 10, 10))
    assert period.start == utc(2026, 9, 24, 23)
    assert period.end == utc(2026, 10, 24, 23)
    following = period_containing(25, "Europe/Dublin", period.end)
    assert following.start == period.end
    assert following.end == utc(2026, 11, 25, 0)


def test_midnight_skipped_by_dst_starts_at_first_instant_of_the_day() -> None:
    # Santiago springs forward at 24:00 on 2026-09-05: 2026-09-06 starts at 01:00 (-03).
    period = period_containing(6, "America/Santiago", utc(2026, 9, 20))
    assert period.start == utc(2026, 9, 6, 4)
    assert period.start.astimezone(ZoneInfo("America/Santiago")).hour == 1
    previous = period_containing(6, "America/Santiago", utc(2026, 9, 5, 12))
    assert previous.end == period.start


def test_anchor_dates() -> None:
    assert anchor_date(2026, 2, 31) == date(2026, 2, 28)
    assert anchor_date(2028, 2, 31) == date(2028, 2, 29)
    assert anchor_date(2026, 4, 31) == date(2026, 4, 30)
    assert anchor_date(2026, 12, 31) == date(2026, 12, 31)
    for bad in (0, 32, -1):
        with pytest.raises(ValueError, match="anchor day"):
            anchor_date(2026, 1, bad)


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_containing(1, "UTC", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="unknown IANA timezone"):
        period_containing(1, "Mars/Olympus_Mons", utc(2026, 1, 1))
    with pytest.raises(ValueError, match="empty period"):
        Period(utc(2026, 1, 2), utc(2026, 1, 1))


def test_subscription_periods_clip_to_start_and_end() -> None:
    terms = Terms(31, "Europe/Dublin", date(2026, 1, 15), date(2026, 5, 10))
    periods = list(iter_periods(terms))
    starts = [p.start.astimezone(ZoneInfo("Europe/Dublin")).date() for p in periods]
    assert starts == [
        date(2026, 1, 15),
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    assert periods[-1].end == local_midnight(date(2026, 5, 10), "Europe/Dublin")
    for before, after in itertools.pairwise(periods):
        assert before.end == after.start
    assert subscription_period_containing(terms, utc(2026, 1, 1)) is None
    assert subscription_period_containing(terms, utc(2026, 6, 1)) is None
    assert subscription_period_containing(terms, utc(2026, 1, 20)) == periods[0]
    assert next_period(terms, periods[-1]) is None
    assert next_period(terms, periods[0]) == periods[1]


def test_periods_ended_by_uses_the_given_instant() -> None:
    terms = Terms(1, "America/New_York", date(2026, 1, 1))
    assert periods_ended_by(terms, utc(2026, 1, 31)) == []
    ended = periods_ended_by(terms, utc(2026, 4, 1, 4))  # exactly the end of March
    assert [p.start for p in ended] == [utc(2026, 1, 1, 5), utc(2026, 2, 1, 5), utc(2026, 3, 1, 5)]
    assert periods_ended_by(terms, utc(2026, 4, 1, 3, 59)) == ended[:2]


ZONES = st.sampled_from(
    [
        "UTC",
        "America/New_York",
        "Europe/Dublin",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "America/Santiago",
        "Pacific/Chatham",
        "Asia/Tokyo",
    ]
)
INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(anchor=st.integers(1, 31), tz=ZONES, instant=INSTANTS)
def test_period_properties(anchor: int, tz: str, instant: datetime) -> None:
    period = period_containing(anchor, tz, instant)
    zone = ZoneInfo(tz)
    assert period.start <= instant < period.end
    start_local = period.start.astimezone(zone)
    assert start_local.date() == anchor_date(start_local.year, start_local.month, anchor)
    assert start_local.time().minute == 0 and start_local.hour in (0, 1)  # 1: skipped midnight
    # Periods tile time: the next one starts where this one ends, and the one before
    # ends where it starts.
    assert period_containing(anchor, tz, period.end).start == period.end
    assert (
        period_containing(anchor, tz, period.start - timedelta(microseconds=1)).end == period.start
    )
    assert timedelta(days=27) < period.end - period.start < timedelta(days=32)
