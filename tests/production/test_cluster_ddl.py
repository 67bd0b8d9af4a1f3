"""Cluster mode: the migrations' DDL with Replicated engines and ON CLUSTER, checked
against golden files (regenerate: METERLINE_UPDATE_GOLDEN=1), and parsed by the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from meters.migrations import (
    Migration,
    available,
    cluster_statement,
    log_table_statement,
    migrate,
    migration_statements,
)
from meters.sql_files import split_statements
from meters.warehouse.base import Warehouse, WarehouseError

GOLDEN = Path(__file__).parent / "golden"
CLUSTER = "meterline_cluster"
UPDATE = os.environ.get("METERLINE_UPDATE_GOLDEN") == "1"
CASES = yaml.safe_load((GOLDEN / "cluster_cases.yaml").read_text())


def rendered(statements: list[str]) -> str:
    return ";\n\n".join(statements) + ";\n"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / "cluster" / name
    if UPDATE:
        path.write_text(text)
    assert path.is_file(), f"no golden file {path}: run with METERLINE_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize("migration", available(), ids=lambda m: m.name)
def test_each_migration_in_cluster_mode_matches_its_golden_file(migration: Migration) -> None:
    check_golden(f"{migration.name}.sql", rendered(migration_statements(migration, CLUSTER)))


def test_the_migrations_log_in_cluster_mode_matches_its_golden_file() -> None:
    check_golden("schema_migrations.sql", rendered([log_table_statement(CLUSTER)]))


def test_every_golden_file_belongs_to_a_migration() -> None:
    expected = {f"{m.name}.sql" for m in available()} | {"schema_migrations.sql"}
    assert {p.name for p in (GOLDEN / "cluster").glob("*.sql")} == expected


@pytest.mark.parametrize("case", CASES, ids=[c["in"][:50] for c in CASES])
def test_statement_rewrites(case: dict[str, str]) -> None:
    assert cluster_statement(case["in"], "main") == case["out"]


@pytest.mark.parametrize("migration", available(), ids=lambda m: m.name)
def test_without_a_cluster_the_statements_are_the_files(migration: Migration) -> None:
    assert migration_statements(migration) == split_statements(migration.text)


def test_a_migration_may_not_name_its_own_cluster() -> None:
    with pytest.raises(WarehouseError, match="names its own cluster"):
        cluster_statement("CREATE TABLE t ON CLUSTER other (a UInt8) ENGINE = Memory", "main")


def test_the_cluster_ddl_parses(warehouse: Warehouse) -> None:
    """The engine's own parser reads every generated statement (formatQuery parses
    without running: there is no cluster here)."""
    statements = [log_table_statement(CLUSTER)]
    for migration in available():
        statements += migration_statements(migration, CLUSTER)
    for statement in statements:
        ((formatted,),) = warehouse.query_rows("SELECT formatQuery({q:String})", {"q": statement})
        assert f"ON CLUSTER {CLUSTER}" in formatted
        if formatted.startswith("CREATE TABLE"):
            assert "ENGINE = Replicated" in formatted


class Recorder:
    """A warehouse that records statements (cluster DDL cannot run without a cluster)."""

    database = "meterline"
    cluster = CLUSTER

    def __init__(self) -> None:
        self.statements: list[str] = []

    def command(self, sql: str, params: Any = None, *, settings: Any = None) -> None:
        self.statements.append(sql)

    def query_rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return []

    def query_arrow(self, sql: str, params: Any = None) -> Any:
        raise NotImplementedError

    def insert_arrow(self, table: str, data: Any, *, dedup_token: str | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_migrate_runs_the_cluster_ddl_of_a_cluster_warehouse() -> None:
    recorder = Recorder()
    applied = migrate(recorder)  # type: ignore[arg-type]
    assert applied == [m.name for m in available()]
    ddl = [s for s in recorder.statements if not s.lstrip().startswith("INSERT")]
    expected = [log_table_statement(CLUSTER)]
    for migration in available():
        expected += migration_statements(migration, CLUSTER)
    assert ddl == expected
    inserts = [s for s in recorder.statements if s.lstrip().startswith("INSERT")]
    assert len(inserts) == len(available()) and all("ON CLUSTER" not in s for s in inserts)
