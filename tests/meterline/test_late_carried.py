"""Which windows a late reading of a carry-forward meter reaches (meterline.jobs.late.
carried_late_events): a reading holds its series until the next reading of the series,
so it changes a time_weighted window while it holds at the window's start, and a latest
window while it holds at the window's end. One case per row: the readings (late ones
arrive after every window's run), the windows expected late."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from meterline.jobs.late import carried_late_events
from meterline.jobs.watermarks import LateWindow, Watermark
from meters.catalog import MeterCatalog, meters_from_dict
from meters.ingest.ingestor import IngestOptions, ingest_events
from meters.warehouse.base import Warehouse

METERS = meters_from_dict(
    {
        "meters": [
            {
                "name": "seats",
                "aggregation": "time_weighted",
                "properties": {"seat_type": ["basic", "pro"], "note": None},
                "dimensions": ["seat_type"],
            },
            {
                "name": "balance",
                "aggregation": "latest",
                "properties": {"account": ["a", "b"]},
                "dimensions": ["account"],
            },
            {
                "name": "paid_seats",
                "aggregation": "time_weighted",
                "properties": {"tier": ["free", "paid"]},
                "filter": {"tier": "paid"},
            },
            {"name": "calls", "aggregation": "count"},
        ]
    },
    "test",
)

RUN_SAW = datetime(2026, 11, 5, tzinfo=UTC)  # every window's run saw what came before
ARRIVED = RUN_SAW + timedelta(hours=1)  # the late readings
WINDOWS = {
    "sep": (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
    "oct": (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
    "nov": (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
}


class Reading(NamedTuple):
    meter: str
    at: str
    props: dict[str, str]
    late: bool = False


class Case(NamedTuple):
    name: str
    readings: list[Reading]
    late_in: set[str]


PRO = {"seat_type": "pro"}
CASES = [
    # dated in September: September's own window is late_by_window's; it carries on
    Case("seats, nothing later", [Reading("seats", "2026-09-16", PRO, True)], {"oct", "nov"}),
    Case(
        "seats, superseded at October's start",
        [Reading("seats", "2026-09-16", PRO, True), Reading("seats", "2026-10-01", PRO)],
        set(),
    ),
    Case(
        "seats, superseded inside October",
        [Reading("seats", "2026-09-16", PRO, True), Reading("seats", "2026-10-10", PRO)],
        {"oct"},
    ),
    Case(
        "seats, another series' reading supersedes nothing",
        [
            Reading("seats", "2026-09-16", PRO, True),
            Reading("seats", "2026-10-01", {"seat_type": "basic"}),
        ],
        {"oct", "nov"},
    ),
    Case(
        "seats, a property outside the dimensions is the same series",
        [
            Reading("seats", "2026-09-16", PRO, True),
            Reading("seats", "2026-10-01", {**PRO, "note": "re-count"}),
        ],
        set(),
    ),
    Case(
        "seats, a later late reading supersedes it: both count",
        [Reading("seats", "2026-08-20", PRO, True), Reading("seats", "2026-10-10", PRO, True)],
        {"sep", "oct", "nov"},
    ),
    Case(
        "latest, nothing later",
        [Reading("balance", "2026-09-16", {"account": "a"}, True)],
        {"oct", "nov"},
    ),
    Case(
        "latest, superseded inside October: October's last value is not it",
        [
            Reading("balance", "2026-09-16", {"account": "a"}, True),
            Reading("balance", "2026-10-10", {"account": "a"}),
        ],
        set(),
    ),
    Case(
        "latest, superseded at November's start: October's last value is it",
        [
            Reading("balance", "2026-09-16", {"account": "a"}, True),
            Reading("balance", "2026-11-01", {"account": "a"}),
        ],
        {"oct"},
    ),
    Case(
        "an event of a meter that does not carry",
        [Reading("calls", "2026-09-16", {}, True)],
        set(),
    ),
    Case(
        "a reading the meter's filter excludes",
        [Reading("paid_seats", "2026-09-16", {"tier": "free"}, True)],
        set(),
    ),
    Case(
        "a reading every run saw",
        [Reading("seats", "2026-09-16", PRO)],
        set(),
    ),
]


def _events(readings: list[Reading], late: bool, customer: str = "c1") -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{customer}-e{i}",
            "customer_id": customer,
            "meter": r.meter,
            "timestamp": f"{r.at}T00:00:00Z",
            "value": "7",
            "properties": r.props,
        }
        for i, r in enumerate(readings)
        if r.late == late
    ]


def test_which_windows_a_late_reading_reaches(warehouse: Warehouse) -> None:
    """Every case at once (one customer each, so also: one customer's readings never
    reach another's windows)."""
    options = IngestOptions(max_event_age=timedelta(days=400))
    for late, at in ((False, RUN_SAW - timedelta(days=1)), (True, ARRIVED)):
        events = [e for n, c in enumerate(CASES) for e in _events(c.readings, late, f"c{n}")]
        total = ingest_events(warehouse, METERS, events, ingested_at=at, options=options).total
        assert total.accepted == len(events), total
    names = sorted(WINDOWS)
    windows = [
        LateWindow(n * 10 + i, f"c{n}", *WINDOWS[name], Watermark(RUN_SAW))
        for n in range(len(CASES))
        for i, name in enumerate(names)
    ]
    found = carried_late_events(warehouse, METERS, windows)
    got = {c.name: {names[w % 10] for w in found if w // 10 == n} for n, c in enumerate(CASES)}
    assert got == {c.name: c.late_in for c in CASES}


def test_a_run_that_saw_a_stale_day_missed_its_readings(warehouse: Warehouse) -> None:
    """A reading ingested before the run's events watermark, on a day whose rollup was
    stale when the run read it (its own watermark earlier), was not seen: late."""
    options = IngestOptions(max_event_age=timedelta(days=400))
    ingest_events(
        warehouse,
        METERS,
        _events([Reading("seats", "2026-09-16", PRO, True)], True),
        ingested_at=RUN_SAW - timedelta(days=2),
        options=options,
    )
    day = datetime(2026, 9, 16, tzinfo=UTC).date()
    stale = Watermark(RUN_SAW, {day: RUN_SAW - timedelta(days=3)})
    fresh = Watermark(RUN_SAW, {day: RUN_SAW - timedelta(days=1)})
    windows = [
        LateWindow(0, "c1", *WINDOWS["oct"], stale),
        LateWindow(1, "c1", *WINDOWS["nov"], fresh),
        LateWindow(2, "c1", *WINDOWS["nov"], Watermark(RUN_SAW)),
    ]
    found = carried_late_events(warehouse, METERS, windows)
    assert sorted(found) == [0]
    ((events, value_sum, last),) = found[0].values()
    assert (events, value_sum, last) == (1, 7, RUN_SAW - timedelta(days=2))


def test_no_carry_forward_meter_reads_nothing(warehouse: Warehouse) -> None:
    counts = MeterCatalog(meters={"calls": METERS.meters["calls"]})
    window = LateWindow(0, "c1", *WINDOWS["oct"], Watermark(RUN_SAW))
    assert carried_late_events(warehouse, counts, [window]) == {}
