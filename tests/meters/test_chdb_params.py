"""Bound parameters reach the engine as data, whatever characters they hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meters.warehouse.base import Warehouse
from meters.warehouse.chdb_params import format_value

NASTY = [
    "plain",
    "it's",
    "back\\slash",
    "tab\there",
    "new\nline",
    "\\N",
    "'); DROP TABLE usage_events; --",
    "ünïcødé",
    "{x:String}",
]


@pytest.mark.parametrize("text", NASTY)
def test_strings_round_trip(warehouse: Warehouse, text: str) -> None:
    rows = warehouse.query_rows(
        "SELECT {s:String}, {a:Array(String)}, {m:Map(String, Array(String))}",
        {"s": text, "a": [text, "z"], "m": {text: [text]}},
    )
    assert rows == [(text, [text, "z"], [(text, [text])])]
    assert warehouse.query_rows("EXISTS TABLE usage_events") == [(1,)]


def test_typed_values(warehouse: Warehouse) -> None:
    moment = datetime(2026, 3, 29, 2, 30, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    rows = warehouse.query_rows(
        "SELECT {t:DateTime64(3, 'UTC')}, {d:Decimal(38, 9)}, {n:Nullable(String)}, {b:Bool}",
        {"t": moment, "d": Decimal("0.000000001"), "n": None, "b": True},
    )
    assert rows == [(moment.astimezone(UTC), Decimal("0.000000001"), None, True)]


def test_naive_datetimes_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_value(datetime(2026, 1, 1))
    with pytest.raises(TypeError):
        format_value(object())
    # Quantities and money are Decimal (DESIGN.md invariant 4): a float never binds.
    with pytest.raises(TypeError, match="float"):
        format_value(0.1)
    with pytest.raises(TypeError, match="float"):
        format_value([Decimal(1), 0.5])
