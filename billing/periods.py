"""Monthly billing periods from a subscription's anchor day and timezone (pure).

Rules:
- A period starts at local midnight of the anchor day in the subscription's timezone
  and ends at local midnight of the next month's anchor day (half-open ``[start, end)``).
- The anchor day is clamped to the month's length, month by month: anchor 31 gives
  Feb 28 (Feb 29 in a leap year), Apr 30, then Mar 31 again. Periods are computed from
  the anchor every month, never chained, so a short month does not shift later ones.
- DST only changes the UTC length of a period: boundaries are local midnights. Where a
  zone skips midnight itself, the period starts at the first instant of that day.
- The first period of a subscription starts at its start date (local midnight) and its
  last period ends at its end date (local midnight, exclusive), so both can be partial.
- Boundaries are returned in UTC. Time never comes from the clock: every function takes
  the instant it reasons about.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SubscriptionTerms(Protocol):
    """What periods need to know about a subscription (the ORM model satisfies it)."""

    @property
    def billing_anchor_day(self) -> int: ...
    @property
    def timezone(self) -> str: ...
    @property
    def start_date(self) -> date: ...
    @property
    def end_date(self) -> date | None: ...


@dataclass(frozen=True, slots=True)
class Terms:
    """A plain value satisfying :class:`SubscriptionTerms`."""

    billing_anchor_day: int
    timezone: str
    start_date: date
    end_date: date | None = None


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A billing period ``[start, end)``; ``start`` and ``end`` are aware UTC datetimes."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ValueError(f"Period.{name} must be a timezone-aware datetime, got {value!r}")
            if value.utcoffset() != timedelta(0):
                object.__setattr__(self, name, value.astimezone(UTC))
        if not self.start < self.end:
            raise ValueError(f"empty period: start {self.start} is not before end {self.end}")

    def contains(self, instant: datetime) -> bool:
        return self.start <= _aware(instant) < self.end

    def local_start(self, tz: str) -> date:
        """The local date the period starts on (its label, e.g. in invoice lists)."""
        return self.start.astimezone(zone(tz)).date()

    def label(self) -> str:
        return f"{iso_utc(self.start)}/{iso_utc(self.end)}"


def iso_utc(value: datetime) -> str:
    """An instant as UTC text to the second ("2026-03-01T00:00:00Z"), as keys spell it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; an unknown name is a ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {name!r}") from None


def _aware(instant: datetime) -> datetime:
    if not isinstance(instant, datetime) or instant.utcoffset() is None:
        raise ValueError(f"instant must be a timezone-aware datetime, got {instant!r}")
    return instant


def _check_anchor(anchor_day: int) -> None:
    if isinstance(anchor_day, bool) or not isinstance(anchor_day, int) or not 1 <= anchor_day <= 31:
        raise ValueError(f"billing anchor day must be an integer 1..31, got {anchor_day!r}")


def anchor_date(year: int, month: int, anchor_day: int) -> date:
    """The anchor date in a month: the anchor day, or the month's last day if shorter."""
    _check_anchor(anchor_day)
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


# The warehouse rolls usage up per UTC hour, so a billing period must start and end on a
# whole UTC hour: its timezone's offset must be whole hours at every instant. Checked
# over 2000-2050 (the zone database's rules for the foreseeable range).
_CHECK_FROM = datetime(2000, 1, 1, tzinfo=UTC)
_CHECK_DAYS = 365 * 51


@cache
def whole_hour_zone(name: str) -> bool:
    """True when the zone's UTC offset is a whole number of hours from 2000 to 2050."""
    tz = zone(name)
    step = timedelta(days=7)
    instant = _CHECK_FROM
    for _ in range(_CHECK_DAYS // 7):
        offset = instant.astimezone(tz).utcoffset() or timedelta(0)
        if offset % timedelta(hours=1):
            return False
        instant += step
    return True


def local_midnight(day: date, tz: str) -> datetime:
    """The first instant of ``day`` in ``tz``, in UTC.

    ``fold=0`` maps a wall time inside a spring-forward gap with the offset before the
    gap, which lands exactly on the transition: the first instant that exists that day.
    """
    local = datetime.combine(day, time(0), tzinfo=zone(tz))
    return local.astimezone(UTC)


def _shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


def cycle_start_date(anchor_day: int, tz: str, instant: datetime) -> date:
    """Local date on which the anchor cycle containing ``instant`` starts."""
    _check_anchor(anchor_day)
    local = _aware(instant).astimezone(zone(tz))
    this_month = anchor_date(local.year, local.month, anchor_day)
    # Midnight boundaries: comparing local dates is the same as comparing instants,
    # except on a day whose midnight is skipped, where local_midnight() is the day's
    # first instant anyway.
    if local.date() >= this_month:
        return this_month
    year, month = _shift_month(local.year, local.month, -1)
    return anchor_date(year, month, anchor_day)


def _next_cycle_date(anchor_day: int, start: date) -> date:
    year, month = _shift_month(start.year, start.month, 1)
    return anchor_date(year, month, anchor_day)


def period_containing(anchor_day: int, tz: str, instant: datetime) -> Period:
    """The full monthly anchor cycle that contains ``instant`` (boundaries in UTC)."""
    start = cycle_start_date(anchor_day, tz, instant)
    end = _next_cycle_date(anchor_day, start)
    return Period(local_midnight(start, tz), local_midnight(end, tz))


def _sub_window(sub: SubscriptionTerms) -> tuple[datetime, datetime | None]:
    start = local_midnight(sub.start_date, sub.timezone)
    end = local_midnight(sub.end_date, sub.timezone) if sub.end_date is not None else None
    if end is not None and end <= start:
        raise ValueError(
            f"subscription ends ({sub.end_date}) on or before it starts ({sub.start_date})"
        )
    return start, end


def _clip(sub: SubscriptionTerms, period: Period) -> Period | None:
    start, end = _sub_window(sub)
    clipped_start = max(period.start, start)
    clipped_end = period.end if end is None else min(period.end, end)
    if clipped_start >= clipped_end:
        return None
    return Period(clipped_start, clipped_end)


def subscription_period_containing(sub: SubscriptionTerms, instant: datetime) -> Period | None:
    """The subscription's billing period containing ``instant`` (clipped to its start and
    end), or None when the subscription is not active then."""
    clipped = _clip(sub, period_containing(sub.billing_anchor_day, sub.timezone, instant))
    return clipped if clipped is not None and clipped.contains(instant) else None


def iter_periods(sub: SubscriptionTerms, *, after: datetime | None = None) -> Iterator[Period]:
    """The subscription's periods in order, from its start (or the period starting at or
    after ``after``), ending with its end date; endless for an open-ended subscription."""
    start, end = _sub_window(sub)
    cursor = start if after is None else max(start, _aware(after))
    day = cycle_start_date(sub.billing_anchor_day, sub.timezone, cursor)
    while True:
        nxt = _next_cycle_date(sub.billing_anchor_day, day)
        full = Period(local_midnight(day, sub.timezone), local_midnight(nxt, sub.timezone))
        if end is not None and full.start >= end:
            return
        clipped = _clip(sub, full)
        if clipped is not None and clipped.start >= cursor:
            yield clipped
        day = nxt


def periods_ended_by(
    sub: SubscriptionTerms, as_of: datetime, *, ending_after: datetime | None = None
) -> list[Period]:
    """Every period of the subscription whose end is at or before ``as_of`` (and, with
    ``ending_after``, after it), oldest first. The walk starts at the anchor cycle that
    contains ``ending_after``: every earlier period ends at or before that cycle starts,
    so none is skipped that would be kept (a close as of today never walks the years of
    a subscription that began long before the metering go-live)."""
    as_of = _aware(as_of)
    after = None
    if ending_after is not None:
        first = cycle_start_date(sub.billing_anchor_day, sub.timezone, _aware(ending_after))
        after = local_midnight(first, sub.timezone)
    ended: list[Period] = []
    for period in iter_periods(sub, after=after):
        if period.end > as_of:
            break
        if ending_after is None or period.end > ending_after:
            ended.append(period)
    return ended


def next_period(sub: SubscriptionTerms, period: Period) -> Period | None:
    """The subscription's period right after ``period``, or None after its last one."""
    for candidate in iter_periods(sub, after=period.end):
        return candidate
    return None
