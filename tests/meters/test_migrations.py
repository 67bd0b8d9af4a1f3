from __future__ import annotations

from pathlib import Path

import pytest

from meters.migrations import available, migrate
from meters.warehouse.base import Warehouse, WarehouseError


def test_migrations_are_idempotent(warehouse: Warehouse) -> None:
    # The fixture already migrated once.
    tables = warehouse.query_rows("SHOW TABLES")
    assert migrate(warehouse) == []
    assert migrate(warehouse) == []
    assert warehouse.query_rows("SHOW TABLES") == tables
    assert {"usage_events", "usage_event_ids", "usage_events_rejected", "ingest_log"} <= {
        t[0] for t in tables
    }
    versions = warehouse.query_rows("SELECT version FROM schema_migrations ORDER BY version")
    assert [v[0] for v in versions] == [m.version for m in available()]


def test_new_migration_is_applied_once_and_edits_are_refused(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    folder2 = tmp_path / "m2"
    folder2.mkdir()
    (folder2 / "0900_extra.sql").write_text(
        "-- a comment only part\nCREATE TABLE IF NOT EXISTS extra (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
        "INSERT INTO extra VALUES (1);\n"
    )
    assert migrate(warehouse, folder2) == ["0900_extra"]
    assert migrate(warehouse, folder2) == []
    assert warehouse.query_rows("SELECT count() FROM extra") == [(1,)]

    (folder2 / "0900_extra.sql").write_text(
        "CREATE TABLE IF NOT EXISTS extra2 (a UInt8) ENGINE = MergeTree ORDER BY a;\n"
    )
    with pytest.raises(WarehouseError, match="changed after it was applied"):
        migrate(warehouse, folder2)


def test_badly_named_migration_is_refused(warehouse: Warehouse, tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(WarehouseError, match="must start with a version"):
        migrate(warehouse, tmp_path)
