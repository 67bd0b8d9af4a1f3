"""The warehouse connection: a small interface over ClickHouse, two backends.

Every backend runs the same SQL (from `sql/`), with values always passed as bound
parameters (`{name:Type}` placeholders), never formatted into the statement.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Self

import pyarrow as pa
import pyarrow.compute as pc

# Insert-deduplication tokens are our own hex digests; they go into a SETTINGS clause,
# where ClickHouse takes no bound parameters, so they are checked to be plain hex.
_TOKEN = re.compile(r"^[0-9a-f]{8,128}(-[a-z_]{1,32})?$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SERVER_SCHEMES = ("clickhouse", "clickhouses", "http", "https")
# The comments (and blank space) before a statement's first keyword.
LEADING_COMMENTS = re.compile(r"\A(?:\s*(?:--[^\n]*(?:\n|\Z)|/\*.*?\*/))*\s*", re.DOTALL)


class WarehouseError(RuntimeError):
    """A warehouse statement failed; the message says which and why."""


class WarehouseUnavailable(WarehouseError):
    """The warehouse could not be reached, or did not answer in time: try again later."""


class WarehouseLockTimeout(WarehouseUnavailable):
    """Another process kept the embedded warehouse folder locked for too long."""


class Warehouse(ABC):
    """What meterline needs from ClickHouse, and nothing more.

    The two backends (meters.warehouse.chdb, meters.warehouse.clickhouse) subclass it and
    run the statements (`_command`, `_query_arrow`, `_insert_arrow`, `_close`); the checks
    both must make alike live here once: a closed connection, table and column names,
    per-statement settings and tokens, an Arrow result.
    """

    database: str
    # True when no other process can use this warehouse while it is open (the embedded
    # chDB folder lock): work left unfinished by another process is then certainly dead.
    exclusive: bool
    # The engine's name in messages.
    engine_name: str
    _closed: bool = False

    def command(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        """Run a statement that returns nothing (DDL, INSERT ... SELECT, ALTER).

        `settings` are ClickHouse query settings for this statement only (for example
        insert_deduplication_token); string values must pass `check_token` (ValueError).
        Raises WarehouseError (WarehouseUnavailable: try again later).
        """
        self._live()
        self._command(sql, params, check_settings(settings))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query and return its result as an Arrow table. Raises WarehouseError."""
        self._live()
        result = self._query_arrow(sql, params)
        if not isinstance(result, pa.Table):
            raise WarehouseError(
                f"expected an Arrow table from {self.engine_name}, got {type(result)!r}"
            )
        return result

    def query_rows(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run a query and return its rows as tuples. Raises WarehouseError."""
        return table_rows(self.query_arrow(sql, params))

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        """Insert an Arrow table whose column names match the table's columns.

        With a dedup_token, a retried insert of the same block is a no-op. Names that
        are not identifiers and malformed tokens raise ValueError.
        """
        self._live()
        check_identifier(table)
        for name in data.column_names:
            check_identifier(name)
        self._insert_arrow(table, data, check_token(dedup_token) if dedup_token else None)

    def close(self) -> None:
        """Release the connection (a second close does nothing)."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> None:
        if self._closed:
            raise WarehouseError("warehouse connection is closed")

    @abstractmethod
    def _command(
        self, sql: str, params: Mapping[str, Any] | None, settings: dict[str, str | int]
    ) -> None: ...

    @abstractmethod
    def _query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any: ...

    @abstractmethod
    def _insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...


def table_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """An Arrow result as row tuples (what every backend's query_rows returns)."""
    columns = [_pylist(table.column(i)) for i in range(table.num_columns)]
    return list(zip(*columns, strict=True)) if columns else []


def _converted_once(kind: pa.DataType) -> bool:
    return pa.types.is_date(kind) or pa.types.is_timestamp(kind) or pa.types.is_decimal(kind)


def _pylist(column: pa.ChunkedArray) -> list[Any]:
    """The column's values as Python objects, equal to ``column.to_pylist()``. A date,
    timestamp or Decimal is a new Python object per value, and costly (1.3M timestamps:
    4.2 s; dates 1.2 s); such columns of large results repeat few values (the days and
    hours of a rollup), so each distinct value is converted once (0.08 s; 0.03 s) and
    shared by its rows (immutable objects)."""
    if len(column) >= 1024 and _converted_once(column.type):
        try:
            distinct = pc.unique(column)
        except pa.ArrowNotImplementedError:  # a type with no unique kernel (decimal32/64)
            return column.to_pylist()
        if len(distinct) * 4 <= len(column):
            values = distinct.to_pylist()
            at = pc.index_in(column, value_set=distinct, skip_nulls=False).to_pylist()
            return [values[i] for i in at]
    return column.to_pylist()


def check_identifier(name: str) -> str:
    """Table and database names come from a fixed set; refuse anything else."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid identifier: {name!r}")
    return name


def check_token(token: str) -> str:
    if not _TOKEN.match(token):
        raise ValueError(f"not a valid insert-deduplication token: {token!r}")
    return token


def check_settings(settings: Mapping[str, str | int] | None) -> dict[str, str | int]:
    """Per-statement settings, checked the same way for both backends (so that a
    statement one accepts the other accepts): names are identifiers, text values tokens."""
    return {
        check_identifier(name): value if isinstance(value, int) else check_token(value)
        for name, value in (settings or {}).items()
    }


def settings_clause(settings: Mapping[str, str | int] | None) -> str:
    """A trailing SETTINGS clause, for engines that take settings only in the SQL text."""
    checked = check_settings(settings)
    if not checked:
        return ""
    parts = [
        f"{name} = {value}" if isinstance(value, int) else f"{name} = '{value}'"
        for name, value in checked.items()
    ]
    return " SETTINGS " + ", ".join(parts)


def short_text(text: str, limit: int = 300) -> str:
    """`text` on one line (white space folded), cut after `limit` characters (" ...")."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


def statement_note(sql: str | None) -> str:
    """The second line of a warehouse error naming its statement ("\\n  in: SELECT ..."),
    without the statement's leading comments, at most 300 characters; "" for none."""
    if not sql:
        return ""
    return "\n  in: " + short_text(LEADING_COMMENTS.sub("", sql))
