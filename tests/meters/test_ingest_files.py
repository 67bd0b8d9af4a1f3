"""Files as users send them (issue 11 item 8): each problem is a rejected row with its
line, or an error naming the file while the other files are still ingested; never a
traceback, never a silently wrong result. Row-level cases are in cases/rejections.yaml."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meters.catalog import MeterCatalog
from meters.ingest.ingestor import IngestSummary, ingest_files
from meters.warehouse.base import Warehouse

AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
TS = "2026-11-20T10:00:00Z"


def ingest(wh: Warehouse, catalog: MeterCatalog, *paths: Path) -> IngestSummary:
    return ingest_files(wh, catalog, list(paths), ingested_at=AS_OF)


def good_jsonl(folder: Path, name: str, ids: list[str]) -> Path:
    path = folder / name
    path.write_text(
        "".join(
            f'{{"event_id":"{i}","customer_id":"c1","meter":"fin_resolution","timestamp":"{TS}"}}\n'
            for i in ids
        )
    )
    return path


def stored(wh: Warehouse) -> dict[str, tuple[Any, ...]]:
    return {
        r[0]: tuple(r[1:])
        for r in wh.query_rows(
            "SELECT event_id, customer_id, meter, timestamp, toString(value), properties "
            "FROM usage_events"
        )
    }


def rejections(wh: Warehouse) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in wh.query_rows(
            "SELECT source_line, event_id, reason, detail FROM usage_events_rejected "
            "ORDER BY source_line"
        )
    ]


# --- CSV headers ---------------------------------------------------------------------------


def test_csv_with_a_byte_order_mark_and_headers_in_any_case_or_spacing(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(
        b"\xef\xbb\xbf Event_ID ,CUSTOMER_ID,Meter,  timestamp, Value \r\n"
        + f"e1,c1,fin_resolution,{TS},\r\n".encode()
        + f"e2,c2,fin_resolution,{TS},3\r\n".encode()
    )
    summary = ingest(warehouse, catalog, path)
    assert summary.file_errors == {}
    assert summary.total.received == 2 and summary.total.accepted == 2
    rows = stored(warehouse)
    assert rows["e1"][:2] == ("c1", "fin_resolution") and rows["e2"][:2] == ("c2", "fin_resolution")
    assert rows["e2"][3] == "3"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("event_id,customer_id,meter,timestamp,event_id", "column event_id appears twice"),
        ("event_id,customer_id,meter,timestamp, EVENT_ID ", "(columns 1 and 5)"),
        ("event_id,customer_id,meter,timestamp,vaule", "unknown column 'vaule'"),
        ("event_id,customer_id,meter,value", "has no column timestamp"),
        ("e1,c1,fin_resolution,2026-11-20T10:00:00Z", "unknown column 'e1'"),
    ],
)
def test_a_csv_header_that_cannot_be_mapped_refuses_that_file_only(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, header: str, message: str
) -> None:
    before = good_jsonl(tmp_path, "before.jsonl", ["a1", "a2"])
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\ne9,c1,fin_resolution,{TS},1\n")
    after = good_jsonl(tmp_path, "after.jsonl", ["b1"])
    summary = ingest(warehouse, catalog, before, bad, after)
    assert list(summary.file_errors) == [str(bad)]
    assert str(bad) in summary.file_errors[str(bad)]
    assert message in summary.file_errors[str(bad)]
    assert set(stored(warehouse)) == {"a1", "a2", "b1"}
    assert summary.sources[str(bad)].received == 0
    assert summary.total.received == 3 and summary.total.balanced


def test_a_csv_header_that_is_not_utf8_is_refused(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"event_id,customer_id,meter,timestamp,d\xe9tail\n")
    summary = ingest(warehouse, catalog, bad)
    assert "the header (line 1) is not UTF-8 text" in summary.file_errors[str(bad)]


def test_an_empty_or_blank_text_file_holds_no_rows(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    empty_csv, blank_jsonl = tmp_path / "empty.csv", tmp_path / "blank.jsonl"
    empty_csv.write_bytes(b"")
    blank_jsonl.write_bytes(b"\n  \r\n\t\n")
    summary = ingest(warehouse, catalog, empty_csv, blank_jsonl)
    assert summary.file_errors == {} and summary.total.received == 0


def test_line_numbers_are_physical_across_blocks(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines are split in blocks of bytes; a line cut by a block boundary, blank lines and
    CRLF endings keep every row's physical line number (tiny blocks force the cuts)."""
    import meters.ingest.text_formats

    monkeypatch.setattr(meters.ingest.text_formats, "BLOCK_BYTES", 37)
    path = tmp_path / "blocks.csv"
    lines = ["event_id,customer_id,meter,timestamp"]
    for i in range(1, 40):
        lines.append("" if i % 7 == 0 else f"e{i},c1,fin_resolution,{TS}")
    lines[20] = "broken,line"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    summary = ingest_files(
        warehouse, catalog, [path], ingested_at=AS_OF, options=_options(batch_rows=5)
    )
    assert rejections(warehouse)[0][:3] == (21, "broken", "malformed_row")
    rows = dict(warehouse.query_rows("SELECT event_id, source_line FROM usage_events"))
    assert rows == {f"e{i}": i + 1 for i in range(1, 40) if i % 7 and i != 20}
    assert summary.total.received == len(rows) + 1


def _options(**kwargs: Any) -> Any:
    from meters.ingest.ingestor import IngestOptions

    return IngestOptions(**kwargs)


# --- Parquet ---------------------------------------------------------------------------------


def _events(n: int, **columns: Any) -> pa.Table:
    base = {
        "event_id": pa.array([f"p{i}" for i in range(n)]),
        "customer_id": pa.array(["c1"] * n),
        "meter": pa.array(["fin_resolution"] * n),
        "timestamp": pa.array([TS] * n),
    }
    base.update(columns)
    return pa.table(base)


def test_damaged_parquet_files_are_refused_by_name(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    before = good_jsonl(tmp_path, "before.jsonl", ["a1"])
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    whole = tmp_path / "whole.parquet"
    pq.write_table(_events(50), whole)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    not_parquet = tmp_path / "text.parquet"
    not_parquet.write_text("event_id,customer_id\n")
    # A flipped byte in a page that carries a checksum.
    corrupt = tmp_path / "corrupt.parquet"
    pq.write_table(_events(50), corrupt, write_page_checksum=True, compression="none")
    data = bytearray(corrupt.read_bytes())
    at = data.find(b"p25")
    data[at : at + 3] = b"XXX"
    corrupt.write_bytes(bytes(data))
    after = good_jsonl(tmp_path, "after.jsonl", ["b1"])
    bad = [empty, truncated, not_parquet, corrupt]
    summary = ingest(warehouse, catalog, before, *bad, after)
    assert set(summary.file_errors) == {str(p) for p in bad}
    for path in bad:
        message = summary.file_errors[str(path)]
        assert message.startswith(f"{path}: ")
        assert "Parquet" in message
    assert "damaged after row 0" in summary.file_errors[str(corrupt)]
    assert set(stored(warehouse)) == {"a1", "b1"}
    assert summary.total.balanced and summary.total.received == 2


def test_parquet_binary_ids_that_are_not_utf8_stay_distinct(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = tmp_path / "binary.parquet"
    ids = pa.array([b"a\xff", b"a\xfe", None, b"ok", b"ok"], pa.binary())
    pq.write_table(_events(5, event_id=ids), path)
    summary = ingest(warehouse, catalog, path)
    total = summary.total
    # Replacing the bad bytes would have made a\xff and a\xfe one id, the second a duplicate.
    assert (total.accepted, total.duplicates, total.rejected) == (1, 1, 3)
    got = rejections(warehouse)
    assert [(line, reason) for line, _, reason, _ in got] == [
        (1, "bad_event_id"),
        (2, "bad_event_id"),
        (3, "missing_field"),
    ]
    assert "is not UTF-8 text" in got[0][3]
    assert set(stored(warehouse)) == {"ok"}


@pytest.mark.single_warehouse  # which steps read a batch's fields is ours: chDB only
def test_parquet_fields_that_are_not_utf8_name_the_field(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    """A batch of field columns only skips the steps that parse lines
    (ingest/_fields_columns.sql): a field that is not UTF-8 is still named, and a line of
    a text file in the same run still goes through them."""
    path = tmp_path / "fields.parquet"
    meters = pa.array([b"fin_resolution", b"fin\xffres", b"fin_resolution"], pa.binary())
    stamps = pa.array([TS.encode(), TS.encode(), b"2026-11-20T10:00:00\xfeZ"], pa.binary())
    pq.write_table(_events(3, meter=meters, timestamp=stamps), path)
    text = good_jsonl(tmp_path, "lines.jsonl", ["j1"])
    with text.open("ab") as out:
        out.write(b'{"event_id":"j2","customer_id":"c1","meter":"fin\xffres","timestamp":"x"}\n')
    summary = ingest(warehouse, catalog, path, text)
    assert (summary.total.accepted, summary.total.rejected) == (2, 3)
    assert sorted((line, reason, detail) for line, _, reason, detail in rejections(warehouse)) == [
        (2, "malformed_row", "field meter is not UTF-8 text"),
        (
            2,
            "malformed_row",
            "the line is not UTF-8 text (the first bad byte is at character 49); save the file as UTF-8",
        ),
        (3, "malformed_row", "field timestamp is not UTF-8 text"),
    ]


def test_parquet_properties_as_struct_or_map(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    """Property values are strings in every format: a struct or map of strings is read
    (a null struct field is an absent property); a timestamp, decimal or number value
    rejects the row as bad_properties, naming the property and its type."""
    strings = tmp_path / "struct_strings.parquet"
    channel = pa.array([{"channel": "chat"}, {"channel": None}])
    pq.write_table(_events(2, properties=channel), strings)
    typed = tmp_path / "struct_typed.parquet"
    props = pa.array(
        [
            {"channel": "chat", "at": datetime(2026, 11, 20, tzinfo=UTC), "amount": Decimal("1.5")},
            {"channel": "sms", "at": None, "amount": Decimal("2.25")},
            {"channel": "email", "at": None, "amount": None},
        ],
        pa.struct(
            [
                ("channel", pa.string()),
                ("at", pa.timestamp("ms", "UTC")),
                ("amount", pa.decimal128(9, 2)),
            ]
        ),
    )
    pq.write_table(_events(3, event_id=pa.array(["t0", "t1", "t2"]), properties=props), typed)
    maps = tmp_path / "map.parquet"
    pq.write_table(
        _events(
            2,
            event_id=pa.array(["m0", "m1"]),
            properties=pa.array([[("channel", "phone")], []], pa.map_(pa.string(), pa.string())),
        ),
        maps,
    )
    decimal_map = tmp_path / "map_decimal.parquet"
    pq.write_table(
        _events(
            1,
            event_id=pa.array(["d0"]),
            properties=pa.array(
                [[("channel", Decimal("1.5"))]], pa.map_(pa.string(), pa.decimal128(5, 1))
            ),
        ),
        decimal_map,
    )
    summary = ingest(warehouse, catalog, strings, typed, maps, decimal_map)
    assert summary.file_errors == {}
    rows = stored(warehouse)
    assert rows["p0"][4] == [("channel", "chat")]
    assert rows["p1"][4] == []
    assert rows["t2"][4] == [("channel", "email")]
    assert rows["m0"][4] == [("channel", "phone")] and rows["m1"][4] == []
    got = {
        eid: detail
        for _, eid, reason, detail in rejections(warehouse)
        if reason == "bad_properties"
    }
    assert got == {
        "t0": "property at is of type timestamp[ms, tz=UTC]; property values must be strings",
        "t1": "property amount is of type decimal128(9, 2); property values must be strings",
        "d0": "property channel is of type decimal128(5, 1); property values must be strings",
    }


def test_typed_parquet_columns(warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path) -> None:
    """Integer ids are their digits (as a JSON integer id is); a timestamp with a zone is
    that instant (ms kept); numbers are values; names match ignoring case and spaces."""
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            " Event_ID": pa.array([42, 43], pa.int64()),
            "CUSTOMER_ID": pa.array([7, 8], pa.int32()),
            "meter": pa.array(["seats", "seats"]).dictionary_encode(),
            "timestamp": pa.array(
                [datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)] * 2,
                pa.timestamp("us", "Europe/Dublin"),
            ),
            "value": pa.array([Decimal("12.500"), Decimal("-3.000")], pa.decimal128(10, 3)),
            "properties": pa.array(['{"seat_type":"expert"}'] * 2),
        }
    )
    pq.write_table(table, path)
    summary = ingest(warehouse, catalog, path)
    assert summary.file_errors == {} and summary.total.accepted == 2
    rows = stored(warehouse)
    assert rows["42"][:4] == (
        "7",
        "seats",
        datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC),
        "12.5",
    )
    assert rows["43"][3] == "-3"


@pytest.mark.parametrize(
    ("column", "array", "message"),
    [
        (
            "event_id",
            pa.array([1.5]),
            "column event_id has type double; it must hold text or integers",
        ),
        (
            "timestamp",
            pa.array([datetime(2026, 11, 20)], pa.timestamp("ms")),
            "column timestamp has type timestamp[ms]; it must hold text (RFC 3339) or a "
            "timestamp with a time zone",
        ),
        ("value", pa.array([True]), "column value has type bool"),
        ("meter", pa.array([[1]]), "column meter has type list<"),
    ],
)
def test_parquet_columns_of_a_type_that_cannot_be_an_event_field(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    tmp_path: Path,
    column: str,
    array: pa.Array,
    message: str,
) -> None:
    path = tmp_path / "typed.parquet"
    pq.write_table(_events(1, **{column: array}), path)
    summary = ingest(warehouse, catalog, path)
    assert message in summary.file_errors[str(path)]
    assert summary.total.received == 0
