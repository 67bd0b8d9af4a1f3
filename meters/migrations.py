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
