"""Reading Parquet files into staging batches: columns by name (the header rule of
meters.ingest.readers), text columns as they are, typed columns as a person would type
them (integers, decimals, timestamps with a zone; map or struct properties as JSON), and
anything else refused for the whole file, naming the column and what it must hold.

Numbers in a `value` column: integer and decimal columns are exact, and are written out
digit for digit (a decimal(38, 20) holding 1.5 is the text 1.50000000000000000000, which
the engine reads as 1.5). A float or double column holds binary fractions, not decimals:
each value is read as the shortest decimal that converts back to the same float (what
Python's repr and Arrow's cast print: the double nearest 0.1 is 0.1). Any decimal of at
most 15 significant digits (6 for a float) comes back this way unchanged (DBL_DIG and
FLT_DIG, C11 section 5.2.4.2.2); a value that needs more cannot be told from the other
decimals that became the same double (123456789012.123456789 and 123456789012.12346 are
one double), so its row is rejected as value_out_of_range, never stored rounded. A half
float column (3 digits) is refused for the whole file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meters.ingest.readers import (
    Batch,
    UnreadableFile,
    column_positions,
    line_numbers,
    staging_table,
)


def _unchecked_text(array: pa.Array) -> pa.Array:
    """Binary as text without decoding it: the engine finds bytes that are not UTF-8."""
    if pa.types.is_large_binary(array.type) or pa.types.is_large_string(array.type):
        array = array.cast(pa.large_binary()).cast(pa.binary())
    return array.view(pa.string())


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
            pa.types.is_integer(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_float32(kind)
            or pa.types.is_float64(kind)
        ),
        "text or numbers (integers, decimals, float or double)",
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
    if pa.types.is_struct(kind):  # a struct may name a field twice (no row could be read)
        names = [kind.field(i).name for i in range(kind.num_fields)]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise UnreadableFile(
                f"{path}: column {field} has the field {twice!r} twice; give each property once"
            )


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


# The significant digits each float type gives back unchanged (module docstring).
_FLOAT_DIGITS = {pa.float32(): (6, "float"), pa.float64(): (15, "double")}


def _float_values(array: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A float or double `value` column as text, and per row why it is refused ('' when
    it is not): a value whose shortest decimal has more significant digits than the
    type gives back unchanged (module docstring). Both arrays have the column's length."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    limit, name = _FLOAT_DIGITS[array.type]
    text = array.cast(pa.string())
    mantissa = pc.replace_substring_regex(text, r"[eE].*$", "")
    digits = pc.utf8_length(pc.utf8_trim(pc.replace_substring_regex(mantissa, "[^0-9]", ""), "0"))
    error = pc.if_else(
        pc.greater(digits, limit),
        pc.binary_join_element_wise(
            "value ",
            text,
            f" comes from a {name} column and has ",
            digits.cast(pa.string()),
            f" significant digits; a {name} keeps {limit} exactly, so the number written "
            "into it is not known (values are never rounded): write the value column as "
            "decimal or text",
            "",
        ),
        "",
    )
    return text, error.fill_null("")


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
    positions = column_positions(path, list(schema.names), "the Parquet columns")
    names = {field: schema.names[i] for field, i in positions.items()}
    for field, name in names.items():
        _check_column_type(path, field, schema.field(name).type)
    row = 0
    batches = parquet.iter_batches(batch_size=batch_rows, columns=list(names.values()))
    for record_batch in _regrouped(path, batches, batch_rows):
        n = record_batch.num_rows
        columns: dict[str, pa.Array] = {}
        properties_error = value_error = None
        for field, name in names.items():
            array = record_batch.column(name)
            kind = _value_type(array.type)
            if field == "properties" and (pa.types.is_map(kind) or pa.types.is_struct(kind)):
                if pa.types.is_dictionary(array.type):
                    array = array.cast(kind)
                columns[field], properties_error = _typed_properties(array)
            elif field == "value" and pa.types.is_floating(kind):
                columns[field], value_error = _float_values(array)
            else:
                columns[field] = _as_text(array)
        numbers = line_numbers(row + 1, n)
        row += n
        yield Batch(
            source,
            staging_table(
                source,
                next_seq(n),
                numbers,
                is_json=False,
                columns=columns,
                properties_error=properties_error,
                value_error=value_error,
            ),
        )


def _regrouped(
    path: Path, batches: Iterator[pa.RecordBatch], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The file's record batches as batches of `batch_rows` rows (the last one smaller).
    A record batch never spans two row groups: a file written one row group per few rows
    would otherwise be ingested a few rows per batch (300 rows took minutes)."""
    held: list[pa.RecordBatch] = []
    count = given = 0
    while True:
        try:
            batch = next(batches, None)
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableFile(
                f"{path}: the Parquet file is damaged after row {given} ({exc}); "
                + (f"rows 1-{given} were ingested; " if given else "")
                + "re-send the repaired file (rows already accepted count as duplicates)"
            ) from None
        if batch is not None:
            held.append(batch)
            count += batch.num_rows
        while count >= batch_rows or (batch is None and count):
            whole = pa.concat_batches(held) if len(held) > 1 else held[0]
            out, rest = whole.slice(0, batch_rows), whole.slice(batch_rows)
            held, count = ([rest] if rest.num_rows else []), rest.num_rows
            given += out.num_rows
            yield out
        if batch is None:
            return
