"""Invariant 1: an event counts exactly once, within a file, across files, across runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from meters.catalog import MeterCatalog
from meters.ingest import ingestor
from meters.ingest.events import Event
from meters.ingest.ingestor import IngestOptions, ingest_events, ingest_files
from meters.warehouse.base import Warehouse

AT = datetime(2026, 11, 25, tzinfo=UTC)


def event(eid: str, **over: Any) -> dict[str, Any]:
    base = {
        "event_id": eid,
        "customer_id": "cus_1",
        "meter": "fin_resolution",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"channel": "chat"},
    }
    base.update(over)
    return base


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def table_state(wh: Warehouse) -> tuple[Any, ...]:
    return (
        wh.query_rows(
            "SELECT event_id, customer_id, meter, timestamp, value, properties FROM usage_events FINAL ORDER BY event_id"
        ),
        wh.query_rows("SELECT count() FROM usage_events")[0][0],
        wh.query_rows("SELECT count() FROM usage_event_ids")[0][0],
    )


def test_exact_copy_in_same_file_is_a_duplicate(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "a.jsonl",
        [event("e1"), event("e1", timestamp="2026-11-20T10:00:00.000Z"), event("e2")],
    )
    total = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    assert (total.received, total.accepted, total.duplicates, total.rejected) == (3, 2, 1, 0)


def test_conflicting_copy_is_rejected_and_first_copy_stands(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = write(tmp_path / "a.jsonl", [event("e1"), event("e1", properties={"channel": "email"})])
    total = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    assert (total.accepted, total.duplicates, total.rejected) == (1, 0, 1)
    assert total.rejected_by_reason == {"conflicting_duplicate": 1}
    ((line, detail, raw),) = warehouse.query_rows(
        "SELECT source_line, detail, raw FROM usage_events_rejected"
    )
    assert line == 2 and "line 1" in detail and "email" in raw
    assert warehouse.query_rows("SELECT properties FROM usage_events") == [([("channel", "chat")],)]


@pytest.fixture(params=["by_index", "by_hash"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a batch looks up the ids earlier ingests accepted (ingest/classify.sql): a
    small batch along the sort key, a large one by the ids' hashes (here every batch)."""
    if request.param == "by_hash":
        monkeypatch.setattr(ingestor, "BY_HASH_ABOVE_ROWS", 0)
    return str(request.param)


def test_duplicates_across_files_and_runs(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, lookup: str
) -> None:
    day1 = write(tmp_path / "day1.jsonl", [event("e1"), event("e2")])
    day2 = write(tmp_path / "day2.jsonl", [event("e2"), event("e3"), event("e1", value="2")])
    total = ingest_files(warehouse, catalog, [day1, day2], ingested_at=AT).total
    assert (total.accepted, total.duplicates, total.rejected) == (3, 1, 1)

    later = write(
        tmp_path / "resent.jsonl", [event("e3"), event("e3", customer_id="cus_2"), event("e4")]
    )
    summary = ingest_files(warehouse, catalog, [later], ingested_at=AT)
    total = summary.total
    assert (total.accepted, total.duplicates, total.rejected) == (1, 1, 1)
    detail = warehouse.query_rows(
        "SELECT detail FROM usage_events_rejected WHERE ingest_id = {i:String}",
        {"i": summary.ingest_id},
    )[0][0]
    assert "already accepted" in detail
    assert sorted(r[0] for r in warehouse.query_rows("SELECT event_id FROM usage_events")) == [
        "e1",
        "e2",
        "e3",
        "e4",
    ]


def test_rerun_of_the_same_files_changes_nothing(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, lookup: str
) -> None:
    rows = [event(f"e{i}", value=str(i)) for i in range(50)] + [event("e7", value="999")]
    path = write(tmp_path / "a.jsonl", rows)
    first = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    before = table_state(warehouse)
    again = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    assert (first.accepted, first.rejected) == (50, 1)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 50, 1)
    assert table_state(warehouse) == before


@pytest.mark.single_warehouse  # batching is ours, not the backend's: chDB only
def test_batch_size_does_not_change_the_outcome(
    chdb_folder: Path, catalog: MeterCatalog, tmp_path: Path
) -> None:
    from tests.conftest import fresh_warehouse

    rows = [event(f"e{i % 40}", value=str(i % 40 if i % 7 else i)) for i in range(120)]
    path = write(tmp_path / "a.jsonl", rows)
    results = []
    for batch_rows in (1000, 7):
        with fresh_warehouse(chdb_folder) as wh:
            total = ingest_files(
                wh, catalog, [path], ingested_at=AT, options=IngestOptions(batch_rows=batch_rows)
            ).total
            results.append(((total.accepted, total.duplicates, total.rejected), table_state(wh)[0]))
    assert results[0] == results[1]


def test_python_api(warehouse: Warehouse, catalog: MeterCatalog) -> None:
    at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    events = [
        Event(
            event_id="a1",
            customer_id="c",
            meter="seats",
            timestamp=at,
            value=Decimal("3"),
            properties={"seat_type": "expert"},
        ),
        event("a2"),
        {"event_id": "a3", "customer_id": "c", "meter": "nope", "timestamp": at},
    ]
    total = ingest_events(warehouse, catalog, events, source="unit-test", ingested_at=AT).total
    assert (total.received, total.accepted, total.rejected) == (3, 2, 1)
    assert warehouse.query_rows("SELECT source FROM usage_events_rejected") == [("unit-test",)]
    with pytest.raises(ValidationError, match="float"):
        Event(event_id="x", customer_id="c", meter="seats", timestamp=at, value=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timezone"):
        Event(event_id="x", customer_id="c", meter="seats", timestamp=datetime(2026, 1, 1))
