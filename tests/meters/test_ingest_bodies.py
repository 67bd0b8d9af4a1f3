"""Request bodies (meters.ingest.bodies) read as the JSON-lines files they stand for, and
a batch of several sources (Ingestor.ingest_texts) counted and logged per source as the
files would be."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from meters.catalog import MeterCatalog
from meters.ingest.bodies import BodyError, json_array_rows, ndjson_rows
from meters.ingest.ingestor import Ingestor, TextPart
from meters.ingest.readers import read_batches
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


def file_rows(tmp_path: Path, data: bytes) -> list[tuple[int, bytes]]:
    path = tmp_path / "body.jsonl"
    path.write_bytes(data)
    counter = itertools.count()
    out = []
    for batch in read_batches(path, 1000, lambda n: next(counter)):
        lines = batch.table.column("source_line").to_pylist()
        raws = batch.table.column("raw").cast("binary").to_pylist()
        out.extend(zip(lines, raws, strict=True))
    return out


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}\n{"b": 2}\n',
        b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n{"b": 2}',
        b'{"a": 1}\nnot json\n\xff\xfe\n\t\n{"b": "\xc3\xa9"}\n',
        b"",
        b"\n\n",
    ],
)
def test_an_ndjson_body_gives_the_rows_of_the_same_bytes_as_a_file(
    tmp_path: Path, data: bytes
) -> None:
    numbers, lines = ndjson_rows(data)
    got = list(zip(numbers.to_pylist(), lines.cast("binary").to_pylist(), strict=True))
    assert got == file_rows(tmp_path, data)


def test_a_json_array_gives_one_row_per_element_as_written() -> None:
    body = b'[\n  {"event_id": "e1",\n   "value": 1.10},\n  5, "x" ,{"v": 1e400}\n]\n'
    numbers, lines = json_array_rows(body)
    assert numbers.to_pylist() == [1, 2, 3, 4]
    assert lines.to_pylist() == ['{"event_id": "e1",    "value": 1.10}', "5", '"x"', '{"v": 1e400}']


def test_a_json_array_keeps_numbers_as_text_however_long() -> None:
    big = "9" * 5000
    _, lines = json_array_rows(f'[{{"value": {big}}}]'.encode())
    assert lines.to_pylist() == [f'{{"value": {big}}}']


def test_an_empty_array_has_no_rows() -> None:
    numbers, lines = json_array_rows(b" [ ] ")
    assert len(numbers) == len(lines) == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "an empty body"),
        (b'{"event_id": "e1"}', "not a JSON array"),
        (b'[{"event_id": "e1"}', "expected ',' or ']' after element 1"),
        (b'[{"event_id": "e1"},]', "element 2"),
        (b'[{"event_id": "e1"}] []', "more after its JSON array"),
        (b'[{"event_id": "\xff"}]', "not UTF-8"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_body_that_is_not_one_json_array_is_refused(body: bytes, fragment: str) -> None:
    with pytest.raises(BodyError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        json_array_rows(body)


def state(wh: Warehouse) -> tuple[Any, ...]:
    return (
        wh.query_rows(
            "SELECT event_id, customer_id, meter, timestamp, value, properties, source_line"
            " FROM usage_events ORDER BY event_id"
        ),
        wh.query_rows(
            "SELECT source, source_line, event_id, reason, detail, raw"
            " FROM usage_events_rejected ORDER BY source, source_line"
        ),
        wh.query_rows(
            "SELECT source, received, accepted, duplicates, rejected, rejected_by_reason"
            " FROM ingest_log ORDER BY source"
        ),
    )


@pytest.mark.single_warehouse
def test_a_batch_of_several_sources_counts_as_their_files_do(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, chdb_folder: Path
) -> None:
    from tests.conftest import fresh_warehouse

    first = [event("e1"), event("e2"), {"event_id": "bad"}, event("e1")]
    second = [event("e2"), event("e1", properties={"channel": "email"}), event("e3")]
    bodies = {
        "a": "".join(json.dumps(r) + "\n" for r in first).encode(),
        "b": "".join(json.dumps(r) + "\n" for r in second).encode(),
    }
    ingestor = Ingestor(warehouse, catalog, ingested_at=AT, keep_outcomes=True)
    summary = ingestor.ingest_texts(
        [TextPart(name, *ndjson_rows(body)) for name, body in bodies.items()]
    )
    assert summary.sources["a"].received == 4 and summary.sources["b"].received == 3
    assert summary.total.balanced
    (outcomes,) = ingestor.outcomes
    assert outcomes.column("status").to_pylist() == [
        "accepted",
        "accepted",
        "rejected",
        "duplicate",
        "duplicate",
        "rejected",
        "accepted",
    ]
    conflict = outcomes.column("detail").to_pylist()[5]
    assert "appeared earlier (a line 1)" in conflict

    # The same rows as two files, each named as the part was, ingested as one run.
    folder = tmp_path / "files"
    folder.mkdir()
    for name, body in bodies.items():
        (folder / f"{name}.jsonl").write_bytes(body)
    with fresh_warehouse(chdb_folder) as other:
        Ingestor(other, catalog, ingested_at=AT).ingest_files(
            [folder / "a.jsonl", folder / "b.jsonl"]
        )
        files = state(other)
    prefix = f"{folder}/"
    renamed = (
        files[0],
        [(s.removeprefix(prefix).removesuffix(".jsonl"), *rest) for s, *rest in files[1]],
        [(s.removeprefix(prefix).removesuffix(".jsonl"), *rest) for s, *rest in files[2]],
    )

    # A conflict's detail names where the first copy is: a line of this batch, or an
    # earlier batch's ingest (the second file is a batch of its own); the rest is equal.
    def words(rows: list[Any]) -> list[Any]:
        return [
            (s, line, eid, reason, "" if reason == "conflicting_duplicate" else detail, raw)
            for s, line, eid, reason, detail, raw in rows
        ]

    mine = state(warehouse)
    assert (mine[0], words(mine[1]), mine[2]) == (renamed[0], words(renamed[1]), renamed[2])
