"""Invariant 3: a day's rollup is rebuilt atomically, identically, and late events make
exactly their day dirty."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import meters.rollup
from meters.catalog import MeterCatalog, meters_from_dict
from meters.ingest.ingestor import ingest_events
from meters.quantities import period_quantities, raw_period_quantities
from meters.rollup import dirty_days, partition_of, rebuild_day
from meters.warehouse.base import Warehouse

D1, D2, D3 = date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)
FIRST_NIGHT = datetime(2026, 11, 5, 0, 30, tzinfo=UTC)


def ev(
    eid: str, at: str, meter: str = "fin_resolution", value: str = "1", **props: str
) -> dict[str, Any]:
    return {
        "event_id": eid,
        "customer_id": "cus_1" if int(eid[1:]) % 3 else "cus_2",
        "meter": meter,
        "timestamp": at,
        "value": value,
        "properties": props
        or ({"channel": "chat"} if meter == "fin_resolution" else {"seat_type": "expert"}),
    }


def three_days() -> list[dict[str, Any]]:
    out = []
    for n, day in enumerate((D1, D2, D3)):
        for i in range(30):
            at = f"{day.isoformat()}T{(i * 7) % 24:02d}:{(i * 13) % 60:02d}:00.{i:03d}Z"
            channel = ("chat", "email", "phone")[i % 3]
            out.append(ev(f"e{n * 100 + i}", at, channel=channel))
        out.append(
            ev(f"s{n}", f"{day.isoformat()}T09:00:00Z", "seats", str(n + 2), seat_type="advanced")
        )
    return out


SNAPSHOT = """
SELECT _partition_id, toString(hour), customer_id, meter, toString(dimensions), events,
       value_sum, value_max, finalizeAggregation(unique_state),
       toString(finalizeAggregation(latest_state)), first_at, tw_integral, max_ingested_at
FROM usage_rollup ORDER BY ALL
"""


def snapshot(wh: Warehouse) -> list[tuple[Any, ...]]:
    return wh.query_rows(SNAPSHOT)


def partition_rows(wh: Warehouse, day: date) -> list[tuple[Any, ...]]:
    return [r[1:] for r in snapshot(wh) if r[0] == str(partition_of(day))]


def active_parts(wh: Warehouse, day: date) -> list[str]:
    rows = wh.query_rows(
        "SELECT name FROM system.parts WHERE database = currentDatabase() "
        "AND table = 'usage_rollup' AND active AND partition_id = {p:String} ORDER BY name",
        {"p": str(partition_of(day))},
    )
    return [r[0] for r in rows]


def state(wh: Warehouse) -> list[tuple[Any, ...]]:
    return wh.query_rows(
        "SELECT day, watermark, raw_rows, events, rollup_rows FROM rollup_state FINAL ORDER BY day"
    )


@pytest.fixture
def rolled(warehouse: Warehouse, catalog: MeterCatalog) -> Warehouse:
    """Three days ingested the night after the last one, and rolled up."""
    total = ingest_events(warehouse, catalog, three_days(), ingested_at=FIRST_NIGHT).total
    assert total.accepted == 93
    assert dirty_days(warehouse, up_to=D3) == [D1, D2, D3]
    for day in (D1, D2, D3):
        result = rebuild_day(warehouse, catalog, day)
        assert (result.raw_rows, result.events, result.watermark) == (31, 31, FIRST_NIGHT)
    assert dirty_days(warehouse, up_to=D3) == []
    return warehouse


def test_rerunning_a_day_gives_identical_rows(rolled: Warehouse, catalog: MeterCatalog) -> None:
    before = snapshot(rolled)
    assert len({r[0] for r in before}) == 3 and len(before) > 30
    for day in (D2, D1, D3, D2):
        rebuild_day(rolled, catalog, day)
    assert snapshot(rolled) == before
    # One state row per day, the latest version wins.
    assert [r[0] for r in state(rolled)] == [D1, D2, D3]


def test_rows_are_split_by_declared_dimensions_only(
    warehouse: Warehouse, catalog: MeterCatalog
) -> None:
    events = [
        ev("e1", "2026-11-02T10:00:00Z", channel="chat"),
        ev("e2", "2026-11-02T10:10:00Z", channel="chat"),
        ev("e4", "2026-11-02T10:20:00Z", channel="email"),
    ]
    ingest_events(warehouse, catalog, events, ingested_at=FIRST_NIGHT)
    rebuild_day(warehouse, catalog, D1)
    rows = warehouse.query_rows(
        "SELECT customer_id, toString(dimensions), events FROM usage_rollup ORDER BY ALL"
    )
    assert rows == [("cus_1", "{'channel':'chat'}", 2), ("cus_1", "{'channel':'email'}", 1)]


def test_a_late_event_dirties_only_its_day(rolled: Warehouse, catalog: MeterCatalog) -> None:
    before = {day: partition_rows(rolled, day) for day in (D1, D2, D3)}
    parts = {day: active_parts(rolled, day) for day in (D1, D2, D3)}
    late_night = FIRST_NIGHT + timedelta(days=3)
    ingest_events(
        rolled,
        catalog,
        [ev("e999", "2026-11-03T23:59:59.999Z", channel="sms")],
        ingested_at=late_night,
    )

    assert dirty_days(rolled, up_to=D3) == [D2]
    assert dirty_days(rolled, up_to=D1) == []
    result = rebuild_day(rolled, catalog, D2)
    assert (result.watermark, result.raw_rows, result.events) == (late_night, 32, 32)
    assert dirty_days(rolled, up_to=D3) == []

    # Only D2's partition changed; the others were not even rewritten.
    after = partition_rows(rolled, D2)
    assert len(after) == len(before[D2]) + 1
    assert next(r for r in after if "sms" in r[3])[4] == 1
    for day in (D1, D3):
        assert partition_rows(rolled, day) == before[day]
        assert active_parts(rolled, day) == parts[day]


def test_an_event_ingested_with_an_earlier_clock_still_dirties_its_day(
    rolled: Warehouse, catalog: MeterCatalog
) -> None:
    # Same ingest time as the watermark (a backfill with a fixed clock): the raw row
    # count tells the day changed.
    ingest_events(
        rolled,
        catalog,
        [ev("e500", "2026-11-04T05:00:00Z", channel="chat")],
        ingested_at=FIRST_NIGHT,
    )
    assert dirty_days(rolled, up_to=D3) == [D3]
    rebuild_day(rolled, catalog, D3)
    assert dirty_days(rolled, up_to=D3) == []


def test_a_crash_before_the_swap_leaves_the_old_state(
    rolled: Warehouse, catalog: MeterCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, recorded = snapshot(rolled), state(rolled)
    ingest_events(
        rolled,
        catalog,
        [ev(f"e{700 + i}", "2026-11-03T12:00:00Z", channel="phone") for i in range(5)],
        ingested_at=FIRST_NIGHT + timedelta(days=1),
    )

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed between the staging build and REPLACE PARTITION")

    built = []
    original_build = meters.rollup.build_staging

    def build_then_remember(*args: Any, **kwargs: Any) -> Any:
        out = original_build(*args, **kwargs)
        built.append(rolled.query_rows(f"SELECT count() FROM {args[3]}")[0][0])
        return out

    monkeypatch.setattr(meters.rollup, "build_staging", build_then_remember)
    monkeypatch.setattr(meters.rollup, "swap_in", crash)
    with pytest.raises(RuntimeError, match="killed"):
        rebuild_day(rolled, catalog, D2)
    assert built and built[0] > 0  # the new day was fully built beside the live table
    assert snapshot(rolled) == before
    assert state(rolled) == recorded
    assert dirty_days(rolled, up_to=D3) == [D2]  # so the next run rebuilds it

    monkeypatch.undo()
    rebuild_day(rolled, catalog, D2)
    assert dirty_days(rolled, up_to=D3) == []
    assert sum(r[4] for r in partition_rows(rolled, D2)) == 36


def test_a_day_without_events_ends_with_an_empty_partition(
    rolled: Warehouse, catalog: MeterCatalog
) -> None:
    rolled.command(
        "ALTER TABLE usage_events DELETE WHERE toDate(timestamp) = {d:Date}",
        {"d": D3},
        settings={"mutations_sync": 2},
    )
    assert dirty_days(rolled, up_to=D3) == [D3]  # its rows went away
    result = rebuild_day(rolled, catalog, D3)
    assert (result.raw_rows, result.events, result.rollup_rows, result.watermark) == (0, 0, 0, None)
    assert partition_rows(rolled, D3) == []
    assert partition_rows(rolled, D2) != []
    assert dirty_days(rolled, up_to=D3) == []
    # And a day that never had any rollup is a no-op.
    assert rebuild_day(rolled, catalog, date(2026, 11, 20)).rollup_rows == 0


def test_changed_meter_definitions_dirty_the_days_when_asked(
    rolled: Warehouse, catalog: MeterCatalog
) -> None:
    assert dirty_days(rolled, up_to=D3, catalog=catalog) == []
    doc = {
        "meters": [
            {**m.model_dump(mode="json"), "filter": {"channel": "chat"}}
            if m.name == "fin_resolution"
            else m.model_dump(mode="json")
            for m in catalog.meters.values()
        ]
    }
    changed = meters_from_dict(doc, "changed")
    assert dirty_days(rolled, up_to=D3, catalog=changed) == [D1, D2, D3]
    assert dirty_days(rolled, up_to=D3) == []  # by events alone nothing changed
    assert dirty_days(rolled, up_to=D3, since=D2, catalog=changed) == [D2, D3]

    rebuild_day(rolled, changed, D1)
    assert dirty_days(rolled, up_to=D3, catalog=changed) == [D2, D3]
    rows = partition_rows(rolled, D1)
    assert {r[3] for r in rows if r[2] == "fin_resolution"} == {"{'channel':'chat'}"}


def test_rollup_quantities_match_raw_after_rebuilds(
    rolled: Warehouse, catalog: MeterCatalog
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 12, 1, tzinfo=UTC)
    rows = period_quantities(rolled, catalog, start=start, end=end)
    assert rows == raw_period_quantities(rolled, catalog, start=start, end=end)
    assert sum(r.events for r in rows if r.meter == "fin_resolution") == 90


def _counters(note_declared: bool) -> MeterCatalog:
    props: dict[str, Any] = {"region": ["eu", "us"], "tier": ["free", "paid"]}
    if note_declared:
        props["note"] = None
    dims = ["region", "tier"]
    return meters_from_dict(
        {
            "meters": [
                {"name": "calls", "aggregation": "sum", "properties": props, "dimensions": dims},
                {
                    "name": "requests",
                    "aggregation": "count",
                    "properties": props,
                    "dimensions": dims,
                },
                {"name": "peak", "aggregation": "max", "properties": props, "dimensions": dims},
                {
                    "name": "paid_requests",
                    "aggregation": "count",
                    "properties": props,
                    "dimensions": dims,
                    "filter": {"tier": "paid"},
                },
            ]
        },
        "counters",
    )


def test_counters_grouped_by_stored_properties_fold_to_their_dimensions(
    warehouse: Warehouse,
) -> None:
    """Counter meters whose declared properties are all dimensions are grouped by the
    stored properties first, then folded to dimensions: events that carry a property the
    catalog no longer declares (a `note`, ingested under an older catalog) must land in
    the same rows, with the same filter, as when dimensions are computed per event."""
    with_note, without_note = _counters(note_declared=True), _counters(note_declared=False)
    assert meters.rollup.build_params(without_note)["grouped_meters"] == [
        "calls", "paid_requests", "peak", "requests"
    ]  # fmt: skip
    assert meters.rollup.build_params(with_note)["grouped_meters"] == []
    events = []
    for i in range(60):
        props = {"region": ("eu", "us")[i % 2], "tier": ("free", "paid")[i % 3 % 2]}
        if i % 4 == 0:
            props["note"] = f"n{i % 5}"
        if i % 7 == 0:
            del props["region"]  # a dimension missing: its own row
        for meter in ("calls", "requests", "peak", "paid_requests"):
            events.append(
                {
                    "event_id": f"{meter}-{i}",
                    "customer_id": f"cus_{i % 2}",
                    "meter": meter,
                    "timestamp": f"2026-11-02T{i % 3:02d}:{i % 60:02d}:00Z",
                    "value": str(i % 9 + 1),
                    "properties": props,
                }
            )
    total = ingest_events(warehouse, with_note, events, ingested_at=FIRST_NIGHT).total
    assert total.accepted == len(events)

    rebuild_day(warehouse, with_note, D1)  # per-event dimensions
    per_event = snapshot(warehouse)
    rebuild_day(warehouse, without_note, D1)  # grouped by properties, then folded
    assert snapshot(warehouse) == per_event
    assert {r[4] for r in per_event} == {
        "{'region':'eu','tier':'free'}", "{'region':'eu','tier':'paid'}",
        "{'region':'us','tier':'free'}", "{'region':'us','tier':'paid'}",
        "{'tier':'free'}", "{'tier':'paid'}",
    }  # fmt: skip
    assert {r[4] for r in per_event if r[3] == "paid_requests"} <= {
        "{'region':'eu','tier':'paid'}", "{'region':'us','tier':'paid'}", "{'tier':'paid'}"
    }  # fmt: skip
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    rows = period_quantities(warehouse, without_note, start=start, end=end)
    assert rows == raw_period_quantities(warehouse, without_note, start=start, end=end)
    assert sum(r.events for r in rows if r.meter == "requests") == 60
