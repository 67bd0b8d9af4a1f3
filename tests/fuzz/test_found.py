"""What the fuzz tests of issue 14 found, each kept as a plain test of the right value once
fixed (the fuzz tests keep them as explicit examples too):

1. An explicit YAML tag of a type outside the core schema (`!!timestamp nope`,
   `!!timestamp 2026-02-30`, `!!binary`, `!!set`) made the YAML reader raise
   AttributeError or ValueError (or return bytes, sets and datetimes no field expects):
   `meterline catalog load` ended in an internal error (exit code 5); a customers file
   was refused with "'NoneType' object has no attribute 'groupdict'" and no line.
2. A control character anywhere in a YAML file (NUL, BEL...) raised the reader's
   ReaderError before the reader's errors were caught: an internal error again.
3. A catalog that is not UTF-8 was refused naming a byte offset, and a YAML document
   nested too deeply naming nothing: both now name the line and column.
4. A CSV usage file whose header holds a carriage return (or a name longer than the csv
   module's field limit) raised csv.Error out of the ingest: the whole run stopped with
   an internal error instead of naming that file and ingesting the others.
5. A JSON line starting with a byte-order mark (files concatenated with their marks) had
   the number of its first member read through a double: value
   123456789012.123456789 was stored as 123456789012.12346, silently rounded.
6. A Parquet file written one row group per row (as streaming writers do) was ingested
   one row group per batch, each batch a full round of engine queries: 300 rows took
   over four minutes (a hang, for a real file). Its rows are now read in batches of
   METERLINE_INGEST_BATCH_ROWS whatever its row groups.
7. A catalog price version effective 0001-01-01 on the plan of a subscription in a zone
   east of UTC with a finalized invoice made the edit rule overflow (its local midnight
   is before year 1): `catalog load` ended in an internal error. effective_from now lies
   in the days a subscription can have, 2000-01-01 .. 2099-12-31.
8. A Parquet file whose struct of properties names a field twice (Arrow allows it) made
   the reader raise ValueError while converting a batch: an internal error that stopped
   the whole ingest. The file is now refused at once, naming the column and the field,
   and the other files are ingested.
9. On a PostgreSQL ledger, a catalog whose plan or price id is longer than the ledger's
   column (64), whose plan name is longer than 200 characters, or that holds a NUL
   character (YAML writes one "\\0") anywhere, made `catalog load` end in an internal
   error (psycopg DataError); SQLite stored them (ids no customers file could name).
   Plan and price ids now follow the customers file's id rule (printable, at most 64
   characters), plan names its name rule, and a NUL anywhere is refused with its path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing import yamlio
from billing.catalog import read_catalog
from billing.customers import read_file
from billing.errors import LoadError
from meters.ingest.ingestor import ingest_files
from meters.ingest.readers import UnreadableFile, read_batches
from meters.warehouse.base import Warehouse
from tests.billing.factories import CATALOG
from tests.fuzz.common import nested_yaml
from tests.fuzz.events import CATALOG as METERS
from tests.fuzz.test_catalog_fuzz import with_version

# --- 1 and 2: the YAML reader -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!timestamp nope\n", "line 1, column 4: the YAML tag !!timestamp is not accepted"),
        ("a: 1\nb: !!timestamp 2026-02-30\n", "line 2, column 4: the YAML tag !!timestamp"),
        ("a: !!timestamp 2026-01-01\n", "line 1, column 4: the YAML tag !!timestamp"),
        ("a: !!binary aGk=\n", "line 1, column 4: the YAML tag !!binary is not accepted"),
        ("a: !!set {x, y}\n", "line 1, column 4: the YAML tag !!set is not accepted"),
        ("a: !!omap [b: 1]\n", "line 1, column 4: the YAML tag !!omap is not accepted"),
        ("a: b\x00\n", "line 1, column 5: the character U+0000 is not allowed in YAML"),
        ("a: 1\nb: c\x07d\n", "line 2, column 5: the character U+0007 is not allowed in YAML"),
        ("a: \ufffe\n", "line 1, column 4: the character U+FFFE is not allowed in YAML"),
        ("a:\n  b: " + nested_yaml(2000), "line 2, column "),
    ],
)
def test_the_yaml_reader_refuses_with_the_line_and_column(text: str, message: str) -> None:
    for read in (yamlio.load, lambda t: list(yamlio.iter_sequence("- " + t.replace("\n", "\n  ")))):
        with pytest.raises(yamlio.InputError) as refused:
            read(text)
        assert refused.value.line is not None and refused.value.column is not None
    with pytest.raises(yamlio.InputError) as refused:
        yamlio.load(text)
    assert message in str(refused.value)


def test_the_core_schema_still_reads_an_explicit_core_tag() -> None:
    assert yamlio.load("a: !!str 5\nb: !!int 7\nc: !!float 0.5\nd: !!null\n") == {
        "a": "5",
        "b": 7,
        "c": Decimal("0.5"),
        "d": None,
    }


def _catalog_with(tmp_path: Path, old: bytes, new: bytes) -> Path:
    path = tmp_path / "catalog.yaml"
    data = CATALOG.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (b'"2026-01-01"', b"!!timestamp nope", "invalid YAML: line 33, column 29: the YAML tag"),
        (b'"2026-01-01"', b"!!timestamp 2026-02-30", "invalid YAML: line 33, column 29: the YAML"),
        (b"half_up", b"half\x00up", "invalid YAML: line 5, column 20: the character U+0000"),
        (b"Standard", b"St\xe4ndard", "line 27, column 13: not UTF-8 text; save the file as UTF-8"),
        (b"rounding_mode: half_up", b"x: " + nested_yaml(5000).encode(), "invalid YAML: line 5, "),
    ],
)
def test_a_catalog_is_refused_naming_the_line_and_column(
    tmp_path: Path, old: bytes, new: bytes, problem: str
) -> None:
    path = _catalog_with(tmp_path, old, new)
    with pytest.raises(LoadError) as refused:
        read_catalog(path)
    (found,) = refused.value.problems
    assert found.startswith(problem), found


def test_a_customers_yaml_file_with_a_tag_is_refused_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(
        "- customer_id: c1\n  name: A\n  currency: USD\n  timezone: UTC\n"
        "  subscription_id: s1\n  plan: standard\n  billing_anchor_day: 1\n"
        "  start: !!timestamp nope\n"
    )
    (problem,) = read_file(path).problems
    assert problem.line == 8 and problem.field == "row"
    assert problem.text.startswith("invalid YAML: line 8, column 10: the YAML tag !!timestamp")


# --- 4: a CSV header that is not one line ------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (b"event_id,customer_id\r,meter,timestamp", "(a carriage return inside it)"),
        (
            b"event_id,customer_id,meter,timestamp," + b"x" * 200_000,
            "(field larger than field limit (131072))",
        ),
    ],
)
def test_a_csv_header_that_is_not_one_line_refuses_the_file(
    tmp_path: Path, header: bytes, why: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(header + b"\ne1,c1,fin_resolution,2026-11-20T10:00:00Z\n")
    with pytest.raises(UnreadableFile) as refused:
        list(read_batches(path, 100, lambda n: 0))
    assert str(refused.value).startswith(
        f"{path}: the header (line 1) is not one line of column names {why}"
    )


# --- 5: a byte-order mark before a JSON line with exact numbers ---------------------------------


def test_a_json_line_after_a_byte_order_mark_keeps_its_numbers_exact(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Two files concatenated with their byte-order marks: the second file's first line
    starts with one. Its numbers are read from the text like any other line's."""
    ts = '"timestamp":"2026-11-20T10:00:00Z"'
    lines = [
        b'{"event_id":"a","customer_id":"c","meter":"tokens",' + ts.encode() + b"}",
        b'\xef\xbb\xbf{"value":123456789012.123456789,"event_id":"b","customer_id":"c",'
        b'"meter":"tokens",' + ts.encode() + b"}",
        b'\xef\xbb\xbf {"value":-0.000000001e0,"event_id":"c","customer_id":"c",'
        b'"meter":"seats",' + ts.encode() + b"}",
        b'\xef\xbb\xbf{"event_id":"d","customer_id":"c","meter":"tokens",'
        + ts.encode()
        + b',"value":999999999999.999999999}',
    ]
    path = tmp_path / "concatenated.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = ingest_files(
        warehouse, METERS, [path], ingested_at=datetime(2026, 11, 25, tzinfo=UTC)
    )
    assert (summary.total.received, summary.total.accepted) == (4, 4), summary.total
    stored = dict(warehouse.query_rows("SELECT event_id, value FROM usage_events"))
    assert {k: Decimal(v) for k, v in stored.items()} == {
        "a": Decimal(1),
        "b": Decimal("123456789012.123456789"),
        "c": Decimal("-0.000000001"),
        "d": Decimal("999999999999.999999999"),
    }


# --- 6: a Parquet file of many small row groups -------------------------------------------------


def test_a_parquet_file_of_many_row_groups_is_read_in_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "streamed.parquet"
    ids = [f"e{i}" for i in range(500)]
    table = pa.table(
        {
            "event_id": ids,
            "customer_id": ["c"] * 500,
            "meter": ["tokens"] * 500,
            "timestamp": ["2026-11-20T10:00:00Z"] * 500,
        }
    )
    pq.write_table(table, path, row_group_size=1)
    assert pq.ParquetFile(path).metadata.num_row_groups == 500
    seqs: list[int] = []

    def reserve(n: int) -> int:
        seqs.append(n)
        return sum(seqs) - n

    batches = list(read_batches(path, 200, reserve))
    assert [b.table.num_rows for b in batches] == [200, 200, 100]
    assert seqs == [200, 200, 100]
    staged = pa.concat_tables(b.table for b in batches)
    assert staged.column("source_line").to_pylist() == list(range(1, 501))
    assert staged.column("event_id").to_pylist() == ids


# --- 7: a price version at the limits of the calendar -------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "1999-12-31", "2100-01-01", "9999-12-31"])
def test_a_price_version_outside_the_subscription_days_is_refused(tmp_path: Path, day: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(with_version("standard", "fin_resolution", day))
    with pytest.raises(LoadError) as refused:
        read_catalog(path)
    assert refused.value.problems == [
        "plans[0] (standard).prices[3] (fin_resolution).versions[1].effective_from:"
        f" {day} is outside 2000-01-01 .. 2099-12-31"
    ]


@pytest.mark.parametrize("day", ["2000-01-01", "2099-12-31"])
def test_a_price_version_on_the_first_and_last_day_is_read(tmp_path: Path, day: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_bytes(with_version("standard", "fin_resolution", day))
    assert day in {v.effective_from.isoformat() for v in read_catalog(path).versions}


# --- 8: a Parquet struct naming a field twice ---------------------------------------------------


def test_a_parquet_struct_naming_a_property_twice_refuses_that_file(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    twice = pa.StructArray.from_arrays(
        [pa.array(["x", "y"]), pa.array(["eu", "us"])],
        fields=[pa.field("model", pa.string()), pa.field("model", pa.string())],
    )
    bad = tmp_path / "twice.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": ["p1", "p2"],
                "customer_id": ["c", "c"],
                "meter": ["tokens", "tokens"],
                "timestamp": ["2026-11-20T10:00:00Z"] * 2,
                "properties": twice,
            }
        ),
        bad,
    )
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"event_id":"g1","customer_id":"c","meter":"tokens","timestamp":"2026-11-20T10:00:00Z"}\n'
    )
    at = datetime(2026, 11, 25, tzinfo=UTC)
    summary = ingest_files(warehouse, METERS, [bad, good], ingested_at=at)
    assert summary.file_errors == {
        str(bad): f"{bad}: column properties has the field 'model' twice; give each property once"
    }
    assert (summary.total.received, summary.total.accepted) == (1, 1)


# --- 9: what a PostgreSQL ledger cannot store ---------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (b"id: standard", b"id: " + b"s" * 65, "plans[0].id: has 65 characters; at most 64"),
        (
            b"id: seat_essential",
            b"id: " + b"p" * 65,
            "plans[0] (standard).prices[0].id: has 65 characters; at most 64",
        ),
        (
            b"name: Standard (list prices)",
            b"name: " + b"N" * 201,
            "plans[0] (standard).name: has 201 characters; a name is printable text of at"
            " most 200 characters",
        ),
        (
            b"id: standard",
            b'id: "st\\x01andard"',
            "plans[0].id: contains the character U+0001 (a control, format, invisible or"
            " special space character); ids must be printable text",
        ),
        (
            b"name: Standard (list prices)",
            b'name: "Standard\\0"',
            "catalog.plans[0].name: holds the character U+0000 (\\0), which the ledger cannot"
            " store",
        ),
        (
            b"channel: [chat, email, phone, sms]",
            b'"ch\\0": ~',
            "catalog.meters[0].properties.ch\\0: holds the character U+0000 (\\0), which the"
            " ledger cannot store",
        ),
    ],
)
def test_a_catalog_text_the_ledger_cannot_store_is_refused(
    tmp_path: Path, old: bytes, new: bytes, problem: str
) -> None:
    path = _catalog_with(tmp_path, old, new)
    with pytest.raises(LoadError) as refused:
        read_catalog(path)
    assert refused.value.problems == [problem]
