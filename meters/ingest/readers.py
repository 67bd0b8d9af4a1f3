"""Reading usage files into staging batches: every row as text, with where it came from.

Formats: JSON lines (`.jsonl`, `.ndjson`, `.json`), CSV (`.csv`, a header row) and
Parquet (`.parquet`, `.pq`). Fields: event_id, customer_id, meter, timestamp, value,
properties, source. Rows are not judged here: validation happens in the engine
(sql/queries/ingest/validate.sql), so a malformed row still reaches the rejected table
with its raw text and its physical line number. Only what makes a whole file unreadable
is refused here, as `UnreadableFile` naming the file: a missing file, a damaged Parquet
file, a header or column set that cannot be mapped onto the event fields.

Text is staged as it arrived, without decoding: bytes that are not UTF-8 are found by
the engine and reject the row (never the file), so two ids that differ only in such bytes
are never merged into one.

Header rule (CSV columns and Parquet column names): names are matched after trimming
surrounding spaces and lower-casing; a name that is not an event field, a field named
twice, or a missing required field (event_id, customer_id, meter, timestamp) is a
file-level error naming the column. A UTF-8 byte-order mark at the start of a text file
is skipped. A line of only spaces is not a row.

This module holds what every format shares (the staging table, the header rule, the
dispatch by file type); meters.ingest.text_formats reads JSON lines and CSV,
meters.ingest.parquet_format Parquet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Event fields as they appear in files; `source` is stored as event_source.
FIELDS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties", "source")
REQUIRED = ("event_id", "customer_id", "meter", "timestamp")

STAGING_SCHEMA = pa.schema(
    [
        ("seq", pa.uint64()),
        ("source", pa.string()),
        ("source_line", pa.uint64()),
        ("is_json", pa.uint8()),
        # A CSV line's field names in file order (comma-joined, normalized); '' otherwise.
        ("csv_header", pa.dictionary(pa.int32(), pa.string())),
        ("raw", pa.string()),
        ("parse_error", pa.string()),
        ("properties_error", pa.string()),
        # Why a typed value cannot be read exactly (a Parquet double); '' otherwise.
        ("value_error", pa.string()),
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("meter", pa.string()),
        ("timestamp", pa.string()),
        ("value", pa.string()),
        ("properties", pa.string()),
        ("event_source", pa.string()),
    ]
)

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class UnreadableFile(ValueError):
    """A file that cannot be read at all, or not to its end; the message names it."""


@dataclass
class Batch:
    """One staging batch: rows of a single source file."""

    source: str
    table: pa.Table


def file_format(path: Path) -> str:
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise UnreadableFile(
            f"{path}: unknown file type {path.suffix!r}; use .jsonl, .csv or .parquet"
        ) from None


def count_rows(path: Path) -> int | None:
    """Rows in a file when known cheaply (Parquet metadata), else None (also when the
    file cannot be read: reading it reports why)."""
    try:
        if file_format(path) == "parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
    except (UnreadableFile, OSError, pa.ArrowException):
        return None
    return None


def staging_table(
    source: str,
    first_seq: int,
    lines: pa.Array,
    *,
    is_json: bool,
    raw: pa.Array | None = None,
    parse_error: pa.Array | None = None,
    columns: dict[str, pa.Array] | None = None,
    csv_header: str = "",
    properties_error: pa.Array | None = None,
    value_error: pa.Array | None = None,
) -> pa.Table:
    """A staging batch (STAGING_SCHEMA) of `len(lines)` rows of `source`, numbered from
    `first_seq`: `lines` are their physical line (or row) numbers; a text format gives
    the `raw` line, Parquet and the Python API the field `columns` (absent ones null)."""
    n = len(lines)
    empty_text = pa.nulls(n, pa.string())
    columns = columns or {}
    return pa.table(
        {
            "seq": line_numbers(first_seq, n),
            "source": _constant(source, n),
            "source_line": lines.cast(pa.uint64()),
            "is_json": pa.array(np.full(n, 1 if is_json else 0, dtype=np.uint8)),
            "csv_header": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([csv_header], pa.string())
            ),
            "raw": raw if raw is not None else _constant("", n),
            "parse_error": parse_error if parse_error is not None else _constant("", n),
            "properties_error": (
                properties_error if properties_error is not None else _constant("", n)
            ),
            "value_error": value_error if value_error is not None else _constant("", n),
            # `source` (the event's own) is staged as event_source, beside the file's.
            **{
                ("event_source" if field == "source" else field): columns.get(field, empty_text)
                for field in FIELDS
            },
        },
        schema=STAGING_SCHEMA,
    )


def holds_lines(table: pa.Table) -> bool:
    """Whether any row of a staging batch (STAGING_SCHEMA) is a JSON or CSV line; if not,
    every row is field columns (Parquet, the Python API)."""
    if pc.any(pc.equal(table["is_json"], 1)).as_py():
        return True
    headers = table["csv_header"].cast(pa.string())
    return bool(pc.any(pc.not_equal(headers, "")).as_py())


def line_numbers(first: int, n: int) -> pa.Array:
    """The numbers first, first + 1, ... (n of them), as staged."""
    return pa.array(np.arange(first, first + n, dtype=np.uint64))


def _constant(text: str, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()).fill_null(text)


def column_positions(path: Path, names: list[str], where: str) -> dict[str, int]:
    """Map event fields to column positions; refuse what cannot be mapped (module rule)."""
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        field = name.strip().lower()
        if field not in FIELDS:
            raise UnreadableFile(
                f"{path}: unknown column {name!r} in {where}; the columns are "
                f"{', '.join(FIELDS)} (names are matched ignoring case and surrounding spaces)"
            )
        if field in positions:
            raise UnreadableFile(
                f"{path}: column {field} appears twice in {where} (columns "
                f"{positions[field] + 1} and {index + 1}); keep one"
            )
        positions[field] = index
    missing = [f for f in REQUIRED if f not in positions]
    if missing:
        raise UnreadableFile(
            f"{path}: {where} has no column {', '.join(missing)} (required: {', '.join(REQUIRED)})"
        )
    return positions


def read_batches(path: Path, batch_rows: int, next_seq: Callable[[int], int]) -> Iterator[Batch]:
    """Staging batches of at most `batch_rows` rows from one file.

    Raises UnreadableFile (naming the file) for a missing or unknown file at once, and
    while iterating for a file that cannot be read to its end.
    """
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    reader = _reader(file_format(path))

    def guarded() -> Iterator[Batch]:
        try:
            yield from reader(path, str(path), batch_rows, next_seq)
        except OSError as exc:
            raise UnreadableFile(f"{path}: cannot be read ({exc.strerror or exc})") from None

    return guarded()


def _reader(kind: str) -> Callable[[Path, str, int, Callable[[int], int]], Iterator[Batch]]:
    # The format modules build on this one's staging table, so they are imported here,
    # when a file is first read.
    from meters.ingest import parquet_format, text_formats

    readers = {
        "jsonl": text_formats.read_jsonl,
        "csv": text_formats.read_csv,
        "parquet": parquet_format.read_parquet,
    }
    return readers[kind]
