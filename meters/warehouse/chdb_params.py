"""Bound parameter values for chDB, in the text form ClickHouse parses them from.

ClickHouse reads a query parameter's value in its "Escaped" text format (as the HTTP
interface's `param_name=` does), so chDB needs strings, not Python objects. A server
client (clickhouse-connect) formats its own; this is only for the embedded backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_ESCAPES = {
    "\\": "\\\\",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\0": "\\0",
    "\b": "\\b",
    "\f": "\\f",
}


def _escape(text: str, quote: str = "") -> str:
    out = "".join(_ESCAPES.get(ch, ch) for ch in text)
    if quote:
        out = out.replace(quote, "\\" + quote)
    return out


def _datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} as a query parameter: give it a timezone")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _nested(value: Any) -> str:
    """An element inside an array, tuple or map: strings are quoted."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + _escape(value, "'") + "'"
    if isinstance(value, datetime):
        return "'" + _datetime(value) + "'"
    if isinstance(value, date):
        return "'" + value.isoformat() + "'"
    return format_value(value)


def format_value(value: Any) -> str:
    """One parameter's value as ClickHouse parameter text."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        inner = ",".join(_nested(v) for v in items)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_nested(k)}:{_nested(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot bind a {type(value).__name__} as a query parameter")


def format_params(params: Mapping[str, Any]) -> dict[str, str]:
    return {name: format_value(value) for name, value in params.items()}
