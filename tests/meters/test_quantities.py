"""Billable quantities: the rollup gives exactly what the raw events give, per aggregation.

Hand-computed cases for the gauges (time-weighted seats, carried-over levels) and unique
counts, then a seeded random comparison of the two engines over random whole-hour
windows, including local days of whole-hour timezones.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from meters.catalog import CatalogError, MeterCatalog, meters_from_dict
from meters.ingest.ingestor import ingest_events
from meters.quantities import QuantityRow, period_quantities, raw_period_quantities
from meters.rollup import dirty_days, rebuild_day
from meters.warehouse.base import Warehouse

NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)  # November 2026: 30 days

TEST_METERS = {
    "meters": [
        {
            "name": "api_calls",
            "aggregation": "sum",
            "properties": {"region": ["eu", "us"], "note": None},
            "dimensions": ["region"],
        },
        {
            "name": "messages",
            "aggregation": "count",
            "properties": {"channel": ["chat", "email"], "tier": ["free", "paid"]},
            "dimensions": ["channel"],
        },
        {
            "name": "paid_messages",
            "aggregation": "count",
            "properties": {"channel": ["chat", "email"], "tier": ["free", "paid"]},
            "dimensions": ["channel"],
            "filter": {"tier": "paid"},
        },
        {"name": "peak_storage", "aggregation": "max", "properties": {"note": None}},
        {
            "name": "active_users",
            "aggregation": "unique_count",
            "properties": {"user": None, "channel": ["chat", "email"]},
            "dimensions": ["channel"],
            "unique_property": "user",
        },
        {
            "name": "balance",
            "aggregation": "latest",
            "properties": {"account": ["a", "b"]},
            "dimensions": ["account"],
        },
        {
            "name": "seats",
            "aggregation": "time_weighted",
            "properties": {"seat_type": ["basic", "pro"], "note": None},
            "dimensions": ["seat_type"],
        },
    ]
}


@pytest.fixture(scope="module")
def meters() -> MeterCatalog:
    return meters_from_dict(TEST_METERS, "test")


def ev(
    eid: str, meter: str, at: str, value: str | int = 1, customer: str = "c1", **props: str
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "customer_id": customer,
        "meter": meter,
        "timestamp": at,
        "value": str(value),
        "properties": props,
    }


def load(wh: Warehouse, catalog: MeterCatalog, events: list[dict[str, Any]]) -> None:
    """Ingest each event as if it arrived an hour after it happened, then roll up."""
    by_arrival: dict[datetime, list[dict[str, Any]]] = {}
    for e in events:
        at = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        by_arrival.setdefault(
            at.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1), []
        ).append(e)
    for arrival, batch in sorted(by_arrival.items()):
        total = ingest_events(wh, catalog, batch, ingested_at=arrival).total
        assert total.accepted == len(batch), total
    for day in dirty_days(wh, up_to=date(2027, 1, 1)):
        rebuild_day(wh, catalog, day)


def both(wh: Warehouse, catalog: MeterCatalog, **window: Any) -> list[QuantityRow]:
    rolled = period_quantities(wh, catalog, **window)
    raw = raw_period_quantities(wh, catalog, **window)
    assert rolled == raw
    return rolled


def quantity(rows: list[QuantityRow], meter: str, **dims: str) -> Decimal | None:
    found = [r.quantity for r in rows if r.meter == meter and r.dimensions == dims]
    assert len(found) <= 1
    return found[0] if found else None


# -- time-weighted gauges, by hand ----------------------------------------------------------


def test_seat_added_on_the_21st_of_a_30_day_month(
    warehouse: Warehouse, meters: MeterCatalog
) -> None:
    load(
        warehouse,
        meters,
        [
            ev("s1", "seats", "2026-11-01T00:00:00Z", 2, seat_type="pro"),
            ev("s2", "seats", "2026-11-21T00:00:00Z", 3, seat_type="pro"),
        ],
    )
    rows = both(warehouse, meters, start=NOV, end=DEC)
    # 2 seats for 20 days, 3 for 10: 2 + 10/30.
    assert rows == [QuantityRow("c1", "seats", {"seat_type": "pro"}, Decimal("2.333333333"), 2)]


def test_gauge_set_before_the_period_carries_in(warehouse: Warehouse, meters: MeterCatalog) -> None:
    # Set in August (months before the window, in a day of its own) and never touched.
    load(warehouse, meters, [ev("s1", "seats", "2026-08-14T09:30:00.250Z", 4, seat_type="basic")])
    rows = both(warehouse, meters, start=NOV, end=DEC)
    assert rows == [QuantityRow("c1", "seats", {"seat_type": "basic"}, Decimal("4.000000000"), 0)]


def test_removal_mid_month(warehouse: Warehouse, meters: MeterCatalog) -> None:
    load(
        warehouse,
        meters,
        [
            ev("s1", "seats", "2026-10-20T12:00:00Z", 3, seat_type="pro"),
            ev("s2", "seats", "2026-11-16T00:00:00Z", 0, seat_type="pro"),
        ],
    )
    rows = both(warehouse, meters, start=NOV, end=DEC)
    assert rows == [QuantityRow("c1", "seats", {"seat_type": "pro"}, Decimal("1.500000000"), 1)]
    # The month after: the level carried in is 0 and nothing happened: no row at all.
    assert both(warehouse, meters, start=DEC, end=datetime(2027, 1, 1, tzinfo=UTC)) == []


def test_changes_within_an_hour_are_weighted_to_the_millisecond(
    warehouse: Warehouse, meters: MeterCatalog
) -> None:
    load(
        warehouse,
        meters,
        [
            ev("s1", "seats", "2026-11-02T10:15:00Z", 1, seat_type="pro"),
            ev("s2", "seats", "2026-11-02T10:45:00Z", 5, seat_type="pro"),
            # Same millisecond: ordered by event_id, so s4 (2) is the level that holds.
            ev("s3", "seats", "2026-11-02T11:30:00.001Z", 7, seat_type="pro"),
            ev("s4", "seats", "2026-11-02T11:30:00.001Z", 2, seat_type="pro"),
        ],
    )
    start = datetime(2026, 11, 2, 10, tzinfo=UTC)
    rows = both(warehouse, meters, start=start, end=start + timedelta(hours=2))
    # 15 min at 0, 30 min at 1, 45 min + 1 ms at 5, then 2 for the rest (30 min - 1 ms).
    ms = 60_000
    integral = 30 * ms * 1 + (45 * ms + 1) * 5 + (30 * ms - 1) * 2
    expected = (Decimal(integral) / Decimal(120 * ms)).quantize(Decimal("1e-9"))
    assert rows == [QuantityRow("c1", "seats", {"seat_type": "pro"}, expected, 4)]


def test_windows_normalized_to_the_month_sum_to_the_month(
    warehouse: Warehouse, meters: MeterCatalog
) -> None:
    load(
        warehouse,
        meters,
        [
            ev("s1", "seats", "2026-10-03T00:00:00Z", 2, seat_type="pro"),
            ev("s2", "seats", "2026-11-21T00:00:00Z", 3, seat_type="pro"),
            ev("b1", "seats", "2026-11-06T00:00:00Z", 6, seat_type="basic"),
            ev("b2", "seats", "2026-11-26T00:00:00Z", 0, seat_type="basic"),
        ],
    )
    month = both(warehouse, meters, start=NOV, end=DEC)
    split = datetime(2026, 11, 16, tzinfo=UTC)
    first = both(warehouse, meters, start=NOV, end=split, normalize_to=(NOV, DEC))
    second = both(warehouse, meters, start=split, end=DEC, normalize_to=(NOV, DEC))
    for seat_type, whole in (("pro", Decimal("2.333333333")), ("basic", Decimal("4"))):
        assert quantity(month, "seats", seat_type=seat_type) == whole
        parts = (
            quantity(first, "seats", seat_type=seat_type),
            quantity(second, "seats", seat_type=seat_type),
        )
        assert parts[0] is not None and parts[1] is not None
        assert parts[0] + parts[1] == whole
    # 2 seats for 15 of 30 days: exactly 1 in the first half.
    assert quantity(first, "seats", seat_type="pro") == Decimal(1)


# -- unique counts and latest values --------------------------------------------------------


def test_unique_count_across_days_is_exact(warehouse: Warehouse, meters: MeterCatalog) -> None:
    load(
        warehouse,
        meters,
        [
            ev("u1", "active_users", "2026-11-02T08:00:00Z", user="ann", channel="chat"),
            ev("u2", "active_users", "2026-11-09T17:00:00Z", user="ann", channel="chat"),
            ev("u3", "active_users", "2026-11-09T18:00:00Z", user="bob", channel="chat"),
            ev("u4", "active_users", "2026-11-20T18:00:00Z", user="bob", channel="email"),
            ev("u5", "active_users", "2026-11-21T18:00:00Z", channel="chat"),  # no user
        ],
    )
    rows = both(warehouse, meters, start=NOV, end=DEC)
    assert rows == [
        QuantityRow("c1", "active_users", {"channel": "chat"}, Decimal(2), 4),
        QuantityRow("c1", "active_users", {"channel": "email"}, Decimal(1), 1),
    ]


def test_latest_carries_over_from_before_the_period(
    warehouse: Warehouse, meters: MeterCatalog
) -> None:
    load(
        warehouse,
        meters,
        [
            ev("b1", "balance", "2026-09-30T23:59:59.999Z", "12.5", account="a"),
            ev("b2", "balance", "2026-10-31T10:00:00Z", "-3.25", account="a"),
            ev("b3", "balance", "2026-11-10T10:00:00Z", "40", account="b"),
            ev("b4", "balance", "2026-11-10T11:00:00Z", "41", account="b"),
        ],
    )
    rows = both(warehouse, meters, start=NOV, end=DEC)
    assert rows == [
        QuantityRow("c1", "balance", {"account": "a"}, Decimal("-3.25"), 0),
        QuantityRow("c1", "balance", {"account": "b"}, Decimal(41), 2),
    ]
    # Ending before b4's hour: b3 is the latest.
    end = datetime(2026, 11, 10, 11, tzinfo=UTC)
    assert quantity(both(warehouse, meters, start=NOV, end=end), "balance", account="b") == Decimal(
        40
    )


def test_filter_dimensions_and_other_properties(warehouse: Warehouse, meters: MeterCatalog) -> None:
    load(
        warehouse,
        meters,
        [
            ev("m1", "messages", "2026-11-03T01:00:00Z", channel="chat", tier="paid"),
            ev("m2", "messages", "2026-11-03T02:00:00Z", channel="chat", tier="free"),
            ev("m3", "messages", "2026-11-03T03:00:00Z", channel="email"),
            ev("p1", "paid_messages", "2026-11-03T01:00:00Z", channel="chat", tier="paid"),
            ev("p2", "paid_messages", "2026-11-03T02:00:00Z", channel="chat", tier="free"),
            ev("p3", "paid_messages", "2026-11-03T03:00:00Z", channel="email"),
            ev("a1", "api_calls", "2026-11-03T03:00:00Z", "1.5", region="eu", note="x"),
            ev("a2", "api_calls", "2026-11-03T04:00:00Z", "2.25", region="eu", note="y"),
        ],
    )
    rows = both(warehouse, meters, start=NOV, end=DEC)
    assert [(r.meter, r.dimensions, r.quantity, r.events) for r in rows] == [
        ("api_calls", {"region": "eu"}, Decimal("3.75"), 2),
        ("messages", {"channel": "chat"}, Decimal(2), 2),
        ("messages", {"channel": "email"}, Decimal(1), 1),
        ("paid_messages", {"channel": "chat"}, Decimal(1), 1),
    ]


def test_filter_must_name_a_declared_property_and_value() -> None:
    base = {"name": "m", "aggregation": "count", "properties": {"tier": ["free", "paid"]}}
    with pytest.raises(CatalogError, match="not one of the meter's properties"):
        meters_from_dict({"meters": [{**base, "filter": {"plan": "x"}}]})
    with pytest.raises(CatalogError, match="can never match"):
        meters_from_dict({"meters": [{**base, "filter": {"tier": "gold"}}]})
    assert meters_from_dict({"meters": [{**base, "filter": {"tier": "paid"}}]}).get("m").filter == {
        "tier": "paid"
    }


def test_customer_selection(warehouse: Warehouse, meters: MeterCatalog) -> None:
    load(
        warehouse,
        meters,
        [
            ev("x1", "peak_storage", "2026-11-03T01:00:00Z", 5, customer="c1"),
            ev("x2", "peak_storage", "2026-11-03T01:00:00Z", 9, customer="c2"),
            ev("x3", "peak_storage", "2026-11-04T01:00:00Z", 7, customer="c2"),
        ],
    )
    assert [(r.customer_id, r.quantity) for r in both(warehouse, meters, start=NOV, end=DEC)] == [
        ("c1", Decimal(5)),
        ("c2", Decimal(9)),
    ]
    only = both(warehouse, meters, start=NOV, end=DEC, customer_ids=["c2", "c9"])
    assert [(r.customer_id, r.quantity, r.events) for r in only] == [("c2", Decimal(9), 2)]
    assert both(warehouse, meters, start=NOV, end=DEC, customer_ids=[]) == []


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(2026, 11, 1), DEC, "timezone-aware"),
        (NOV, datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "whole UTC hour"),
        # Midnight in India is 18:30 UTC: not a whole UTC hour.
        (
            datetime(2026, 11, 1, tzinfo=ZoneInfo("Asia/Kolkata")),
            datetime(2026, 12, 1, tzinfo=ZoneInfo("Asia/Kolkata")),
            "whole UTC hour",
        ),
        (DEC, NOV, "empty window"),
        (NOV, NOV, "empty window"),
    ],
)
def test_windows_must_be_aware_whole_hours(
    warehouse: Warehouse, meters: MeterCatalog, start: datetime, end: datetime, message: str
) -> None:
    for engine in (period_quantities, raw_period_quantities):
        with pytest.raises(ValueError, match=message):
            engine(warehouse, meters, start=start, end=end)


# -- the rollup equals the raw events, on random data ---------------------------------------

RANGE_START = datetime(2026, 10, 22, tzinfo=UTC)
RANGE_DAYS = 14
ZONES = ("UTC", "America/New_York", "Europe/Dublin", "America/Los_Angeles", "Asia/Tokyo")


def random_events(rng: random.Random, n: int) -> list[dict[str, Any]]:
    customers = [f"cus_{i}" for i in range(4)]
    span_ms = RANGE_DAYS * 86_400_000
    events = []
    previous_at: dict[str, str] = {}
    for i in range(n):
        meter = rng.choice(
            [
                "api_calls",
                "messages",
                "paid_messages",
                "peak_storage",
                "active_users",
                "balance",
                "seats",
                "seats",
            ]
        )
        customer = rng.choice(customers)
        roll = rng.random()
        if roll < 0.08 and meter in previous_at:  # the same millisecond as another event
            at = previous_at[meter]
        else:
            ms = rng.randrange(span_ms)
            if roll < 0.2:  # on an hour or a day boundary
                ms -= ms % rng.choice([3_600_000, 86_400_000])
            moment = RANGE_START + timedelta(milliseconds=ms)
            at = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        previous_at[meter] = at
        scale = rng.choice([0, 0, 2, 9])
        value = Decimal(rng.randrange(0, 10**6)).scaleb(-scale)
        props: dict[str, str] = {}
        if meter == "api_calls":
            props = {"region": rng.choice(["eu", "us"]), "note": str(rng.randrange(5))}
        elif meter in ("messages", "paid_messages"):
            props = {"channel": rng.choice(["chat", "email"]), "tier": rng.choice(["free", "paid"])}
        elif meter == "active_users":
            props = {"channel": rng.choice(["chat", "email"]), "user": f"u{rng.randrange(12)}"}
        elif meter == "balance":
            props = {"account": rng.choice(["a", "b"])}
            value = -value if rng.random() < 0.3 else value
        elif meter == "seats":
            props = {"seat_type": rng.choice(["basic", "pro"]), "note": str(rng.randrange(3))}
            value = Decimal(rng.choice([0, 1, 2, 3, 5, 8])) + (
                Decimal("0.5") if rng.random() < 0.1 else 0
            )
        # Drop a property now and then: missing dimensions, users and filter keys.
        if props and rng.random() < 0.1:
            props.pop(rng.choice(sorted(props)))
        events.append(ev(f"e{i}", meter, at, value, customer, **props))
    return events


def random_windows(rng: random.Random) -> list[dict[str, Any]]:
    windows: list[dict[str, Any]] = []
    first_hour = RANGE_START - timedelta(days=2)
    hours = (RANGE_DAYS + 4) * 24
    for _ in range(14):
        start = first_hour + timedelta(hours=rng.randrange(hours))
        end = start + timedelta(hours=rng.choice([1, 2, 5, 24, 49, 24 * 7, rng.randrange(1, 400)]))
        window: dict[str, Any] = {"start": start, "end": end}
        if rng.random() < 0.3:
            window["customer_ids"] = rng.sample([f"cus_{i}" for i in range(5)], 2)
        if rng.random() < 0.3:
            window["normalize_to"] = (
                start - timedelta(hours=rng.randrange(48)),
                end + timedelta(days=rng.randrange(30)),
            )
        windows.append(window)
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        # Local days and a local "month" of the range; Dublin and New York change from
        # summer time within it (25 October and 1 November 2026).
        day = (RANGE_START + timedelta(days=rng.randrange(RANGE_DAYS))).date()
        local = datetime(day.year, day.month, day.day, tzinfo=zone)
        windows.append({"start": local, "end": local + timedelta(days=1)})
        period_start = datetime(2026, 10, 23, tzinfo=zone)
        period_end = datetime(2026, 11, 3, tzinfo=zone)
        windows.append({"start": period_start, "end": period_end})
        windows.append(
            {
                "start": period_start,
                "end": datetime(2026, 10, 28, tzinfo=zone),
                "normalize_to": (period_start, period_end),
            }
        )
    return windows


@pytest.mark.server_subset("1")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollup_equals_raw_events_on_random_data(
    warehouse: Warehouse, meters: MeterCatalog, seed: int
) -> None:
    rng = random.Random(seed)
    events = random_events(rng, 700)
    # Arrivals spread over the range, some late: each event arrives 0-3 days after it
    # happened, each rollup run rebuilds the dirty days, like the nightly run would.
    arrivals: dict[date, list[dict[str, Any]]] = {}
    for e in events:
        at = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        arrivals.setdefault(at.date() + timedelta(days=rng.choice([1, 1, 1, 2, 4])), []).append(e)
    for night, batch in sorted(arrivals.items()):
        ingested_at = datetime(night.year, night.month, night.day, 0, 30, tzinfo=UTC)
        assert ingest_events(
            warehouse, meters, batch, ingested_at=ingested_at
        ).total.accepted == len(batch)
        for day in dirty_days(warehouse, up_to=night - timedelta(days=1)):
            rebuild_day(warehouse, meters, day)
    for day in dirty_days(warehouse, up_to=date(2027, 1, 1)):
        rebuild_day(warehouse, meters, day)

    seen_meters: set[str] = set()
    for window in random_windows(rng):
        start_utc = window["start"].astimezone(UTC)
        assert (start_utc.minute, start_utc.second) == (0, 0)
        rolled = period_quantities(warehouse, meters, **window)
        raw = raw_period_quantities(warehouse, meters, **window)
        assert rolled == raw, window
        seen_meters |= {r.meter for r in rolled}
    assert seen_meters == set(meters.meters)
