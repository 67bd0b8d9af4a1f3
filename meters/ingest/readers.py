"""Reading usage files into staging batches: every row as text, with where it came from.

Formats: JSON lines (`.jsonl`, `.ndjson`, `.json`), CSV (`.csv`, a header row) and
Parquet (`.parquet`, `.pq`). Fields: event_id, customer_id, meter, timestamp, value,
properties, source. Rows are not judged here: validation happens in the engine
(sql/queries/ingest/classify.sql), so a malformed row still reaches the rejected table
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
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

# Bytes read from a text file at a time; a line may be longer (it is carried over).
BLOCK_BYTES = 16 << 20
# A single line longer than this is not an event: the file is refused.
MAX_LINE_BYTES = 256 << 20
_BOM = b"\xef\xbb\xbf"


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


def _staging(
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
            "csv_header": pa.DictionaryArray.from_arrays(
                pa.array(np.zeros(n, dtype=np.int32)), pa.array([csv_header], pa.string())
            ),
            "raw": raw if raw is not None else _constant("", n),
            "parse_error": parse_error if parse_error is not None else _constant("", n),
            "properties_error": (
                properties_error if properties_error is not None else _constant("", n)
            ),
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


def _unchecked_text(array: pa.Array) -> pa.Array:
    """Binary as text without decoding it: the engine finds bytes that are not UTF-8."""
    if pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.large_binary()).cast(pa.binary())
    return array.view(pa.string())


# ---- text files: physical lines -----------------------------------------------------------


def _split_lines(data: bytes, final: bool) -> tuple[int, np.ndarray, pa.Array, np.ndarray]:
    """Split `data` at newlines (a CR before the newline is dropped too).

    Returns the bytes consumed, the line lengths, the lines as (unvalidated) text, and
    which lines hold more than spaces and tabs. Without `final`, a last line with no
    newline is left for the next block.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    size = len(buf)
    if final and size and (len(ends) == 0 or ends[-1] != size - 1):
        ends = np.append(ends, size)
    if len(ends) == 0:
        return 0, np.zeros(0, np.int64), pa.array([], pa.string()), np.zeros(0, bool)
    consumed = min(int(ends[-1]) + 1, size)
    starts = np.concatenate(([0], ends[:-1] + 1))
    stops = ends.copy()
    last = np.clip(stops - 1, 0, None)
    has_cr = (stops > starts) & (buf[last] == 13)
    stops = stops - has_cr
    lengths = stops - starts
    keep = np.ones(consumed, dtype=bool)
    keep[ends[ends < size]] = False
    keep[stops[has_cr]] = False
    packed = buf[:consumed][keep]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    lines = pa.Array.from_buffers(
        pa.string(),
        len(lengths),
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(packed)],
    )
    printed = np.concatenate(([0], np.cumsum((packed != 32) & (packed != 9) & (packed != 13))))
    content = (printed[offsets[1:]] - printed[offsets[:-1]]) > 0
    return consumed, lengths, lines, content


def _line_blocks(path: Path) -> Iterator[tuple[pa.Array, pa.Array]]:
    """(physical line numbers from 1, line text) of the file's non-blank lines, by block."""
    line_no = 0
    carry = b""
    first = True
    with path.open("rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES)
            data = carry + block if carry else block
            if first:
                first = False
                if data.startswith(_BOM):
                    data = data[len(_BOM) :]
            final = not block
            if not data:
                return
            consumed, lengths, lines, content = _split_lines(data, final)
            carry = data[consumed:]
            if len(carry) > MAX_LINE_BYTES:
                raise UnreadableFile(
                    f"{path}: line {line_no + 1} is longer than {MAX_LINE_BYTES >> 20} MiB; "
                    "is this a text file with one event per line?"
                )
            n = len(lengths)
            if n:
                numbers = np.arange(line_no + 1, line_no + 1 + n, dtype=np.uint64)
                line_no += n
                if content.all():
                    yield pa.array(numbers), lines
                elif content.any():
                    mask = pa.array(content)
                    yield pa.array(numbers[content]), lines.filter(mask)
            if final:
                return


def _line_batches(
    blocks: Iterator[tuple[pa.Array, pa.Array]], batch_rows: int
) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Regroup blocks of lines into batches of `batch_rows` lines (the last one smaller)."""
    numbers: list[pa.Array] = []
    lines: list[pa.Array] = []
    held = 0

    def take() -> tuple[pa.Array, pa.Array]:
        return pa.concat_arrays(numbers), pa.concat_arrays(lines)

    for block_numbers, block_lines in blocks:
        numbers.append(block_numbers)
        lines.append(block_lines)
        held += len(block_lines)
        while held >= batch_rows:
            all_numbers, all_lines = take()
            yield all_numbers[:batch_rows], all_lines[:batch_rows]
            numbers, lines = [all_numbers[batch_rows:]], [all_lines[batch_rows:]]
            held -= batch_rows
    if held:
        yield take()


def read_jsonl(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    # Every non-blank line is a row, whatever it holds.
    for numbers, lines in _line_batches(_line_blocks(path), batch_rows):
        yield Batch(
            source, _staging(source, next_seq(len(lines)), numbers, is_json=True, raw=lines)
        )


def _header(path: Path, names: list[str], where: str) -> dict[str, int]:
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


def read_csv(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    """CSV (RFC 4180 quoting, comma-separated, one row per line: a quoted field cannot
    span lines). The fields of each line are split in the engine, so a broken line is
    still a row, rejected with its text and line number."""
    batches = _line_batches(_line_blocks(path), batch_rows)
    first = next(batches, None)
    if first is None:
        return  # an empty file holds no rows
    numbers, lines = first
    header_line = int(numbers[0].as_py())
    try:
        header_text = lines.cast(pa.binary())[0].as_py().decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(
            f"{path}: the header (line {header_line}) is not UTF-8 text; save the file as UTF-8"
        ) from None
    names = next(csv.reader([header_text]))
    positions = _header(path, names, f"the header (line {header_line})")
    header = ",".join(sorted(positions, key=positions.__getitem__))

    def batch(numbers: pa.Array, lines: pa.Array) -> Batch:
        return Batch(
            source,
            _staging(
                source, next_seq(len(lines)), numbers, is_json=False, raw=lines, csv_header=header
            ),
        )

    if len(lines) > 1:
        yield batch(numbers[1:], lines[1:])
    for numbers, lines in batches:
        yield batch(numbers, lines)


# ---- Parquet ------------------------------------------------------------------------------


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_null(kind)
    )


def _value_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


# Which typed Parquet columns each field takes (besides text): anything else is refused.
_TYPED: dict[str, tuple[Callable[[pa.DataType], bool], str]] = {
    "event_id": (pa.types.is_integer, "text or integers"),
    "customer_id": (pa.types.is_integer, "text or integers"),
    "meter": (lambda _kind: False, "text"),
    "timestamp": (
        lambda kind: pa.types.is_timestamp(kind) and kind.tz is not None,
        "text (RFC 3339) or a timestamp with a time zone",
    ),
    "value": (
        lambda kind: (
            pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_floating(kind)
        ),
        "text or numbers",
    ),
    "properties": (
        lambda kind: pa.types.is_map(kind) or pa.types.is_struct(kind),
        "text (a JSON object), a map or a struct",
    ),
    "source": (lambda _kind: False, "text"),
}


def _check_column_type(path: Path, field: str, kind: pa.DataType) -> None:
    kind = _value_type(kind)
    accepts, what = _TYPED[field]
    if not (_is_text(kind) or accepts(kind)):
        raise UnreadableFile(f"{path}: column {field} has type {kind}; it must hold {what}")


def _as_text(array: pa.Array) -> pa.Array:
    """A checked column as text, the way a person would type it."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    kind = array.type
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    if _is_text(kind):
        return _unchecked_text(array)
    if pa.types.is_timestamp(kind):
        # RFC 3339 in UTC, with the column's own sub-second digits.
        utc = array.cast(pa.timestamp(kind.unit, "UTC"))
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return pc.strftime(utc, format=fmt)
    return array.cast(pa.string())


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _typed_properties(array: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A map or struct properties column as JSON text, and per row why it is refused.

    Rule: property values are strings in every format. A struct field or map value of
    another type (number, timestamp, decimal, boolean...) rejects the row as
    bad_properties, naming the property and its type; a null struct field is an absent
    property. (Slow path: one Python object per row.)
    """
    kind = array.type
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        bad = [
            f
            for f in fields
            if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
        ]
        texts: list[str | None] = []
        errors: list[str] = []
        for row in array.to_pylist():
            if row is None:
                texts.append(None)
                errors.append("")
                continue
            wrong = [f for f in bad if row.get(f.name) is not None]
            errors.append(
                ""
                if not wrong
                else f"property {wrong[0].name} is of type {wrong[0].type}; property values "
                "must be strings"
            )
            texts.append(_json_text({k: v for k, v in row.items() if v is not None and not wrong}))
        return pa.array(texts, pa.string()), pa.array(errors, pa.string())
    # A map: keys must be text; values strings.
    value_type = kind.item_type
    strings = pa.types.is_string(value_type) or pa.types.is_large_string(value_type)
    texts = []
    errors = []
    for row in array.to_pylist():
        if row is None:
            texts.append(None)
            errors.append("")
            continue
        pairs = [(str(k), v) for k, v in row]
        wrong = [k for k, v in pairs if not (strings and isinstance(v, str))]
        if wrong:
            texts.append(None)
            errors.append(
                f"property {wrong[0]} is of type {value_type}"
                + (" (null)" if strings else "")
                + "; property values must be strings"
            )
            continue
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            texts.append(None)
            errors.append(f"properties repeat the key {next(k for k in keys if keys.count(k) > 1)}")
            continue
        texts.append(_json_text(dict(pairs)))
        errors.append("")
    return pa.array(texts, pa.string()), pa.array(errors, pa.string())


def read_parquet(
    path: Path, source: str, batch_rows: int, next_seq: Callable[[int], int]
) -> Iterator[Batch]:
    try:
        # Pages written with a checksum are verified, so a flipped byte is an error
        # instead of a wrong value.
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        schema = parquet.schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableFile(f"{path}: not a readable Parquet file ({exc})") from None
    positions = _header(path, list(schema.names), "the Parquet columns")
    names = {field: schema.names[i] for field, i in positions.items()}
    for field, name in names.items():
        _check_column_type(path, field, schema.field(name).type)
    row = 0
    batches = parquet.iter_batches(batch_size=batch_rows, columns=list(names.values()))
    while True:
        try:
            record_batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(
                f"{path}: the Parquet file is damaged after row {row} ({exc}); "
                + (f"rows 1-{row} were ingested; " if row else "")
                + "re-send the repaired file (rows already accepted count as duplicates)"
            ) from None
        if record_batch is None:
            return
        n = record_batch.num_rows
        columns: dict[str, pa.Array] = {}
        properties_error = None
        for field, name in names.items():
            array = record_batch.column(name)
            kind = _value_type(array.type)
            if field == "properties" and (pa.types.is_map(kind) or pa.types.is_struct(kind)):
                if pa.types.is_dictionary(array.type):
                    array = array.cast(kind)
                columns[field], properties_error = _typed_properties(array)
            else:
                columns[field] = _as_text(array)
        numbers = _numbers(row + 1, n)
        row += n
        yield Batch(
            source,
            _staging(
                source,
                next_seq(n),
                numbers,
                is_json=False,
                columns=columns,
                properties_error=properties_error,
            ),
        )


READERS = {"jsonl": read_jsonl, "csv": read_csv, "parquet": read_parquet}


def read_batches(path: Path, batch_rows: int, next_seq: Callable[[int], int]) -> Iterator[Batch]:
    """Staging batches of at most `batch_rows` rows from one file.

    Raises UnreadableFile (naming the file) for a missing or unknown file at once, and
    while iterating for a file that cannot be read to its end.
    """
    if not path.is_file():
        raise UnreadableFile(f"{path}: no such file")
    reader = READERS[file_format(path)]

    def guarded() -> Iterator[Batch]:
        try:
            yield from reader(path, str(path), batch_rows, next_seq)
        except OSError as exc:
            raise UnreadableFile(f"{path}: cannot be read ({exc.strerror or exc})") from None

    return guarded()
