"""Running a step again changes nothing; a backfill gives what the nightly runs gave."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import fresh_warehouse
from tests.scenarios.harness import (
    Invoice,
    Line,
    Sub,
    World,
    check,
    comparable,
    day,
    days,
    event,
    utc,
)
from tests.scenarios.test_periods import COMMITTED


def test_every_step_run_twice_changes_nothing(world: World) -> None:
    scenario = COMMITTED  # a flat fee, a discount, seats, resolutions and a true-up
    world.load_customers(scenario.customers)
    world.load_customers(scenario.customers)  # loading the same file again: no change
    world.deliver(scenario.events)
    for d in scenario.rollup_days:
        world.nightly(d)
        once = world.rollup_rows()
        assert world.rollup(d)[0].late_days == []
        assert world.rollup_rows() == once, f"re-running {d} changed the rollup"

    # Every delivery sent again (a retried upload): each event is a duplicate, no day
    # becomes dirty.
    world.deliver(scenario.events)
    again = world.ingest_until(scenario.as_of)
    assert sum(s.total.duplicates for s in again) == len(scenario.events)
    assert sum(s.total.accepted for s in again) == 0
    assert world.rollup(scenario.rollup_days[-1])[0].late_days == []

    first = world.close(scenario.as_of)
    assert first.lines_created == 8  # c7a: 5 lines, c7b: 3
    ledger = check(world, scenario.expected)

    second = world.close(scenario.as_of)
    assert (second.periods_closed, second.lines_created, second.lines_unchanged) == (0, 0, 0)
    assert (second.invoices_finalized, second.adjustment_lines) == ((), 0)
    # Identical ledger: same invoices, same line ids, same amounts and totals.
    assert world.invoices() == ledger

    # Every day rolled up once more, and the next night's close: still nothing new.
    world.rollup(*scenario.rollup_days)
    third = world.close(utc("2026-12-05 00:00"))
    assert (third.lines_created, third.adjustment_lines) == (0, 0)
    assert world.invoices() == ledger


NOVEMBER = days("2026-11-01", "2026-11-30")

# Seats and resolutions on a few days of November (most days have no event), and one
# late delivery.
BACKFILL_CUSTOMERS = [
    Sub("c13", "basic", start="2026-11-01"),
    Sub("c14", "by_channel", start="2026-11-01"),
]
BACKFILL_EVENTS = [
    event("c13-s1", "c13", "seats", "2026-11-01 00:00", value=4),
    event("c13-s2", "c13", "seats", "2026-11-16 00:00", value=1),
    # 10 resolutions on each of Nov 3, 10, 17, 24 (from 12:00, one a minute)
    *[
        event(f"c13-r{d}-{i}", "c13", "resolution", f"2026-11-{d:02d} 12:{i:02d}", channel="chat")
        for d in (3, 10, 17, 24)
        for i in range(10)
    ],
    # a resolution of Nov 3 delivered on Nov 12: the Nov 11 nightly run rebuilds Nov 3
    event(
        "c13-late",
        "c13",
        "resolution",
        "2026-11-03 18:00",
        ingested_at="2026-11-12 00:30",
        channel="chat",
    ),
    event("c14-r1", "c14", "resolution", "2026-11-07 08:00", channel="chat"),
    event("c14-r2", "c14", "resolution", "2026-11-07 09:00", channel="phone"),
    event("c14-r3", "c14", "resolution", "2026-11-29 23:59:59.999", channel="email"),
]
BACKFILL_EXPECTED = [
    Invoice(
        "c13",
        "2026-11-01",
        lines=[
            # (4 seats x 15 days + 1 x 15 days) / 30 = 75/30 = 2.5; 2.5 x 30.00 = 75.00
            Line("seat", "usage", None, "2.5", "75.00"),
            # 4 days x 10 + the late one = 41, tier 1: 41 x 1.00
            Line("resolution", "usage", None, 41, "41.00"),
        ],
        total="116.00",  # 75.00 + 41.00
    ),
    Invoice(
        "c14",
        "2026-11-01",
        lines=[
            Line("resolution_chat", "usage", "channel=chat", 1, "1.00"),
            Line("resolution_email", "usage", "channel=email", 1, "0.25"),
            Line("resolution_phone", "usage", "channel=phone", 1, "2.00"),
        ],
        total="3.25",
    ),
]


@pytest.mark.single_warehouse  # two databases and sixty rollups: the embedded backend only
def test_backfill_equals_the_nightly_runs(world: World, chdb_folder: Path, tmp_path: Path) -> None:
    as_of = utc("2026-12-04 00:00")
    first, last = day("2026-11-01"), day("2026-11-30")

    # Nightly: each day's delivery, then that day's rollup (late days rebuilt on the way).
    nightly = world
    nightly.load_customers(BACKFILL_CUSTOMERS)
    nightly.deliver(BACKFILL_EVENTS)
    reports = nightly.nightly(*NOVEMBER)
    assert [r.late_days for r in reports if r.late_days] == [["2026-11-03"]]
    nightly.close(as_of)

    # Backfill, in a second database: every delivery first, then the whole range.
    with fresh_warehouse(chdb_folder) as other:
        backfilled = World(other, chdb_folder, tmp_path / "backfilled")
        backfilled.load_customers(BACKFILL_CUSTOMERS)
        backfilled.deliver(BACKFILL_EVENTS)
        backfilled.ingest_until(as_of)
        reports = backfilled.backfill(first, last)
        assert [r.day for r in reports] == NOVEMBER
        assert all(r.late_days == [] for r in reports)
        backfilled.close(as_of)

        assert backfilled.rollup_rows() == nightly.rollup_rows()
        assert comparable(backfilled.invoices()) == comparable(nightly.invoices())
        check(backfilled, BACKFILL_EXPECTED)
    check(nightly, BACKFILL_EXPECTED)
