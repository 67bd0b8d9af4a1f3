"""Invariant 2 under real crashes: an ingest killed (SIGKILL) at any point leaves books that
the next run repairs, so that stored events, stored ids and `ingest_log` agree, no scratch
table is left, and re-sending the files stores every event exactly once.

Each ingest runs in a subprocess with METERLINE_CRASH_AT naming a crash point
(meters/crashpoints.py); the next run is another subprocess: an ingest, or a rollup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meters.catalog import MeterCatalog
from meters.warehouse.base import Warehouse
from tests.conftest import warehouse_url

WORKER = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestOptions, Ingestor
from meters.ingest.journal import repair
from meters.migrations import migrate
from meters.warehouse import connect

url, mode, catalog_json = sys.argv[1:4]
wh = connect(url)
migrate(wh)
if mode == "ingest":
    ingestor = Ingestor(wh, MeterCatalog.model_validate_json(catalog_json),
                        ingested_at=datetime(2026, 11, 25, tzinfo=UTC),
                        options=IngestOptions(batch_rows=4, lease=timedelta(0)))
    summary = ingestor.ingest_files([Path(p) for p in sys.argv[4:]])
    print(json.dumps({"accepted": summary.total.accepted,
                      "rolled_back": [r.ingest_id for r in summary.rolled_back]}))
elif mode == "repair":
    print(json.dumps({"rolled_back": [r.ingest_id for r in repair(wh, lease_s=0)]}))
rows = lambda sql: wh.query_rows(sql)[0][0]
print(json.dumps({
    "events": rows("SELECT count() FROM usage_events"),
    "distinct_events": rows("SELECT uniqExact(event_id) FROM usage_events"),
    "ids": rows("SELECT count() FROM usage_event_ids"),
    "logged_accepted": rows("SELECT sum(accepted) FROM ingest_log"),
    "logged_received": rows("SELECT sum(received) FROM ingest_log"),
    "rejected_rows": rows("SELECT count() FROM usage_events_rejected"),
    "logged_rejected": rows("SELECT sum(rejected) FROM ingest_log"),
    "scratch": rows("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                    "AND startsWith(name, '_ingest_')"),
}))
wh.close()
"""

# Every point an ingest passes; with batches of 4 rows, ":2" is the second batch.
POINTS = [
    "ingest.after_begin",
    "ingest.after_classify:2",
    "ingest.after_events",
    "ingest.after_events:3",
    "ingest.after_ids:2",
    "ingest.after_rejected",
    "ingest.after_log:2",
    "ingest.before_commit",
]


def events_file(path: Path) -> Path:
    rows = []
    for i in range(10):
        rows.append(json.dumps({
            "event_id": f"k{i}", "customer_id": f"cus_{i % 3}", "meter": "fin_resolution",
            "timestamp": f"2026-11-2{i % 3}T10:00:00Z", "properties": {"channel": "chat"},
        }))
    rows.insert(3, "{not json")  # a rejected row in the first batch
    path.write_text("\n".join(rows) + "\n")
    return path


def run(
    url: str, catalog: MeterCatalog, mode: str, *files: Path, crash: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != "METERLINE_CRASH_AT"}
    if crash:
        env["METERLINE_CRASH_AT"] = crash
    done = subprocess.run(
        [sys.executable, "-c", WORKER, url, mode, catalog.model_dump_json(), *map(str, files)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    if done.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(done.stderr)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line]


@pytest.fixture
def url(warehouse: Warehouse, tmp_path: Path) -> str:
    """A warehouse the subprocesses open themselves (the test's own chDB folder is locked
    by this process, so the embedded case uses a folder of its own)."""
    if type(warehouse).__name__ == "ChdbWarehouse":
        return f"chdb://{tmp_path / 'wh'}"
    return warehouse_url(warehouse)


def balanced(books: dict[str, Any]) -> bool:
    return (
        books["events"] == books["ids"] == books["logged_accepted"]
        and books["rejected_rows"] == books["logged_rejected"]
        and books["scratch"] == 0
    )


# On the server backend, three points: one per stage (classify, store, log+commit).
@pytest.mark.server_subset("ingest.after_classify:2", "ingest.after_events:3", "ingest.before_commit")
@pytest.mark.parametrize("point", POINTS)
def test_a_killed_ingest_is_repaired_by_the_next_ingest(
    url: str, catalog: MeterCatalog, tmp_path: Path, point: str
) -> None:
    path = events_file(tmp_path / "day.jsonl")
    code, _ = run(url, catalog, "ingest", path, crash=point)
    assert code == -signal.SIGKILL
    code, (summary, books) = run(url, catalog, "ingest", path)
    assert code == 0
    assert len(summary["rolled_back"]) == 1
    assert summary["accepted"] == 10  # nothing of the killed run counted: all new again
    assert books["events"] == books["distinct_events"] == 10
    assert books["logged_received"] == 11 and books["rejected_rows"] == 1
    assert balanced(books), books


@pytest.mark.server_subset("ingest.after_log:3")
@pytest.mark.parametrize("point", ["ingest.after_events:2", "ingest.after_log:3"])
def test_a_killed_ingest_is_repaired_before_a_rollup(
    url: str, catalog: MeterCatalog, tmp_path: Path, point: str
) -> None:
    path = events_file(tmp_path / "day.jsonl")
    run(url, catalog, "ingest", path)  # a committed ingest stays
    other = tmp_path / "other.jsonl"
    other.write_text(path.read_text().replace('"k', '"z'))
    code, _ = run(url, catalog, "ingest", other, crash=point)
    assert code == -signal.SIGKILL
    _, (repaired, books) = run(url, catalog, "repair")
    assert len(repaired["rolled_back"]) == 1
    assert books["events"] == 10 and balanced(books), books
