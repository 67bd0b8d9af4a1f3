"""Reading Parquet files into staging batches: columns by name (the header rule of
meters.ingest.readers), text columns as they are, typed columns as a person would type
them (integers, decimals, timestamps with a zone; map or struct properties as JSON), and
anything else refused for the whole file, naming the column and what it must hold."""

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
    positions = column_positions(path, list(schema.names), "the Parquet columns")
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
            ),
        )
