"""Live quantities (meters.quantities.LiveCut, the usage and preview of issue 17): the
rollup where it holds a customer's events, the rollup's own build queries over the raw
events elsewhere, close's window and gauge queries over both. Whatever was rolled up, and
whenever, the numbers are those of the raw events before the instant asked.

Seeded random events (tests/meters/test_quantities.py's: every aggregation, filters,
dimensions, unique counts, gauges, same-millisecond events) arrive late and in bursts;
some days are rolled up, some never, some rolled up before their late events. The oracle
is `raw_period_quantities` over a database holding only the events before the instant.
The random comparison runs on the embedded engine (CI's time); the small case on both
backends, since the live queries bind parameters of their own.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meters.catalog import MeterCatalog
from meters.ingest.ingestor import ingest_events
from meters.quantities import (
    LiveCut,
    WindowRequest,
    batch_quantities,
    live_cut,
    raw_period_quantities,
)
from meters.rollup import rebuild_day
from meters.warehouse.base import Warehouse
from tests.conftest import fresh_warehouse
from tests.meters.test_quantities import (
    RANGE_DAYS,
    RANGE_START,
    meters,  # noqa: F401  (the fixture)
    random_events,
    random_windows,
)

CUSTOMERS = [f"cus_{i}" for i in range(5)]


def at(doc: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00"))


def ingest(
    wh: Warehouse, catalog: MeterCatalog, docs: list[dict[str, Any]], when: datetime
) -> None:
    if docs:
        assert ingest_events(wh, catalog, docs, ingested_at=when).total.accepted == len(docs)


def live(wh: Warehouse, catalog: MeterCatalog, window: dict[str, Any], cut: LiveCut) -> list[Any]:
    customers = frozenset(window.get("customer_ids") or CUSTOMERS)
    request = WindowRequest(window["start"], window["end"], customers, window.get("normalize_to"))
    return batch_quantities(wh, catalog, [request], live=cut)[0]


def oracle(wh: Warehouse, catalog: MeterCatalog, window: dict[str, Any]) -> list[Any]:
    found = raw_period_quantities(wh, catalog, **window)
    if window.get("customer_ids") is None:
        return found
    return [r for r in found if r.customer_id in window["customer_ids"]]


@pytest.mark.single_warehouse
def test_live_quantities_equal_the_raw_events_before_the_instant(
    warehouse: Warehouse,
    meters: MeterCatalog,  # noqa: F811
    chdb_folder: Path,
) -> None:
    rng = random.Random(17)
    events = random_events(rng, 400)
    days = [RANGE_START.date() + timedelta(days=n) for n in range(RANGE_DAYS)]
    # First delivery: most events, on their next morning; then some days are rolled up.
    late = [e for e in events if rng.random() < 0.15]
    on_time = [e for e in events if e not in late]
    ingest(warehouse, meters, on_time, datetime(2026, 11, 6, tzinfo=UTC))
    rolled = [d for d in days if rng.random() < 0.7]
    for d in rolled:
        rebuild_day(warehouse, meters, d)
    # Late events after the rollup: their days are stale for their customers only.
    ingest(warehouse, meters, late, datetime(2026, 11, 7, tzinfo=UTC))
    assert rolled and len(rolled) < len(days)

    end_of_data = RANGE_START + timedelta(days=RANGE_DAYS + 6)
    instants = [
        end_of_data,  # after every event: the live read is the raw events'
        RANGE_START + timedelta(days=5, hours=13),  # a whole hour
        RANGE_START + timedelta(days=9, hours=7, minutes=41, seconds=5),  # inside an hour
    ]
    windows = random_windows(rng)
    windows = rng.sample(windows, 12)
    checked = 0
    for until in instants:
        kept = [e for e in events if at(e) < until]
        cut = live_cut(
            warehouse,
            meters,
            CUSTOMERS,
            since=RANGE_START - timedelta(days=3),
            until=until,
        )
        assert cut.watermark == datetime(2026, 11, 7, tzinfo=UTC)
        with fresh_warehouse(chdb_folder) as before:
            ingest(before, meters, kept, datetime(2026, 11, 7, tzinfo=UTC))
            for window in windows:
                # Any window: after the instant, both hold only the gauges' last levels.
                assert live(warehouse, meters, window, cut) == oracle(before, meters, window), (
                    until,
                    window,
                    cut,
                )
                checked += 1
    assert checked == 3 * 12


def test_what_a_cut_reads_raw(warehouse: Warehouse, meters: MeterCatalog) -> None:  # noqa: F811
    """The days read raw are per customer and per kind of meter: a day is raw for a
    customer when its rollup misses events of theirs, and the day of the instant asked
    when they have events on it before then."""

    def doc(eid: str, meter: str, when: str, customer: str, **props: str) -> dict[str, Any]:
        return {
            "event_id": eid,
            "customer_id": customer,
            "meter": meter,
            "timestamp": when,
            "value": "2",
            "properties": props,
        }

    ingest(
        warehouse,
        meters,
        [
            doc("a1", "messages", "2026-11-02T10:00:00Z", "a", channel="chat"),
            doc("a2", "seats", "2026-11-03T10:00:00Z", "a", seat_type="pro"),
            doc("b1", "messages", "2026-11-02T11:00:00Z", "b", channel="chat"),
            doc("a3", "messages", "2026-11-05T09:00:00Z", "a", channel="chat"),
        ],
        datetime(2026, 11, 6, tzinfo=UTC),
    )
    rebuild_day(warehouse, meters, date(2026, 11, 2))
    rebuild_day(warehouse, meters, date(2026, 11, 5))
    # Nov 3 never rolled up; a late message of b's on the rolled-up Nov 2.
    ingest(
        warehouse,
        meters,
        [doc("b2", "messages", "2026-11-02T12:00:00Z", "b", channel="email")],
        datetime(2026, 11, 7, tzinfo=UTC),
    )
    since = datetime(2026, 11, 1, tzinfo=UTC)

    def cut(customer: str, until: str) -> LiveCut:
        moment = datetime.fromisoformat(until.replace("Z", "+00:00"))
        return live_cut(warehouse, meters, [customer], since=since, until=moment)

    a = cut("a", "2026-11-05T12:00:00Z")
    assert (a.window_days, a.gauge_days) == ((date(2026, 11, 5),), (date(2026, 11, 3),))
    assert a.raw_days == (date(2026, 11, 3), date(2026, 11, 5))
    assert a.rolled_up_through == datetime(2026, 11, 3, tzinfo=UTC)
    assert a.rolled_end == datetime(2026, 11, 5, tzinfo=UTC)
    # Before a's Nov 5 event, that day holds nothing of a's yet: read from the rollup.
    assert cut("a", "2026-11-05T08:00:00Z").window_days == ()
    b = cut("b", "2026-11-06T00:00:00Z")
    assert (b.window_days, b.gauge_days) == ((date(2026, 11, 2),), ())
    assert b.watermark == datetime(2026, 11, 7, tzinfo=UTC)
    nobody = cut("nobody", "2026-11-06T00:00:00Z")
    assert nobody.raw_days == () and nobody.rolled_up_through == nobody.until

    # Through the live queries, on both backends: a's message of Nov 5 (its rolled-up
    # day, read raw up to 12:00) and its seats set on the never rolled up Nov 3.
    def read(start: datetime) -> set[tuple[str, Decimal, int]]:
        request = WindowRequest(start, a.until, frozenset({"a"}), None)
        rows = batch_quantities(warehouse, meters, [request], live=a)[0]
        return {(r.meter, r.quantity, r.events) for r in rows}

    # Nov 4 00:00 .. Nov 5 12:00: one message; 2 seats carried in, held throughout.
    assert read(datetime(2026, 11, 4, tzinfo=UTC)) == {
        ("messages", Decimal(1), 1),
        ("seats", Decimal(2), 0),
    }
    # Nov 2 00:00 .. Nov 5 12:00 (84 h): both messages; 2 seats from Nov 3 10:00, 50 h:
    # 2 x 50 / 84 = 1.190476190 (9 places).
    assert read(datetime(2026, 11, 2, tzinfo=UTC)) == {
        ("messages", Decimal(2), 2),
        ("seats", Decimal("1.190476190"), 1),
    }
