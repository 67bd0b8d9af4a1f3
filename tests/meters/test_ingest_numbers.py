"""Numbers are read exactly from their text (issue 11 follow-up): a bare JSON number, a CSV
cell, a Parquet text or decimal column is stored as the Decimal its text names, or
rejected as value_out_of_range; never read through a double, never rounded. A Parquet
float or double column is read as the shortest decimal that is the same float, and
refused past the digits the type holds (meters/ingest/parquet_format.py). The golden
cases are in cases/rejections.yaml; here, many generated hard numbers and typed columns."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meters.catalog import Aggregation, MeterCatalog, MeterDefinition
from meters.ingest.ingestor import IngestSummary, ingest_events, ingest_files
from meters.warehouse.base import Warehouse

AS_OF = datetime(2026, 11, 25, tzinfo=UTC)
TS = "2026-11-20T10:00:00Z"
LIMIT = Decimal(10) ** 12


def ingest(wh: Warehouse, catalog: MeterCatalog, path: Path) -> IngestSummary:
    return ingest_files(wh, catalog, [path], ingested_at=AS_OF)


def outcome(wh: Warehouse) -> dict[str, tuple[str, Any]]:
    """event_id -> ('accepted', the stored Decimal) or (reason, detail)."""
    got: dict[str, tuple[str, Any]] = {
        eid: ("accepted", value)
        for eid, value in wh.query_rows("SELECT event_id, value FROM usage_events")
    }
    for eid, reason, detail in wh.query_rows(
        "SELECT event_id, reason, detail FROM usage_events_rejected"
    ):
        got[eid] = (reason, detail)
    return got


def expected(text: str) -> tuple[str, Decimal | None]:
    """The README's rule, from Python's exact Decimal of the text: |value| <= 10^12 and at
    most 9 decimal places once written out, else value_out_of_range."""
    with localcontext() as ctx:
        ctx.prec = 200
        number = Decimal(text)
        if abs(number) > LIMIT or number != number.quantize(Decimal("1e-9")):
            return "value_out_of_range", None
        return "accepted", number


def hard_number(rng: random.Random) -> str:
    """A JSON number text that a double may not hold: up to 30 significant digits, a
    fraction, an exponent, leading or trailing zeros, a minus zero."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
    integer = digits.lstrip("0") or "0"
    split = rng.randint(0, len(integer))
    text = integer[:split] or "0"
    if split < len(integer) or rng.random() < 0.2:
        text += "." + (integer[split:] or "0") + "0" * rng.choice([0, 0, 3, 15])
    if text.startswith("0") and len(text) > 1 and text[1] != ".":
        text = text.lstrip("0") or "0"
    if rng.random() < 0.4:
        text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 30))
    return ("-" if rng.random() < 0.3 else "") + text


def json_line(rng: random.Random, event_id: str, number: str) -> str:
    """One event with `number` as the bare value, keys in a random order, random spaces,
    and a string that looks like a value key with a number (it is not one)."""
    space = lambda: rng.choice(["", " ", "\t", "  "])  # noqa: E731
    fields = [
        ("event_id", json.dumps(event_id)),
        ("customer_id", json.dumps(rng.choice(["c1", 'c"value":1e99,"']))),
        ("meter", '"seats"'),
        ("timestamp", json.dumps(TS)),
        ("value", number),
        ("properties", '{"seat_type":"expert"}'),
    ]
    rng.shuffle(fields)
    body = ",".join(f'{space()}"{k}"{space()}:{space()}{v}{space()}' for k, v in fields)
    return "{" + body + "}"


def test_generated_hard_numbers_are_exact_in_every_text_format(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    rng = random.Random(11)
    numbers = [hard_number(rng) for _ in range(600)]
    # The edges of the limits, each side.
    numbers += [
        "1000000000000", "-1000000000000", "1e12", "1.000000000000000000001e12",
        "999999999999.999999999", "-999999999999.999999999", "0.000000001", "-1e-9",
        "1e-10", "-0", "-0.0", "0e-50", "-0E+400", "1000000000000.000000001",
        "123456789012.123456789", "1e400", "1e-400",
        # Longer than Decimal(38, 9) holds, though the number fits.
        "1" + "0" * 50 + "e-50", "0." + "0" * 50 + "1e51", "-" + "9" * 21 + "e-9",
        "123456789012345678901234567890123456789e-27", "1" + "0" * 40 + "e-28",
    ]  # fmt: skip
    jsonl = tmp_path / "numbers.jsonl"
    jsonl.write_text("".join(json_line(rng, f"j{i}", n) + "\n" for i, n in enumerate(numbers)))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["event_id", "customer_id", "meter", "timestamp", "value", "properties"])
    for i, n in enumerate(numbers):
        writer.writerow([f"c{i}", "c1", "seats", TS, n, '{"seat_type":"expert"}'])
    csv_path = tmp_path / "numbers.csv"
    csv_path.write_text(text.getvalue())
    parquet = tmp_path / "numbers.parquet"
    pq.write_table(
        pa.table(
            {
                "event_id": [f"p{i}" for i in range(len(numbers))],
                "customer_id": ["c1"] * len(numbers),
                "meter": ["seats"] * len(numbers),
                "timestamp": [TS] * len(numbers),
                "value": numbers,
                "properties": ['{"seat_type":"expert"}'] * len(numbers),
            }
        ),
        parquet,
    )
    for path in (jsonl, csv_path, parquet):
        summary = ingest(warehouse, catalog, path)
        assert summary.file_errors == {}
    got = outcome(warehouse)
    wrong = []
    accepted = rejected = 0
    for prefix in "jcp":
        for i, n in enumerate(numbers):
            reason, value = expected(n)
            have = got.get(f"{prefix}{i}")
            if have is None or have[0] != reason or (value is not None and have[1] != value):
                wrong.append(f"{prefix}{i} {n}: expected {reason} {value}, got {have}")
            elif reason == "accepted":
                accepted += 1
            else:
                rejected += 1
                assert n in have[1], have  # the detail shows the number as written
    assert not wrong, "\n".join(wrong[:20])
    # Both outcomes are well represented, so the rule is tested both ways.
    assert accepted > 300 and rejected > 300


def test_bare_numbers_beyond_a_double_never_change_the_event(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    """The number a double would give differs from the one written; what is stored is the
    written one. A whole file of them: every line takes the exact path."""
    path = tmp_path / "bare.jsonl"
    values = [Decimal("123456789012.123456789") + Decimal(i) / 10**9 for i in range(2000)]
    path.write_text(
        "".join(
            f'{{"event_id":"b{i}","customer_id":"c1","meter":"seats","timestamp":"{TS}",'
            f'"value":{v},"properties":{{"seat_type":"expert"}}}}\n'
            for i, v in enumerate(values)
        )
    )
    assert float(values[1]) == float(values[2])  # the double cannot tell them apart
    summary = ingest(warehouse, catalog, path)
    assert summary.total.accepted == 2000
    stored = dict(warehouse.query_rows("SELECT event_id, value FROM usage_events"))
    assert [stored[f"b{i}"] for i in range(2000)] == values
    assert warehouse.query_rows("SELECT sum(value) FROM usage_events")[0][0] == sum(values)


def _parquet(path: Path, value: pa.Array) -> Path:
    n = len(value)
    pq.write_table(
        pa.table(
            {
                "event_id": [f"v{i}" for i in range(n)],
                "customer_id": ["c1"] * n,
                "meter": ["seats"] * n,
                "timestamp": [TS] * n,
                "value": value,
                "properties": ['{"seat_type":"expert"}'] * n,
            }
        ),
        path,
    )
    return path


D = Decimal
OUT = "value_out_of_range"

TYPED_CASES = [
    (
        "decimal128(38, 9)",
        pa.array(
            [D("123456789012.123456789"), D("-999999999999.999999999"), D("1000000000000"),
             D("1000000000000.000000001"), D("-0.000000001")],
            pa.decimal128(38, 9),
        ),
        [D("123456789012.123456789"), D("-999999999999.999999999"), D("1000000000000"),
         (OUT, "at most 1000000000000"), D("-0.000000001")],
    ),
    (
        "decimal128(38, 20)",
        pa.array([D("1.5"), D("1E-10"), D("123456789012.123456789")], pa.decimal128(38, 20)),
        [D("1.5"), (OUT, "more than 9 decimal places"), D("123456789012.123456789")],
    ),
    (
        "decimal256(76, 30)",
        pa.array([D("123456789012.123456789"), D("-1E-30")], pa.decimal256(76, 30)),
        [D("123456789012.123456789"), (OUT, "more than 9 decimal places")],
    ),
    (
        "uint64",
        pa.array([2**64 - 1, 10**12], pa.uint64()),
        [(OUT, "at most 1000000000000"), D(10**12)],
    ),
    (
        "double",
        pa.array(
            [0.1, 2.5, 123456789012.123456789, 1e-9, 999999999999.999, 0.1 + 0.2, -0.0, 1e12,
             float("nan"), float("inf"), 1e-10, 123456789.123456],
            pa.float64(),
        ),
        [D("0.1"), D("2.5"),
         (OUT, "value 1.2345678901212346e+11 comes from a double column and has 17 significant "
               "digits; a double keeps 15 exactly"),
         D("0.000000001"), D("999999999999.999"),
         (OUT, "value 0.30000000000000004 has more than 9 decimal places"),
         D(0), D(10**12), ("non_numeric_value", "nan"), ("non_numeric_value", "inf"),
         (OUT, "more than 9 decimal places"), D("123456789.123456")],
    ),
    (
        "float",
        pa.array(np.array([0.1, 1.5, 16777217, 123456.7, 654321], np.float32)),
        [D("0.1"), D("1.5"),
         (OUT, "value 16777216 comes from a float column and has 8 significant digits; a "
               "float keeps 6 exactly"),
         (OUT, "has 7 significant digits"), D(654321)],
    ),
    (
        "dictionary of double",
        pa.array([0.25, 123456789012.123456789, 0.25]).dictionary_encode(),
        [D("0.25"), (OUT, "has 17 significant digits"), D("0.25")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "column", "want"), TYPED_CASES, ids=[c[0] for c in TYPED_CASES])
def test_typed_parquet_value_columns(
    warehouse: Warehouse,
    catalog: MeterCatalog,
    tmp_path: Path,
    name: str,
    column: pa.Array,
    want: list[Any],
) -> None:
    """Decimal and integer columns are exact; a float column gives the shortest decimal
    that is the same float, refused when it needs more digits than the type holds."""
    summary = ingest(warehouse, catalog, _parquet(tmp_path / "typed.parquet", column))
    assert summary.file_errors == {}
    got = outcome(warehouse)
    for i, expect in enumerate(want):
        have = got[f"v{i}"]
        if isinstance(expect, Decimal):
            assert have == ("accepted", expect), (name, i)
        else:
            assert have[0] == expect[0] and expect[1] in have[1], (name, i, have)


def test_a_half_float_value_column_refuses_the_file(
    warehouse: Warehouse, catalog: MeterCatalog, tmp_path: Path
) -> None:
    path = _parquet(tmp_path / "half.parquet", pa.array(np.array([0.5], np.float16)))
    summary = ingest(warehouse, catalog, path)
    assert (
        "column value has type halffloat; it must hold text or numbers"
        in (summary.file_errors[str(path)])
    )
    assert summary.total.received == 0


# A sum meter's values as each format writes them: (event, its value as written, what a
# period's sum gets from it). Only an absent value counts its default 1; an empty or
# blank text was stored as 1 too (one unit billed for nothing) and is now refused.
SUM_CASES = [
    ("given", "5", D(5)),
    ("absent", None, D(1)),
    ("empty", "", None),
    ("blank", " ", None),
    ("tab", "\t", None),
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "api", "parquet_int"])
def test_a_sum_meter_bills_no_unit_for_an_empty_value(
    warehouse: Warehouse, tmp_path: Path, fmt: str
) -> None:
    """The stored total of a sum meter counts 1 for an absent value (JSON: no key or null;
    CSV: an empty unquoted cell; Parquet: a null) and nothing for an empty or blank text,
    which is non_numeric_value (README, event format)."""
    tokens = MeterCatalog(
        meters={"tokens": MeterDefinition(name="tokens", aggregation=Aggregation.SUM)}
    )
    base = {"customer_id": "c2", "meter": "tokens", "timestamp": TS}
    cases = [(f"{name}", text) for name, text, _ in SUM_CASES] + [("null", None)]
    want = {name: total for name, _, total in SUM_CASES} | {"null": D(1)}
    if fmt == "jsonl":
        lines = [json.dumps({"event_id": "absent", **base})]
        lines += [
            json.dumps({"event_id": name, **base, "value": text})
            for name, text in cases
            if name != "absent"
        ]
        path = tmp_path / "tokens.jsonl"
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "csv":
        # null has no CSV spelling of its own: an empty unquoted cell, as absent.
        cell = {None: "", "": '""', " ": '" "', "\t": "\t", "5": "5"}
        path = tmp_path / "tokens.csv"
        path.write_text(
            "event_id,customer_id,meter,timestamp,value\n"
            + "".join(f"{name},c2,tokens,{TS},{cell[text]}\n" for name, text in cases)
        )
    elif fmt == "parquet":
        path = tmp_path / "tokens.parquet"
        pq.write_table(
            pa.table(
                {
                    "event_id": [name for name, _ in cases],
                    "customer_id": ["c2"] * len(cases),
                    "meter": ["tokens"] * len(cases),
                    "timestamp": [TS] * len(cases),
                    "value": pa.array([text for _, text in cases], pa.string()),
                }
            ),
            path,
        )
    elif fmt == "parquet_int":
        # A null in a number column is absent too.
        path = tmp_path / "tokens_int.parquet"
        pq.write_table(
            pa.table(
                {
                    "event_id": ["given", "null"],
                    "customer_id": ["c2"] * 2,
                    "meter": ["tokens"] * 2,
                    "timestamp": [TS] * 2,
                    "value": pa.array([5, None], pa.int64()),
                }
            ),
            path,
        )
        want = {"given": D(5), "null": D(1)}
    if fmt == "api":
        rows: list[dict[str, Any]] = [
            {"event_id": name, **base, **({} if name == "absent" else {"value": text})}
            for name, text in cases
        ]
        summary = ingest_events(warehouse, tokens, rows, ingested_at=AS_OF)
    else:
        summary = ingest(warehouse, tokens, path)
    assert summary.file_errors == {}
    got = outcome(warehouse)
    for name, total in want.items():
        if total is None:
            assert got[name][0] == "non_numeric_value", (fmt, name, got[name])
            assert "empty or blank text" in got[name][1], got[name]
        else:
            assert got[name] == ("accepted", total), (fmt, name, got[name])
    stored = warehouse.query_rows("SELECT sum(value) FROM usage_events WHERE meter = 'tokens'")
    assert stored[0][0] == sum(t for t in want.values() if t is not None)
