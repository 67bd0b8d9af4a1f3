"""Schema migrations for the warehouse: ordered files in `sql/migrations/`, applied once each.

Each file's name starts with its version (`0001_usage_events.sql`). Applied versions are
recorded with a checksum in `schema_migrations`; a file edited after it was applied is an
error (write a new migration instead). Applying is idempotent.

Cluster mode (the warehouse URL's `?cluster=NAME`): the same files, with every DDL
statement run `ON CLUSTER NAME` and every MergeTree-family engine replaced by its
Replicated twin with the server's default replica path and name
(`/clickhouse/tables/{uuid}/{shard}`, `{replica}`: configure `default_replica_path`,
`default_replica_name` and the `{shard}`/`{replica}` macros on each server).
`non_replicated_deduplication_window` becomes `replicated_deduplication_window`, so a
retried insert stays a no-op. Statements that are not DDL (INSERT) run once, as
replication carries their rows. The checksums are the files', so a schema migrated in
one mode is recognised in the other.

Only `meterline init` migrates (`migrate`). Every other path opens the warehouse
through meterline.connections.open_warehouse, which calls `require_current`: a read-only
look at `schema_migrations` that raises SchemaNotReady, naming what to run, when the
schema is not exactly the one this code ships.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from meters.sql_files import LEADING_COMMENTS, SQL_DIR, split_statements
from meters.warehouse.base import Warehouse, WarehouseError, check_identifier

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


class SchemaNotReady(WarehouseError):
    """The warehouse schema is not the one this code needs (not created, behind, ahead,
    or an applied migration was edited). The message says what to run (exit code 2)."""


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


_NAME = r"(?:`[^`]+`|[A-Za-z_][\w]*)(?:\.(?:`[^`]+`|[A-Za-z_][\w]*))?"
# DDL heads: ON CLUSTER goes right after the object's name.
_DDL_HEAD = re.compile(
    r"""\A(
        (?:CREATE|ATTACH)\s+(?:OR\s+REPLACE\s+)?
            (?:TABLE|DATABASE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY)\s+(?:IF\s+NOT\s+EXISTS\s+)?
      | (?:DROP|DETACH)\s+(?:TABLE|DATABASE|VIEW|DICTIONARY)\s+(?:IF\s+EXISTS\s+)?
      | ALTER\s+TABLE\s+
      | TRUNCATE\s+(?:TABLE\s+)?(?:IF\s+EXISTS\s+)?
    )(""" + _NAME + r")",
    re.IGNORECASE | re.VERBOSE,
)
_RENAME = re.compile(r"\ARENAME\s+(?:TABLE|DATABASE|DICTIONARY)\b", re.IGNORECASE)
_ENGINE = re.compile(r"(\bENGINE\s*=\s*)(?!Replicated)(\w*MergeTree)\b", re.IGNORECASE)
_DEDUP_WINDOW = re.compile(r"\bnon_replicated_deduplication_window\b", re.IGNORECASE)


def cluster_statement(statement: str, cluster: str | None) -> str:
    """`statement` as cluster mode runs it (unchanged without a cluster); see the module
    docstring. Comments before the statement are kept."""
    if not cluster:
        return statement
    on_cluster = f"ON CLUSTER {check_identifier(cluster)}"
    comments = LEADING_COMMENTS.match(statement)
    head_len = comments.end() if comments else 0
    head, body = statement[:head_len], statement[head_len:]
    if " ON CLUSTER " in " ".join(body.split()).upper():
        raise WarehouseError(
            "a migration names its own cluster (ON CLUSTER); write it for one server and "
            "let cluster mode add the cluster"
        )
    if match := _DDL_HEAD.match(body):
        body = body[: match.end()] + f" {on_cluster}" + body[match.end() :]
    elif _RENAME.match(body):
        body = body.rstrip().rstrip(";") + f" {on_cluster}"
    else:
        return statement  # data statements run once; replication copies their rows
    body = _ENGINE.sub(lambda m: m.group(1) + "Replicated" + m.group(2), body)
    body = _DEDUP_WINDOW.sub("replicated_deduplication_window", body)
    return head + body


def migration_statements(migration: Migration, cluster: str | None = None) -> list[str]:
    """The statements that applying `migration` runs, in order."""
    return [cluster_statement(s, cluster) for s in split_statements(migration.text)]


def log_table_statement(cluster: str | None = None) -> str:
    """The CREATE of `schema_migrations`, the record of applied migrations."""
    return cluster_statement(_CREATE_LOG.strip(), cluster)


def _cluster_of(warehouse: Warehouse, cluster: str | None) -> str | None:
    # A server warehouse opened with ?cluster=NAME carries it; the embedded one has none.
    return cluster if cluster is not None else getattr(warehouse, "cluster", None)


def applied(warehouse: Warehouse, *, cluster: str | None = None) -> dict[int, str]:
    warehouse.command(log_table_statement(_cluster_of(warehouse, cluster)))
    rows = warehouse.query_rows("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(v): str(c) for v, c in rows}


def applied_versions(warehouse: Warehouse) -> dict[int, str] | None:
    """{version: checksum} of the applied migrations, read without writing anything (a
    read-only user can call it); None when `schema_migrations` does not exist."""
    ((exists,),) = warehouse.query_rows("EXISTS TABLE schema_migrations")
    if not int(exists):
        return None
    rows = warehouse.query_rows("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(v): str(c) for v, c in rows}


def require_current(warehouse: Warehouse, directory: Path = MIGRATIONS_DIR) -> None:
    """Raise SchemaNotReady unless every migration this code ships is applied, unedited,
    and no other: one line saying what to run. Reads only."""
    done = applied_versions(warehouse)
    shipped = available(directory)
    if not done:
        raise SchemaNotReady(
            "the warehouse has no meterline schema yet: run `meterline init` (it creates"
            " the warehouse and ledger schemas)"
        )
    missing = [m.name for m in shipped if m.version not in done]
    if missing:
        raise SchemaNotReady(
            f"the warehouse schema is behind this code ({len(missing)} migration(s) to"
            f" apply, first {missing[0]}): run `meterline init`"
        )
    known = {m.version for m in shipped}
    unknown = sorted(v for v in done if v not in known)
    if unknown:
        raise SchemaNotReady(
            f"the warehouse schema is ahead of this code (migration {unknown[0]:04d} is"
            " applied but not shipped with it): run the meterline version that applied it"
        )
    edited = [m.name for m in shipped if done[m.version] != m.checksum]
    if edited:
        raise SchemaNotReady(
            f"migration {edited[0]} changed after it was applied to the warehouse; restore"
            " the file and add a new migration instead"
        )


def migrate(
    warehouse: Warehouse, directory: Path = MIGRATIONS_DIR, *, cluster: str | None = None
) -> list[str]:
    """Apply every migration not yet applied, in order. Returns the names applied.

    `cluster` (default: the warehouse's own, from `?cluster=` in its URL) selects cluster
    mode."""
    cluster = _cluster_of(warehouse, cluster)
    done = applied(warehouse, cluster=cluster)
    newly = []
    for migration in available(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise WarehouseError(
                    f"migration {migration.name} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        for statement in migration_statements(migration, cluster):
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
