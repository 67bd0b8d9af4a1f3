"""Schema migrations for the warehouse: ordered files in `sql/migrations/`, applied once each.

Each file's name starts with its version (`0001_usage_events.sql`). Applied versions are
recorded with a checksum in `schema_migrations`; a file edited after it was applied is an
error (write a new migration instead). Applying is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from meters.sql_files import SQL_DIR, split_statements
from meters.warehouse import Warehouse, WarehouseError

MIGRATIONS_DIR = SQL_DIR / "migrations"

_CREATE_LOG = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def available(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        head = path.stem.split("_", 1)[0]
        if not head.isdigit():
            raise WarehouseError(f"migration file {path.name} must start with a version number")
        found.append(Migration(int(head), path.stem, path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise WarehouseError(f"two migrations share a version in {directory}")
    return found


def applied(warehouse: Warehouse) -> dict[int, str]:
    warehouse.command(_CREATE_LOG)
    rows = warehouse.query_rows("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(v): str(c) for v, c in rows}


def migrate(warehouse: Warehouse, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet applied, in order. Returns the names applied."""
    done = applied(warehouse)
    newly = []
    for migration in available(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise WarehouseError(
                    f"migration {migration.name} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        for statement in split_statements(migration.text):
            warehouse.command(statement)
        warehouse.command(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES "
            "({version:UInt32}, {name:String}, {checksum:String}, "
            "{applied_at:DateTime64(3, 'UTC')})",
            {
                "version": migration.version,
                "name": migration.name,
                "checksum": migration.checksum,
                "applied_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            },
        )
        newly.append(migration.name)
    return newly
