"""Reading usage files into staging batches: every row as text, with where it came from.

Formats: JSON lines (`.jsonl`, `.ndjson`), CSV (`.csv`, header row) and Parquet
(`.parquet`). Fields: event_id, customer_id, meter, timestamp, value, properties,
source. Rows are not judged here: validation happens in the engine (sql/queries/ingest),
so a malformed row still reaches the rejected table with its raw text.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# Event fields as they appear in files; `source` is stored as event_source.
FIELDS = ("event_id", "customer_id", "meter", "timestamp", "value", "properties", "source")

STAGING_SCHEMA = pa.schema(
    [
        ("seq", pa.uint64()),
        ("source", pa.string()),
        ("source_line", pa.uint64()),
        ("is_json", pa.uint8()),
        ("raw", pa.string()),
        ("parse_error", pa.string()),
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
    """A file that cannot be read at all (missing, unknown format, not a table)."""


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
    """Rows in a file when known cheaply (Parquet metadata), else None."""
    if file_format(path) == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _staging(
    source: str,
    first_seq: int,
    lines: pa.Array,
    *,
    is_json: bool,
    raw: pa.Array | None = None,
    parse_error: pa.Array | None = None,
    columns: dict[str, pa.Array] | None = None,
) -> pa.Table:
    n = len(lines)
    empty_text = pa.nulls(n, pa.string())
    columns = columns or {}
    return pa.table(
        {
            "seq": _numbers(first_seq, n),
            "source": _constant(source, n),
            "source_line": lines.cast(pa.uint64()),
            "is_json": pa.array(np.full(n, 1 if is_json else 0, dtype=np.uint8)),
            "raw": raw if raw is not None else _constant("", n),
            "parse_error": parse_error if parse_error is not None else _constant("", n),
            # `source` (the event's own) is staged as event_source, beside the file's.
            **{
                ("event_source" if field == "source" else field): columns.get(field, empty_text)
                for field in FIELDS
            },
        },
        schema=STAGING_SCHEMA,
    )


def _numbers(first: int, n: int) -> pa.Array:
    return pa.array(np.arange(first, first + n, dtype=np.uint64))


def _constant(text: str, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()).fill_null(text)


def _decode_lines(chunk: list[bytes]) -> tuple[pa.Array, pa.Array]:
    """Lines as UTF-8 text, and a parse error for each line that is not UTF-8."""
    binary = pa.array(chunk, pa.binary())
    try:
        return binary.cast(pa.string()), pa.array([""] * len(chunk), pa.string())
    except pa.ArrowInvalid:
        texts, errors = [], []
        for line in chunk:
            try:
                texts.append(line.decode("utf-8"))
                errors.append("")
            except UnicodeDecodeError as exc:
                texts.append(line.decode("utf-8", errors="replace"))
                errors.append(f"the line is not valid UTF-8 ({exc.reason} at byte {exc.start})")
        return pa.array(texts, pa.string()), pa.array(errors, pa.string())


def read_jsonl(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    # A blank line is not a row; every other line is, whatever it holds.
    line_no = 0
    with path.open("rb") as handle:
        while True:
            chunk: list[bytes] = []
            for line in handle:
                chunk.append(line)
                if len(chunk) >= batch_rows:
                    break
            if not chunk:
                return
            texts, errors = _decode_lines(chunk)
            texts = pc.utf8_rtrim(texts, characters="\r\n")
            numbers = _numbers(line_no + 1, len(chunk))
            line_no += len(chunk)
            keep = pc.not_equal(pc.utf8_trim_whitespace(texts), "")
            texts, errors, numbers = texts.filter(keep), errors.filter(keep), numbers.filter(keep)
            if len(texts):
                yield Batch(
                    source,
                    _staging(
                        source,
                        next_seq(len(texts)),
                        numbers,
                        is_json=True,
                        raw=texts,
                        parse_error=errors,
                    ),
                )


def _as_text(column: pa.ChunkedArray, field: str) -> pa.Array:
    """A column as text. Typed Parquet columns are written the way a person would type them."""
    array = column.combine_chunks()
    kind = array.type
    if pa.types.is_string(kind):
        return array
    if pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return array.cast(pa.string())
    if pa.types.is_map(kind) or pa.types.is_struct(kind):
        # Slow path, for files that carry properties as a map or struct.
        return pa.array(
            [None if v is None else json.dumps(dict(v)) for v in array.to_pylist()], pa.string()
        )
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _decode_lines(array.to_pylist())[0]
    try:
        # Timestamps with a zone become "2026-10-01 12:00:00.000Z"; without one they
        # have no zone and are refused as ambiguous, as in any other format.
        return array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise UnreadableFile(
            f"column {field} of type {kind} cannot be read as text: {exc}"
        ) from None


def read_parquet(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UnreadableFile(f"{path}: not a readable Parquet file: {exc}") from None
    present = [f for f in FIELDS if f in parquet.schema_arrow.names]
    row = 0
    for record_batch in parquet.iter_batches(batch_size=batch_rows, columns=present):
        table = pa.Table.from_batches([record_batch])
        n = table.num_rows
        columns = {f: _as_text(table.column(f), f) for f in present}
        numbers = _numbers(row + 1, n)
        row += n
        yield Batch(source, _staging(source, next_seq(n), numbers, is_json=False, columns=columns))


def read_csv(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        return
    invalid: list[tuple[int, str, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        reason = f"the row has {row.actual_columns} fields, the header has {row.expected_columns}"
        invalid.append((row.number if row.number and row.number > 0 else -1, row.text, reason))
        return "skip"

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=64 << 20),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            include_columns=[f for f in FIELDS if f in header],
        ),
    )
    # Physical line numbers: the header is line 1; a row's line counts the rows before
    # it, good ones and broken ones (a quoted field spanning lines shifts this).
    seen = 0
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush_invalid() -> Iterator[Batch]:
        if not invalid:
            return
        lines = pa.array([n if n > 0 else 0 for n, _, _ in invalid], pa.uint64())
        yield Batch(
            source,
            _staging(
                source,
                next_seq(len(invalid)),
                lines,
                is_json=False,
                raw=pa.array([text for _, text, _ in invalid], pa.string()),
                parse_error=pa.array([reason for _, _, reason in invalid], pa.string()),
            ),
        )
        invalid.clear()

    def flush() -> Iterator[Batch]:
        nonlocal pending, pending_rows, seen
        if pending:
            table = pa.concat_tables(pending)
            n = table.num_rows
            numbers = _numbers(seen + 2, n)
            seen += n
            columns = {f: table.column(f).combine_chunks() for f in table.column_names}
            yield Batch(
                source, _staging(source, next_seq(n), numbers, is_json=False, columns=columns)
            )
            pending, pending_rows = [], 0

    for record_batch in reader:
        pending.append(pa.Table.from_batches([record_batch]))
        pending_rows += record_batch.num_rows
        if pending_rows >= batch_rows:
            yield from flush()
            yield from flush_invalid()
    yield from flush()
    yield from flush_invalid()


READERS = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


def read_batches(path: Path, batch_rows: int, next_seq: Callable[[int], int]) -> Iterator[Batch]:
    """Staging batches of at most about `batch_rows` rows from one file."""
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    return READERS[file_format(path)](path, str(path), batch_rows, next_seq)
