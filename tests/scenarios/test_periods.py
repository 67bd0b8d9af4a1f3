"""One billing period each, events to finalized invoice: seats added and removed
mid-month, a mid-month anchor, a Dublin customer across the DST change, unique users
across days, prices per channel or over all channels, a minimum commitment with a
discount, a first period that starts mid-cycle. Every expected number is worked out by
hand in the comment above it (prices: tests/scenarios/catalog.yaml).
"""

from __future__ import annotations

import pytest

from billing.errors import LoadError
from tests.scenarios.harness import (
    Invoice,
    Line,
    Scenario,
    Sub,
    World,
    check,
    day,
    event,
    resolutions,
    run,
    utc,
)

# Billing rules, one period each: on the embedded backend only (the suite runs the same
# rollup and quantity SQL on both backends elsewhere; test_late_usage.py and
# test_reruns.py run scenarios through both).
pytestmark = pytest.mark.single_warehouse

SEAT_ADDED = Scenario(
    name="seat added mid-month",
    customers=[Sub("c1", "basic", start="2026-11-01")],
    events=[
        event("c1-s1", "c1", "seats", "2026-11-01 00:00", value=2),
        event("c1-s2", "c1", "seats", "2026-11-21 00:00", value=3),
    ],
    # the days with events: a gauge holds its level through days without events
    # (test_reruns.py runs every day of the month, nightly and as a backfill)
    rollup_days=[day("2026-11-01"), day("2026-11-21")],
    as_of=utc("2026-12-04 00:00"),  # period end + the 72 h grace
    expected=[
        Invoice(
            "c1",
            "2026-11-01",
            lines=[
                # 2 seats x 20 days + 3 seats x 10 days over a 30-day month
                # = 2 + 10/30 = 2.333333333 (9 places); 2.333333333 x 30.00 = 69.99999999
                Line("seat", "usage", None, "2.333333333", "70.00"),
                # every price is rated every period: no resolution is a line of 0
                Line("resolution", "usage", None, 0, "0.00"),
            ],
            total="70.00",
        )
    ],
)

SEAT_REMOVED = Scenario(
    name="seats removed mid-month",
    customers=[Sub("c2", "basic", start="2026-11-01")],
    events=[
        # 3 seats since before the subscription started: the level carried into Nov 1
        event("c2-s1", "c2", "seats", "2026-10-28 12:00", value=3),
        event("c2-s2", "c2", "seats", "2026-11-11 00:00", value=2),
        event("c2-s3", "c2", "seats", "2026-11-26 00:00", value=0),
    ],
    rollup_days=[day("2026-10-28"), day("2026-11-11"), day("2026-11-26")],
    as_of=utc("2026-12-04 00:00"),
    expected=[
        Invoice(
            "c2",
            "2026-11-01",
            lines=[
                # (3 seats x 10 days + 2 x 15 days + 0 x 5 days) / 30 days = 60/30 = 2
                # 2 x 30.00 = 60.00
                Line("seat", "usage", None, 2, "60.00"),
                Line("resolution", "usage", None, 0, "0.00"),
            ],
            total="60.00",
        )
    ],
)

MID_MONTH_ANCHOR = Scenario(
    name="anchor day 15",
    customers=[Sub("c3", "basic", start="2026-10-15", anchor=15)],
    events=[
        # just before the period (and the subscription): not billed
        event("c3-before", "c3", "resolution", "2026-10-14 23:59:59.999", channel="chat"),
        # the period's first and last millisecond: billed
        event("c3-first", "c3", "resolution", "2026-10-15 00:00:00.000", channel="chat"),
        # 148 more in between, on Oct 31 from 00:00 every 5 min (to 12:15)
        *resolutions("c3", "c3-mid", 148, "2026-10-31 00:00", 5, channel="email"),
        event("c3-last", "c3", "resolution", "2026-11-14 23:59:59.999", channel="chat"),
        # the next period's first millisecond: not in this invoice
        event("c3-next", "c3", "resolution", "2026-11-15 00:00:00.000", channel="chat"),
    ],
    rollup_days=[
        day(d) for d in ("2026-10-14", "2026-10-15", "2026-10-31", "2026-11-14", "2026-11-15")
    ],
    # Oct 15 - Nov 15 ended at Nov 15 00:00; + 72 h. The Nov 15 - Dec 15 period is open.
    as_of=utc("2026-11-18 00:00"),
    expected=[
        Invoice(
            "c3",
            "2026-10-15",
            lines=[
                # 1 + 148 + 1 = 150 resolutions, graduated:
                # 100 x 1.00 + 50 x 0.50 = 100.00 + 25.00 = 125.00
                Line("resolution", "usage", None, 150, "125.00"),
                Line("seat", "usage", None, 0, "0.00"),
            ],
            total="125.00",
            utc_period=("2026-10-15 00:00", "2026-11-15 00:00"),
        )
    ],
)

DUBLIN_DST = Scenario(
    name="EUR customer in Europe/Dublin across the October DST change",
    # Periods start at local midnight: Sep 1 00:00 IST = Aug 31 23:00 UTC;
    # Oct 1 00:00 IST = Sep 30 23:00 UTC; Nov 1 00:00 GMT = Nov 1 00:00 UTC (clocks went
    # back on Oct 25 at 01:00 UTC). September is 720 hours, October 31 x 24 + 1 = 745.
    customers=[Sub("c4", "basic", start="2026-09-01", currency="EUR", timezone="Europe/Dublin")],
    events=[
        event("c4-s1", "c4", "seats", "2026-08-31 23:00", value=2),  # Sep 1 00:00 local
        # a 3rd seat from Oct 25 00:00 IST = Oct 24 23:00 UTC, the night of the change
        event("c4-s2", "c4", "seats", "2026-10-24 23:00", value=3),
        # Sep 30 23:59:59.999 local: September
        event("c4-r1", "c4", "resolution", "2026-09-30 22:59:59.999", channel="chat"),
        # Oct 1 00:00 local (still Sep 30 in UTC): October
        event("c4-r2", "c4", "resolution", "2026-09-30 23:00:00.000", channel="chat"),
        # 01:30 IST, in the hour that happens twice: October
        event("c4-r3", "c4", "resolution", "2026-10-25 00:30", channel="email"),
        # Oct 31 23:59:59.999 GMT: October
        event("c4-r4", "c4", "resolution", "2026-10-31 23:59:59.999", channel="chat"),
        # Nov 1 00:00 local: November, not closed yet
        event("c4-r5", "c4", "resolution", "2026-11-01 00:00:00.000", channel="chat"),
    ],
    rollup_days=[
        day("2026-08-31"),
        day("2026-09-30"),
        day("2026-10-24"),
        day("2026-10-25"),
        day("2026-10-31"),
        day("2026-11-01"),
    ],
    as_of=utc("2026-11-04 00:00"),  # closes September and October
    expected=[
        Invoice(
            "c4",
            "2026-09-01",
            lines=[
                # 2 seats for the whole 720 h: 2 x 20.00 = 40.00
                Line("seat", "usage", None, 2, "40.00"),
                # r1: 1 x 0.80
                Line("resolution", "usage", None, 1, "0.80"),
            ],
            total="40.80",
            utc_period=("2026-08-31 23:00", "2026-09-30 23:00"),  # 720 h
        ),
        Invoice(
            "c4",
            "2026-10-01",
            lines=[
                # 2 seats x 745 h + 1 seat x (Oct 24 23:00 -> Nov 1 00:00 UTC = 169 h),
                # over 745 h: 2 + 169/745 = 2.2268456375... -> 2.226845638
                # (over a 744-hour month it would be 2.227150538)
                # 2.226845638 x 20.00 = 44.53691276 -> 44.54
                Line("seat", "usage", None, "2.226845638", "44.54"),
                # r2, r3, r4: 3 x 0.80 = 2.40
                Line("resolution", "usage", None, 3, "2.40"),
            ],
            total="46.94",
            utc_period=("2026-09-30 23:00", "2026-11-01 00:00"),  # 745 h
        ),
    ],
)

UNIQUE_USERS = Scenario(
    name="unique users across days",
    customers=[Sub("c5", "active_users", start="2026-11-01")],
    events=[
        event("c5-0", "c5", "active_user", "2026-10-31 23:59:59.999", user_id="u4"),  # before
        event("c5-1", "c5", "active_user", "2026-11-02 09:00", user_id="u1"),
        event("c5-2", "c5", "active_user", "2026-11-03 10:00", user_id="u1"),
        event("c5-3", "c5", "active_user", "2026-11-03 10:00", user_id="u2"),
        event("c5-4", "c5", "active_user", "2026-11-03 15:00", user_id="u2"),
        event("c5-5", "c5", "active_user", "2026-11-05 08:00"),  # no user_id: no user
        event("c5-6", "c5", "active_user", "2026-11-20 11:00", user_id="u1"),
        event("c5-7", "c5", "active_user", "2026-11-29 11:00", user_id="u2"),
        event("c5-8", "c5", "active_user", "2026-11-30 23:59:59.999", user_id="u3"),
        event("c5-9", "c5", "active_user", "2026-12-01 00:00", user_id="u4"),  # after
    ],
    rollup_days=[
        day(d)
        for d in (
            "2026-10-31",
            "2026-11-02",
            "2026-11-03",
            "2026-11-05",
            "2026-11-20",
            "2026-11-29",
            "2026-11-30",
            "2026-12-01",
        )
    ],
    as_of=utc("2026-12-04 00:00"),
    expected=[
        Invoice(
            "c5",
            "2026-11-01",
            lines=[
                # u1 (3 days), u2 (2 days), u3 = 3 distinct users x 5.00 = 15.00
                Line("active_user", "usage", None, 3, "15.00"),
            ],
            total="15.00",
        )
    ],
)


def _channels(customer: str) -> list[dict]:
    # 7 chat, 4 email, 3 phone resolutions over three days of November
    return [
        *resolutions(customer, f"{customer}-chat", 7, "2026-11-03 09:00", 50, channel="chat"),
        *resolutions(customer, f"{customer}-email", 4, "2026-11-10 09:00", 70, channel="email"),
        *resolutions(customer, f"{customer}-phone", 3, "2026-11-17 09:00", 30, channel="phone"),
    ]


CHANNELS = Scenario(
    name="resolutions priced per channel, or over all channels",
    customers=[
        Sub("c6a", "by_channel", start="2026-11-01"),
        Sub("c6b", "basic", start="2026-11-01"),
    ],
    events=[*_channels("c6a"), *_channels("c6b")],
    rollup_days=[day("2026-11-03"), day("2026-11-10"), day("2026-11-17")],
    as_of=utc("2026-12-04 00:00"),
    expected=[
        Invoice(
            "c6a",
            "2026-11-01",
            lines=[
                # one line per channel price (its filter is the line's group)
                Line("resolution_chat", "usage", "channel=chat", 7, "7.00"),  # 7 x 1.00
                Line("resolution_email", "usage", "channel=email", 4, "1.00"),  # 4 x 0.25
                Line("resolution_phone", "usage", "channel=phone", 3, "6.00"),  # 3 x 2.00
            ],
            total="14.00",  # 7.00 + 1.00 + 6.00
        ),
        Invoice(
            "c6b",
            "2026-11-01",
            lines=[
                # one price over all channels: 7 + 4 + 3 = 14 in the first tier, x 1.00
                Line("resolution", "usage", None, 14, "14.00"),
                Line("seat", "usage", None, 0, "0.00"),
            ],
            total="14.00",
        ),
    ],
)

COMMITTED = Scenario(
    name="minimum commitment true-up and a percent-off discount",
    customers=[
        Sub(
            "c7a",
            "committed",
            start="2026-11-01",
            discounts=({"price": "platform_fee", "percent_off": "20", "valid_from": "2026-11-01"},),
        ),
        Sub("c7b", "committed", start="2026-11-01"),
    ],
    events=[
        event("c7a-s", "c7a", "seats", "2026-11-01 00:00", value=5),
        # 60 on Nov 1 from 00:00 every 20 min (to 19:40), 60 on Nov 17
        *resolutions("c7a", "c7a-r", 60, "2026-11-01 00:00", 20, channel="chat"),
        *resolutions("c7a", "c7a-q", 60, "2026-11-17 00:00", 20, channel="email"),
        event("c7b-s", "c7b", "seats", "2026-11-01 00:00", value=10),
        # 200 on Nov 1 from 00:00 every 5 min (to 16:35)
        *resolutions("c7b", "c7b-r", 200, "2026-11-01 00:00", 5, channel="phone"),
    ],
    # the days with events (what the DAG scenario runs too)
    rollup_days=[day("2026-11-01"), day("2026-11-17")],
    as_of=utc("2026-12-04 00:00"),
    expected=[
        Invoice(
            "c7a",
            "2026-11-01",
            lines=[
                Line("platform_fee", "flat", None, 1, "100.00"),
                # 20% off the platform fee: -0.20 x 100.00
                Line("platform_fee", "discount", None, 1, "-20.00"),
                Line("seat", "usage", None, 5, "150.00"),  # 5 x 30.00, the whole month
                Line("resolution", "usage", None, 120, "120.00"),  # 60 + 60, x 1.00
                # lines total 100.00 - 20.00 + 150.00 + 120.00 = 350.00 < 500.00:
                # true-up 500.00 - 350.00 = 150.00
                Line("minimum_commitment", "minimum_true_up", None, 1, "150.00"),
            ],
            total="500.00",
            subtotal="520.00",  # 100 + 150 + 120 + 150 (discounts apart)
            discounts="-20.00",
        ),
        Invoice(
            "c7b",
            "2026-11-01",
            lines=[
                Line("platform_fee", "flat", None, 1, "100.00"),
                Line("seat", "usage", None, 10, "300.00"),  # 10 x 30.00
                Line("resolution", "usage", None, 200, "200.00"),  # 200 x 1.00
                # 600.00 >= 500.00: no true-up line
            ],
            total="600.00",
        ),
    ],
)

PARTIAL_FIRST_PERIOD = Scenario(
    name="subscription starting mid-cycle",
    customers=[Sub("c15", "basic", start="2026-11-16")],
    events=[
        event("c15-s", "c15", "seats", "2026-11-16 00:00", value=3),
        # 150 on Nov 20 from 00:00, every 5 min (to 12:25)
        *resolutions("c15", "c15-r", 150, "2026-11-20 00:00", 5, channel="chat"),
    ],
    rollup_days=[day("2026-11-16"), day("2026-11-20")],
    as_of=utc("2026-12-04 00:00"),
    expected=[
        Invoice(
            "c15",
            "2026-11-16",  # the first period runs from the start date to the next anchor
            lines=[
                # seats are prorated over the full anchor cycle (Nov 1 - Dec 1, 30 days):
                # 3 seats x 15 days / 30 days = 1.5; 1.5 x 30.00 = 45.00
                Line("seat", "usage", None, "1.5", "45.00"),
                # usage tiers are not prorated: 100 x 1.00 + 50 x 0.50 = 125.00
                Line("resolution", "usage", None, 150, "125.00"),
            ],
            total="170.00",
        )
    ],
)

SCENARIOS = [
    SEAT_ADDED,
    SEAT_REMOVED,
    MID_MONTH_ANCHOR,
    DUBLIN_DST,
    UNIQUE_USERS,
    CHANNELS,
    COMMITTED,
    PARTIAL_FIRST_PERIOD,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.replace(" ", "_"))
def test_period(world: World, scenario: Scenario) -> None:
    report = run(world, scenario)
    assert report.periods_closed == len(scenario.expected)
    assert len(report.invoices_finalized) == len(scenario.expected)
    check(world, scenario.expected)


def test_a_half_hour_timezone_does_not_stop_the_close_of_the_others(world: World) -> None:
    ok = Sub("c16", "basic", start="2026-11-01")
    kolkata = Sub("c17", "basic", start="2026-11-01", timezone="Asia/Kolkata")
    try:
        world.load_customers([ok, kolkata])
    except LoadError as exc:  # refusing the timezone at load is a fix too
        assert "timezone" in str(exc.problems)
        world.load_customers([ok])
    world.deliver([event("c16-r", "c16", "resolution", "2026-11-20 12:00", channel="chat")])
    world.nightly(day("2026-11-20"))
    world.close(utc("2026-12-04 00:00"))
    check(
        world,
        [
            Invoice(
                "c16",
                "2026-11-01",
                # 1 x 1.00
                [
                    Line("resolution", "usage", None, 1, "1.00"),
                    Line("seat", "usage", None, 0, "0.00"),
                ],
                "1.00",
            )
        ],
        exact=False,
    )
