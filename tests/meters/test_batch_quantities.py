"""Many windows in one read: `batch_quantities` gives, for each request, exactly what
one `period_quantities` / `raw_period_quantities` call per window gives, however the
(customer, window) pairs are cut into queries."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from meters.catalog import MeterCatalog, meters_from_dict
from meters.ingest.ingestor import ingest_events
from meters.quantities import (
    WindowRequest,
    batch_quantities,
    period_quantities,
    raw_period_quantities,
)
from meters.rollup import dirty_days, rebuild_day
from meters.warehouse.base import Warehouse
from tests.meters.test_quantities import TEST_METERS, random_events, random_windows

CUSTOMERS = [f"cus_{i}" for i in range(5)]


@pytest.fixture(scope="module")
def meters() -> MeterCatalog:
    return meters_from_dict(TEST_METERS, "test")


def loaded(wh: Warehouse, catalog: MeterCatalog, rng: random.Random) -> None:
    events = random_events(rng, 600)
    ingested = ingest_events(wh, catalog, events, ingested_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert ingested.total.accepted == len(events)
    for day in dirty_days(wh, up_to=date(2027, 1, 1)):
        rebuild_day(wh, catalog, day)


def requests_of(rng: random.Random) -> list[WindowRequest]:
    """Random windows (some shared by several requests with other customers or another
    normalization period), each for a random set of customers, some unknown."""
    out = []
    for window in random_windows(rng):
        customers = frozenset(rng.sample([*CUSTOMERS, "nobody"], rng.randrange(0, 4)))
        out.append(
            WindowRequest(window["start"], window["end"], customers, window.get("normalize_to"))
        )
        if rng.random() < 0.3:
            norm = (window["start"], window["end"] + timedelta(days=3))
            out.append(WindowRequest(window["start"], window["end"], frozenset(CUSTOMERS), norm))
    return out


@pytest.mark.parametrize("seed", [11, 12])
def test_batch_equals_one_query_per_window(
    warehouse: Warehouse, meters: MeterCatalog, seed: int
) -> None:
    rng = random.Random(seed)
    loaded(warehouse, meters, rng)
    requests = requests_of(rng)
    assert len({(r.start, r.end) for r in requests}) > 10
    one_by_one = [
        period_quantities(
            warehouse,
            meters,
            start=r.start,
            end=r.end,
            customer_ids=sorted(r.customer_ids or ()),
            normalize_to=r.normalize_to,
        )
        for r in requests
    ]
    assert sum(len(rows) for rows in one_by_one) > 50
    # One query for all pairs, and pairs cut into many small queries.
    assert batch_quantities(warehouse, meters, requests) == one_by_one
    assert batch_quantities(warehouse, meters, requests, pairs_per_query=3) == one_by_one
    # The raw events give the same, batched too.
    assert batch_quantities(warehouse, meters, requests, raw=True, pairs_per_query=4) == one_by_one
    first = requests[0]
    assert raw_period_quantities(
        warehouse,
        meters,
        start=first.start,
        end=first.end,
        customer_ids=sorted(first.customer_ids or ()),
        normalize_to=first.normalize_to,
    ) == one_by_one[0]


def test_every_customer_is_a_request_of_its_own(
    warehouse: Warehouse, meters: MeterCatalog
) -> None:
    rng = random.Random(5)
    loaded(warehouse, meters, rng)
    start, end = datetime(2026, 10, 25, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    everyone = batch_quantities(warehouse, meters, [WindowRequest(start, end)])[0]
    assert {r.customer_id for r in everyone} == set(CUSTOMERS[:4])
    assert everyone == period_quantities(warehouse, meters, start=start, end=end)
    with pytest.raises(ValueError, match="only request"):
        batch_quantities(
            warehouse,
            meters,
            [WindowRequest(start, end), WindowRequest(start, end, frozenset(CUSTOMERS))],
        )
    assert batch_quantities(warehouse, meters, []) == []
