"""periods_ended_by(..., ending_after=): the periods a close bills after the metering
go-live, found without walking a subscription's whole history, are exactly those of the
full walk that end after the cut (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.periods import Period, Terms, iter_periods, periods_ended_by

# Zones with DST, skipped or doubled midnights, far offsets, and a 30-minute DST shift.
ZONES = [
    "UTC",
    "America/Los_Angeles",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Pacific/Apia",
    "Etc/GMT+12",
    "Etc/GMT-14",
    "Australia/Lord_Howe",
]
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def full_walk(sub: Terms, as_of: datetime, after: datetime) -> list[Period]:
    """The rule as the close applied it before: every period from the start, filtered."""
    out = []
    for period in iter_periods(sub):
        if period.end > as_of:
            break
        if period.end > after:
            out.append(period)
    return out


terms = st.builds(
    Terms,
    st.integers(1, 31),
    st.sampled_from(ZONES),
    st.dates(date(2020, 1, 1), date(2026, 12, 31)),
    st.one_of(st.none(), st.dates(date(2020, 1, 2), date(2028, 12, 31))),
).filter(lambda t: t.end_date is None or t.end_date > t.start_date)
hours = st.integers(0, 24 * 365 * 8)


@settings(max_examples=300, deadline=None)
@given(terms, hours, hours)
def test_same_periods_as_the_full_walk(sub: Terms, as_of_h: int, after_h: int) -> None:
    as_of = EPOCH + timedelta(hours=as_of_h)
    after = EPOCH + timedelta(hours=after_h)
    assert periods_ended_by(sub, as_of, ending_after=after) == full_walk(sub, as_of, after)


@settings(max_examples=200, deadline=None)
@given(terms, st.integers(0, 30), st.sampled_from([-1, 0, 1]), st.integers(0, 400))
def test_a_cut_on_a_period_boundary(sub: Terms, index: int, nudge: int, days: int) -> None:
    """A cut at a period's start or end (to the microsecond either side): the period
    ending exactly at the cut is not billed, the one ending after it is."""
    periods = []
    for period in iter_periods(sub):
        periods.append(period)
        if len(periods) > index:
            break
    chosen = periods[min(index, len(periods) - 1)]
    for edge in (chosen.start, chosen.end):
        after = edge + timedelta(microseconds=nudge)
        as_of = after + timedelta(days=days)
        assert periods_ended_by(sub, as_of, ending_after=after) == full_walk(sub, as_of, after)


def test_history_before_the_cut_is_not_walked() -> None:
    """A subscription since 2001 closed for one month after a 2026 go-live: one period."""
    sub = Terms(15, "America/Los_Angeles", date(2001, 1, 15))
    got = periods_ended_by(
        sub, datetime(2026, 11, 20, tzinfo=UTC), ending_after=datetime(2026, 10, 1, tzinfo=UTC)
    )
    assert [(p.start.date(), p.end.date()) for p in got] == [
        (date(2026, 9, 15), date(2026, 10, 15)),
        (date(2026, 10, 15), date(2026, 11, 15)),
    ]
