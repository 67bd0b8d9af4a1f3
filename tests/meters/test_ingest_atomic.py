"""Invariants 1 and 2 under the ingest journal: every accepted event is stored, exactly once,
and an ingest's stored rows and its log agree after any failure (meters/ingest/journal.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import meters.ingest.ingestor
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestOptions, ingest_events, ingest_files
from meters.ingest.journal import record, repair, run_state
from meters.warehouse.base import Warehouse

AT = datetime(2026, 11, 25, tzinfo=UTC)


def twin(eid: str) -> dict[str, Any]:
    """Events that differ only in their id: two resolutions of one customer in one ms."""
    return {
        "event_id": eid,
        "customer_id": "cus_1",
        "meter": "fin_resolution",
        "timestamp": "2026-11-20T10:00:00.123Z",
        "value": "1",
        "properties": {"channel": "chat"},
    }


def books(wh: Warehouse) -> tuple[int, int, int, int]:
    """(stored events, stored ids, logged accepted, ingest scratch tables)."""
    return (
        wh.query_rows("SELECT count() FROM usage_events")[0][0],
        wh.query_rows("SELECT count() FROM usage_event_ids")[0][0],
        wh.query_rows("SELECT sum(accepted) FROM ingest_log")[0][0],
        wh.query_rows(
            "SELECT count() FROM system.tables WHERE database = currentDatabase() "
            "AND startsWith(name, '_ingest_')"
        )[0][0],
    )


def test_identical_content_in_separate_ingests_is_stored_twice(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    for i, name in enumerate(("a", "b")):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(twin(f"twin-{i}")) + "\n")
        total = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
        assert total.accepted == 1
    assert books(warehouse) == (2, 2, 2, 0)
    ids = warehouse.query_rows("SELECT event_id FROM usage_events ORDER BY event_id")
    assert ids == [("twin-0",), ("twin-1",)]


def test_identical_content_in_many_one_event_ingests(
    warehouse: Warehouse, catalog: MeterCatalog
) -> None:
    for i in range(12):
        total = ingest_events(warehouse, catalog, [twin(f"e{i}")], ingested_at=AT).total
        assert total.accepted == 1
    assert books(warehouse) == (12, 12, 12, 0)
    # Re-sending one of them is a duplicate, not a new event.
    again = ingest_events(warehouse, catalog, [twin("e3")], ingested_at=AT).total
    assert (again.accepted, again.duplicates) == (0, 1)
    assert books(warehouse)[:2] == (12, 12)


def test_identical_content_in_one_ingest_across_batches(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "twins.jsonl"
    path.write_text("".join(json.dumps(twin(f"t{i}")) + "\n" for i in range(9)))
    total = ingest_files(
        warehouse, catalog, [path], ingested_at=AT, options=IngestOptions(batch_rows=1)
    ).total
    assert total.accepted == 9
    assert books(warehouse) == (9, 9, 9, 0)


def test_a_failing_ingest_leaves_nothing(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(twin(f"f{i}")) + "\n" for i in range(6)))
    original = meters.ingest.ingestor.Ingestor._log
    calls = []

    def failing_log(self: Any, source: str, counts: Any) -> None:
        calls.append(source)
        if len(calls) == 2:
            raise RuntimeError("boom")
        original(self, source, counts)

    monkeypatch.setattr(meters.ingest.ingestor.Ingestor, "_log", failing_log)
    with pytest.raises(RuntimeError, match="boom"):
        ingest_files(warehouse, catalog, [path], ingested_at=AT, options=IngestOptions(batch_rows=2))
    assert books(warehouse) == (0, 0, 0, 0)
    monkeypatch.undo()
    total = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    assert total.accepted == 6
    assert books(warehouse) == (6, 6, 6, 0)


def test_repair_rolls_back_a_dead_run(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    """A run left `started` by a process that died: the next ingest removes its rows."""
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(twin(f"d{i}")) + "\n" for i in range(5)))
    summary = ingest_files(warehouse, catalog, [path], ingested_at=AT)
    # As if the process had died just before its commit: its journal row says started.
    warehouse.command(
        "INSERT INTO ingest_runs SELECT ingest_id, ingested_at, heartbeat_at - toIntervalHour(1), "
        "owner, sources, min_ts, max_ts, 'started', version + 1 FROM ingest_runs FINAL "
        "WHERE ingest_id = {id:String}",
        {"id": summary.ingest_id},
    )
    warehouse.command("CREATE TABLE _ingest_" + summary.ingest_id + "_0_staging (x UInt8) ENGINE = Memory")
    warehouse.command("CREATE TABLE _tmp_replace_0a1b_2c3d (x UInt8) ENGINE = Memory")
    rolled = repair(warehouse, lease_s=60)
    left = warehouse.query_rows(
        "SELECT name FROM system.tables WHERE database = currentDatabase() "
        "AND startsWith(name, '_tmp_replace_')"
    )
    # The engine's leftover is removed only where no other process can be making one.
    assert left == ([] if warehouse.exclusive else [("_tmp_replace_0a1b_2c3d",)])
    assert [r.ingest_id for r in rolled] == [summary.ingest_id]
    assert books(warehouse) == (0, 0, 0, 0)
    assert repair(warehouse, lease_s=60) == []
    again = ingest_files(warehouse, catalog, [path], ingested_at=AT).total
    assert again.accepted == 5
    assert books(warehouse) == (5, 5, 5, 0)


def test_a_run_with_a_fresh_heartbeat_is_left_alone_on_a_server(
    warehouse: Warehouse, catalog: MeterCatalog
) -> None:
    """Another process's run in progress: on a server it is alive until its lease runs
    out; on the embedded warehouse no other process can be running (the folder lock)."""
    record(
        warehouse, "ab" * 16, "started", ingested_at=AT, sources=["x.jsonl"],
        min_ts=None, max_ts=None, owner="elsewhere:1",
    )
    rolled = [r.ingest_id for r in repair(warehouse, lease_s=600)]
    if warehouse.exclusive:
        assert rolled == ["ab" * 16]
    else:
        assert rolled == []
        assert [r.ingest_id for r in repair(warehouse, lease_s=0)] == ["ab" * 16]
    assert run_state(warehouse, "ab" * 16) == "rolled_back"
