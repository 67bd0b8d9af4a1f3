"""table_rows (every query_rows' conversion) gives exactly what Arrow's to_pylist gives,
whether a column's distinct values are converted once (dates, timestamps, decimals that
repeat) or each value is (the rest)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from meters.warehouse.base import table_rows

ROWS = 5_000


def _table(distinct: int) -> pa.Table:
    """Columns of every kind, `distinct` values repeated over ROWS rows, with nulls."""

    def value(i: int, make: object) -> object:
        return None if i % 97 == 0 else make(i % distinct)  # type: ignore[operator]

    day = date(2026, 10, 1)
    hour = datetime(2026, 10, 1, tzinfo=UTC)
    return pa.table(
        {
            "day": pa.array([value(i, lambda n: day + timedelta(days=n)) for i in range(ROWS)]),
            "hour": pa.array(
                [value(i, lambda n: hour + timedelta(hours=n)) for i in range(ROWS)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "amount": pa.array(
                [value(i, lambda n: Decimal(n) / 8 - 3) for i in range(ROWS)],
                pa.decimal128(38, 9),
            ),
            "zero": pa.array([Decimal(0)] * ROWS, pa.decimal128(38, 9)),
            "customer": pa.array([value(i, lambda n: f"cus_{n}") for i in range(ROWS)]),
            "dims": pa.array(
                [[("channel", f"c{i % 3}")] for i in range(ROWS)], pa.map_(pa.string(), pa.string())
            ),
        }
    )


def _expected(table: pa.Table) -> list[tuple[object, ...]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*columns, strict=True))


@pytest.mark.parametrize("distinct", [1, 7, 1_200, ROWS])
def test_rows_equal_to_pylist(distinct: int) -> None:
    table = _table(distinct)
    expected = _expected(table)
    rows = table_rows(table)
    assert rows == expected
    # The same types and exponents too, not only equal values (Decimal('0E-9') stays so).
    for got, want in zip(rows[:200], expected[:200], strict=True):
        assert [type(v) for v in got] == [type(v) for v in want]
        assert [str(v) for v in got] == [str(v) for v in want]


def test_small_and_empty_tables() -> None:
    small = _table(3).slice(0, 10)
    assert table_rows(small) == _expected(small)
    assert table_rows(_table(3).slice(0, 0)) == []
    assert table_rows(pa.table({})) == []


@pytest.mark.parametrize("kind", [pa.decimal32(5, 2), pa.decimal64(15, 2)])
def test_decimal_types_without_a_unique_kernel(kind: pa.DataType) -> None:
    # Found by a breaker: pyarrow has no `unique` for decimal32/64; they convert as before.
    table = pa.table({"a": pa.array([Decimal(i % 3) for i in range(ROWS)], kind)})
    assert table_rows(table) == _expected(table)
