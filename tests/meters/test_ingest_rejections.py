"""Each rejection reason, with a real bad row, in every file format (golden cases)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from meters.catalog import MeterCatalog
from meters.ingest import REASONS, IngestSummary, ingest_files
from meters.warehouse import Warehouse
from tests.conftest import fresh_warehouse

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "rejections.yaml").read_text()
)
AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
FIELDS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def write_cases(folder: Path, fmt: str, cases: list[dict[str, Any]]) -> tuple[Path, list[int]]:
    """Write the cases as one file; returns it and each case's line (or row) number."""
    if fmt == "jsonl":
        path = folder / "cases.jsonl"
        path.write_text(
            "".join((c["line"] if "line" in c else json.dumps(c["row"])) + "\n" for c in cases)
        )
        return path, list(range(1, len(cases) + 1))
    rows = [{f: _text(c["row"].get(f)) for f in FIELDS} for c in cases]
    if fmt == "csv":
        path = folder / "cases.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        return path, list(range(2, len(cases) + 2))
    path = folder / "cases.parquet"
    pq.write_table(pa.table({f: pa.array([r[f] for r in rows], pa.string()) for f in FIELDS}), path)
    return path, list(range(1, len(cases) + 1))


@pytest.fixture(scope="module", params=["jsonl", "csv", "parquet"])
def ingested(
    request: pytest.FixtureRequest,
    chdb_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
    catalog: MeterCatalog,
) -> Iterator[tuple[str, Warehouse, IngestSummary, dict[int, str]]]:
    fmt = request.param
    # Raw-line cases only make sense in JSON lines; the others carry every case.
    cases = [c for c in CASES if fmt == "jsonl" or "row" in c]
    path, lines = write_cases(tmp_path_factory.mktemp(fmt), fmt, cases)
    with fresh_warehouse(chdb_folder) as wh:
        summary = ingest_files(wh, catalog, [path], ingested_at=AS_OF)
        expected = {line: case["reason"] for line, case in zip(lines, cases, strict=True)}
        yield fmt, wh, summary, expected


def test_every_reason_has_a_case() -> None:
    covered = {c["reason"] for c in CASES}
    assert set(REASONS) - {"conflicting_duplicate"} <= covered


def test_each_row_gets_its_reason(
    ingested: tuple[str, Warehouse, IngestSummary, dict[int, str]],
) -> None:
    fmt, wh, summary, expected = ingested
    got = dict(wh.query_rows("SELECT source_line, reason FROM usage_events_rejected"))
    accepted_ids = {r[0] for r in wh.query_rows("SELECT event_id FROM usage_events")}
    assert len(accepted_ids) == sum(1 for r in expected.values() if r == "accepted")
    for line, reason in expected.items():
        if reason == "accepted":
            assert line not in got, f"{fmt} line {line} should be accepted, got {got.get(line)}"
        else:
            assert got.get(line) == reason, (
                f"{fmt} line {line}: expected {reason}, got {got.get(line)}"
            )


def test_rejected_rows_keep_payload_source_and_a_readable_reason(
    ingested: tuple[str, Warehouse, IngestSummary, dict[int, str]],
) -> None:
    fmt, wh, summary, expected = ingested
    rows = wh.query_rows(
        "SELECT source, source_line, reason, detail, raw FROM usage_events_rejected"
    )
    assert rows
    for source, line, reason, detail, raw in rows:
        assert source.endswith(f"cases.{fmt}")
        assert line in expected
        assert detail and len(detail) > 10, (reason, detail)
        assert raw.strip(), (reason, line)
    # The raw payload of a structured row carries its fields, so a person can resend it.
    unknown = next(r for r in rows if r[2] == "unknown_meter")
    assert "fin_resolutoin" in unknown[4] and "fin_resolutoin" in unknown[3]


def test_accounting_balances(
    ingested: tuple[str, Warehouse, IngestSummary, dict[int, str]],
) -> None:
    fmt, wh, summary, expected = ingested
    total = summary.total
    assert total.received == len(expected)
    assert total.balanced
    assert total.accepted == sum(1 for r in expected.values() if r == "accepted")
    assert total.rejected == wh.query_rows("SELECT count() FROM usage_events_rejected")[0][0]
    log = wh.query_rows(
        "SELECT sum(received), sum(accepted), sum(duplicates), sum(rejected) FROM ingest_log"
    )[0]
    assert tuple(log) == (total.received, total.accepted, total.duplicates, total.rejected)


def test_accepted_values_are_stored_exactly(
    ingested: tuple[str, Warehouse, IngestSummary, dict[int, str]],
) -> None:
    _fmt, wh, _summary, _expected = ingested
    rows = {
        r[0]: r[1:]
        for r in wh.query_rows(
            "SELECT event_id, timestamp, toString(value), properties FROM usage_events"
        )
    }
    # -05:00 is stored as UTC; half a second survives (millisecond precision).
    assert rows["ok3"][0] == datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    assert rows["ok3"][1] == "12"
    assert rows["ok4"][0] == datetime(2026, 11, 20, 9, 0, 0, 500000, tzinfo=UTC)
    assert rows["ok1"][1] == "1"  # a missing value counts as 1
    assert rows["ok2"][2] == [("channel", "sms")]
