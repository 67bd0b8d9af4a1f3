"""The embedded warehouse: chDB, the ClickHouse engine in-process, data in a folder.

chDB allows one process at a time per folder (it locks `status` in the folder) and one
folder per process. So a process keeps one engine open and shares it between
`ChdbWarehouse` objects; another process waits for the lock instead of failing.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import chdb
import pyarrow as pa

from meters.warehouse.base import (
    Warehouse,
    WarehouseError,
    WarehouseLockTimeout,
    check_identifier,
    settings_clause,
    short_text,
    statement_note,
)
from meters.warehouse.chdb_params import format_params

log = logging.getLogger(__name__)

_engine_lock = threading.RLock()
_engine: Any = None
_engine_path: str | None = None
_engine_users = 0


def _held_by_another_process(path: str) -> bool:
    """ClickHouse holds an exclusive flock on `<folder>/status` while a server has it open."""
    status = Path(path) / "status"
    if not status.exists():
        return False
    with status.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _open_engine(path: str, lock_timeout_s: float) -> Any:
    """Return this process's chDB engine for `path`, waiting for another process's lock."""
    global _engine, _engine_path, _engine_users
    with _engine_lock:
        if _engine is not None:
            if _engine_path != path:
                raise WarehouseError(
                    f"this process already has the embedded warehouse {_engine_path} open; "
                    f"chDB cannot open a second folder ({path}) in the same process"
                )
            _engine_users += 1
            return _engine
        Path(path).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_timeout_s
        delay = 0.05
        told = False
        while True:
            if not _held_by_another_process(path):
                try:
                    _engine = chdb.connect(path)
                    break
                except Exception as exc:  # chDB raises a RuntimeError with little detail
                    if not _held_by_another_process(path):
                        raise WarehouseError(
                            f"cannot open the embedded warehouse {path}: {exc}"
                        ) from exc
            if time.monotonic() >= deadline:
                raise WarehouseLockTimeout(
                    f"the embedded warehouse {path} is locked by another process; "
                    f"waited {lock_timeout_s:g}s. Only one process at a time may open "
                    "a chDB folder: wait for the other meterline/airflow process (a "
                    "`meterline serve` holds it until stopped) to end, or raise "
                    "METERLINE_WAREHOUSE_LOCK_TIMEOUT_S"
                )
            if not told:
                # Said once, so that a wait of minutes is not silence (a command run
                # while `meterline serve` holds the folder waited 300 s without a word).
                log.warning(
                    "the embedded warehouse %s is in use by another process (another"
                    " command, an Airflow task, or `meterline serve` until it is stopped):"
                    " waiting up to %gs for it (METERLINE_WAREHOUSE_LOCK_TIMEOUT_S)",
                    path,
                    lock_timeout_s,
                )
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        _engine_path = path
        _engine_users = 1
        return _engine


def _release_engine() -> None:
    global _engine, _engine_path, _engine_users
    with _engine_lock:
        _engine_users -= 1
        if _engine_users <= 0 and _engine is not None:
            _engine.close()
            _engine = None
            _engine_path = None
            _engine_users = 0


class ChdbWarehouse(Warehouse):
    """Warehouse backend on chDB. All statements run in `database` (created if missing)."""

    exclusive = True
    engine_name = "chDB"

    def __init__(self, path: str, *, database: str = "meterline", lock_timeout_s: float = 300.0):
        self.path = str(Path(path).resolve())
        self.database = check_identifier(database)
        self._conn = _open_engine(self.path, lock_timeout_s)
        with _engine_lock:
            self._conn.query(f"CREATE DATABASE IF NOT EXISTS {self.database}")

    # chDB keeps `USE` per connection; the engine is shared, so every call names its
    # database first. Both run under one lock so threads cannot interleave them.
    def _run(self, sql: str, fmt: str = "CSV", params: Mapping[str, Any] | None = None) -> Any:
        with _engine_lock:
            try:
                self._conn.query(f"USE {self.database}")
                if params:
                    return self._conn.query(sql, fmt, params=format_params(params))
                return self._conn.query(sql, fmt)
            except Exception as exc:
                # The engine repeats the whole query in its message: keep the head.
                message = str(exc).split(" In scope ")[0]
                raise WarehouseError(short_text(message, 600) + statement_note(sql)) from None

    def _command(
        self, sql: str, params: Mapping[str, Any] | None, settings: dict[str, str | int]
    ) -> None:
        self._run(sql.rstrip().rstrip(";") + settings_clause(settings), "CSV", params)

    def _query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        return self._run(sql, "ArrowTable", params)

    def _insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None) -> None:
        names = ", ".join(data.column_names)
        settings = settings_clause(
            {"insert_deduplication_token": dedup_token} if dedup_token else None
        )
        # chDB's Python() table function reads the Arrow table in place, by variable name.
        arrow_batch = data  # noqa: F841 - referenced by name from the SQL below
        self._run(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM Python(arrow_batch){settings}"
        )

    def _close(self) -> None:
        _release_engine()
