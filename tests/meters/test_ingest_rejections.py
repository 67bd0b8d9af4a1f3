"""Each rejection reason, with a real bad row, in every file format (golden cases)."""

from __future__ import annotations

import csv
import io
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
from meters.ingest.ingestor import REASONS, IngestSummary, ingest_files
from meters.warehouse.base import Warehouse
from tests.conftest import fresh_warehouse

CASES: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "rejections.yaml").read_text()
)
AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
FIELDS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties")
# The keys that carry a case's data, and the formats each is written in.
KINDS = {
    "row": ("jsonl", "csv", "parquet"),
    "line": ("jsonl",),
    "jsonl_bytes": ("jsonl",),
    "csv": ("csv",),
    "csv_bytes": ("csv",),
    "blank": ("jsonl", "csv"),
}


def expect(case: dict[str, Any]) -> dict[str, Any]:
    """What a case expects: its reason ('accepted' or a rejection reason), and optionally
    a text its detail holds and what an accepted row stores."""
    return case["expect"] if "expect" in case else {"reason": case["reason"]}


def kind(case: dict[str, Any]) -> str:
    (found,) = [k for k in KINDS if k in case]
    return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _csv_cell(text: str | None) -> str:
    """A CSV cell as the README reads it: an absent field (None) is an empty unquoted
    cell, an empty text a quoted one (`""`), so a row means the same in every format."""
    if text is None:
        return ""
    if text == "":
        return '""'
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([text])
    return out.getvalue()


def _bytes(escaped: str) -> bytes:
    r"""ASCII text where \xNN stands for the byte NN."""
    return escaped.encode("ascii").decode("unicode_escape").encode("latin-1")


def cases_for(fmt: str) -> list[dict[str, Any]]:
    return [c for c in CASES if fmt in KINDS[kind(c)]]


def write_cases(
    folder: Path, fmt: str, cases: list[dict[str, Any]]
) -> tuple[Path, dict[int, dict[str, Any]]]:
    """Write the cases as one file; returns it and each row's physical line (or row)
    number with what the row expects (blank lines are not rows)."""
    expected: dict[int, dict[str, Any]] = {}
    if fmt == "parquet":
        rows = [{f: _text(c["row"].get(f)) for f in FIELDS} for c in cases if "row" in c]
        path = folder / "cases.parquet"
        table = pa.table({f: pa.array([r[f] for r in rows], pa.string()) for f in FIELDS})
        pq.write_table(table, path)
        rowed = [c for c in cases if "row" in c]
        return path, {n: expect(c) for n, c in enumerate(rowed, start=1)}
    out = io.BytesIO()
    line = 0
    if fmt == "csv":
        out.write((",".join(FIELDS) + "\r\n").encode())
        line = 1
    for case in cases:
        k = kind(case)
        line += 1
        if k == "blank":
            out.write(b"\n")
            continue
        if k == "row" and fmt == "jsonl":
            data = json.dumps(case["row"], ensure_ascii=False).encode()
        elif k == "row":
            data = ",".join(_csv_cell(_text(case["row"].get(f))) for f in FIELDS).encode()
        elif k.endswith("_bytes"):
            data = _bytes(case[k])
        else:
            data = case[k].encode()
        out.write(data + (b"\r\n" if fmt == "csv" else b"\n"))
        expected[line] = {**expect(case), "text": data}
    path = folder / f"cases.{fmt}"
    path.write_bytes(out.getvalue())
    return path, expected


@pytest.fixture(scope="module", params=["jsonl", "csv", "parquet"])
def ingested(
    request: pytest.FixtureRequest,
    chdb_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
    catalog: MeterCatalog,
) -> Iterator[tuple[str, Warehouse, IngestSummary, dict[int, dict[str, Any]]]]:
    fmt = request.param
    path, expected = write_cases(tmp_path_factory.mktemp(fmt), fmt, cases_for(fmt))
    with fresh_warehouse(chdb_folder) as wh:
        summary = ingest_files(wh, catalog, [path], ingested_at=AS_OF)
        yield fmt, wh, summary, expected


Ingested = tuple[str, Warehouse, IngestSummary, dict[int, dict[str, Any]]]


def test_every_reason_has_a_case() -> None:
    covered = {expect(c)["reason"] for c in CASES if "blank" not in c}
    assert set(REASONS) - {"conflicting_duplicate"} <= covered


def test_each_row_gets_its_reason(ingested: Ingested) -> None:
    fmt, wh, _summary, expected = ingested
    got = {
        line: (reason, detail)
        for line, reason, detail in wh.query_rows(
            "SELECT source_line, reason, detail FROM usage_events_rejected"
        )
    }
    stored_lines = {r[0] for r in wh.query_rows("SELECT source_line FROM usage_events")}
    wrong = []
    for line, case in expected.items():
        reason = case["reason"]
        if reason == "accepted":
            if line not in stored_lines:
                wrong.append(f"{fmt} line {line}: expected accepted, got {got.get(line)}")
        elif got.get(line, ("",))[0] != reason:
            wrong.append(f"{fmt} line {line}: expected {reason}, got {got.get(line)}")
        elif "detail" in case and case["detail"] not in got[line][1]:
            wrong.append(f"{fmt} line {line}: detail {got[line][1]!r} lacks {case['detail']!r}")
    assert not wrong, "\n".join(wrong)
    assert len(stored_lines) == sum(1 for c in expected.values() if c["reason"] == "accepted")


def test_rejected_rows_keep_payload_source_and_a_readable_reason(ingested: Ingested) -> None:
    fmt, wh, _summary, expected = ingested
    rows = wh.query_rows(
        "SELECT source, source_line, reason, detail, raw FROM usage_events_rejected"
    )
    assert rows
    for source, line, reason, detail, raw in rows:
        assert source.endswith(f"cases.{fmt}")
        assert line in expected
        assert detail and len(detail) > 10, (reason, detail)
        assert raw.strip(), (reason, line)
        if fmt != "parquet":
            # A JSON or CSV line is kept as written (bytes that are not UTF-8 as U+FFFD).
            assert raw == expected[line]["text"].decode("utf-8", errors="replace"), line
    # The raw payload of a structured row carries its fields, so a person can resend it.
    unknown = next(r for r in rows if r[2] == "unknown_meter")
    assert "fin_resolutoin" in unknown[4] and "fin_resolutoin" in unknown[3]


def test_accounting_balances(ingested: Ingested) -> None:
    _fmt, wh, summary, expected = ingested
    total = summary.total
    assert total.received == len(expected)
    assert total.balanced
    assert total.accepted == sum(1 for c in expected.values() if c["reason"] == "accepted")
    assert total.rejected == wh.query_rows("SELECT count() FROM usage_events_rejected")[0][0]
    by_reason: dict[str, int] = {}
    for case in expected.values():
        if case["reason"] != "accepted":
            by_reason[case["reason"]] = by_reason.get(case["reason"], 0) + 1
    assert total.rejected_by_reason == by_reason
    log = wh.query_rows(
        "SELECT sum(received), sum(accepted), sum(duplicates), sum(rejected) FROM ingest_log"
    )[0]
    assert tuple(log) == (total.received, total.accepted, total.duplicates, total.rejected)


def test_accepted_values_are_stored_exactly(ingested: Ingested) -> None:
    _fmt, wh, _summary, expected = ingested
    rows = {
        line: {"event_id": eid, "timestamp": ts, "value": value, "properties": props}
        for line, eid, ts, value, props in wh.query_rows(
            "SELECT source_line, event_id, timestamp, toString(value), properties FROM usage_events"
        )
    }
    by_id = {r["event_id"]: r for r in rows.values()}
    # -05:00 is stored as UTC; half a second survives (millisecond precision).
    assert by_id["ok3"]["timestamp"] == datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    assert by_id["ok3"]["value"] == "12"
    assert by_id["ok4"]["timestamp"] == datetime(2026, 11, 20, 9, 0, 0, 500000, tzinfo=UTC)
    assert by_id["ok1"]["value"] == "1"  # a missing value counts as 1
    assert by_id["ok2"]["properties"] == [("channel", "sms")]
    checked = 0
    for line, case in expected.items():
        for name, want in case.get("stored", {}).items():
            got = rows[line][name]
            if name == "timestamp":
                got = got.strftime("%Y-%m-%dT%H:%M:%S.") + f"{got.microsecond // 1000:03d}Z"
            assert got == want, (line, name)
            checked += 1
    assert checked >= 10
