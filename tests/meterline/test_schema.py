"""Migrations are explicit: `meterline init` creates or upgrades both schemas (and is
idempotent); every other command only checks the schema version and, when it is not
this code's, stops with exit code 2 and one line saying what to run, having migrated
nothing. Both warehouse backends; SQLite and PostgreSQL ledgers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from billing import migrate as ledger_migrations
from billing.errors import SchemaNotReady as LedgerSchemaNotReady
from meterline.cli import main
from meterline.cli.exits import ExitCode, exit_code_for
from meterline.settings import settings
from meters.migrations import (
    MIGRATIONS_DIR,
    SchemaNotReady,
    applied_versions,
    available,
    migrate,
    require_current,
)
from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.billing.factories import write_customers
from tests.conftest import warehouse_url

RUN_INIT = "run `meterline init`"

# Every command that reads or writes a store, with valid arguments: each must refuse
# before `meterline init` (init, `ledger migrate` and `ledger current` are the schema's own).
RUN_COMMANDS: list[list[str]] = [
    ["ingest", "{events}"],
    ["rejected"],
    ["rollup", "--day", "2026-10-01"],
    ["backfill", "--from", "2026-10-01", "--to", "2026-10-02"],
    ["close", "--period", "2026-10"],
    ["customers", "load", "{customers}"],
    ["catalog", "load"],
    ["catalog", "show"],
    ["invoices", "list"],
    ["invoices", "show", "1"],
    ["invoices", "finalize", "--due", "--as-of", "2026-11-05T00:00:00Z"],
    ["invoices", "void", "1", "--as-of", "2026-11-05T00:00:00Z"],
    ["audit", "explain", "1"],
    ["audit", "reconcile", "--period", "2026-10"],
    ["audit", "rerate", "--period", "2026-10"],
    ["audit", "acknowledge", "f-0123456789ab", "--period", "2026-10", "--reason", "known"],
    ["statement", "--customer", "cus_00001", "--period", "2026-10", "--out", "{tmp}/s.html"],
]


@pytest.fixture
def stores(
    bare_warehouse: Warehouse,
    ledger_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """Settings naming a warehouse database and a ledger that have no schema yet, and
    the files the commands name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", warehouse_url(bare_warehouse))
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger_url)
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"event_id": "e1", "customer_id": "cus_00001", "meter": "fin_resolution",
                    "timestamp": "2026-10-01T12:00:00Z"}) + "\n"
    )
    settings.cache_clear()
    yield {
        "tmp": str(tmp_path),
        "events": str(events),
        "customers": str(write_customers(tmp_path / "customers.jsonl")),
        "ledger": ledger_url,
    }
    settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    settings.cache_clear()
    result = CliRunner().invoke(main, list(args))
    settings.cache_clear()
    return result.exit_code, result.output


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_init_creates_both_schemas_and_a_second_run_changes_nothing(
    bare_warehouse: Warehouse, stores: dict[str, str]
) -> None:
    shipped = available()
    head = ledger_migrations.head()
    assert applied_versions(bare_warehouse) is None
    assert ledger_migrations.current(stores["ledger"]) is None

    code, output = invoke("init")
    assert code == 0, output
    assert output.splitlines() == [
        "warehouse: applied migrations " + ", ".join(m.name for m in shipped),
        f"ledger: upgraded from revision none to {head}",
    ]
    versions = applied_versions(bare_warehouse)
    assert versions == {m.version: m.checksum for m in shipped}
    tables = bare_warehouse.query_rows("SHOW TABLES")
    assert {"usage_events", "usage_rollup", "ingest_log", "schema_migrations"} <= {t[0] for t in tables}
    assert ledger_migrations.current(stores["ledger"]) == head

    code, output = invoke("init")
    assert code == 0, output
    assert output.splitlines() == [
        "warehouse: schema is up to date",
        f"ledger: schema is up to date (revision {head})",
    ]
    assert applied_versions(bare_warehouse) == versions
    assert bare_warehouse.query_rows("SHOW TABLES") == tables
    # The schema is this code's: a command gets past the check (and asks for a catalog).
    code, output = invoke("catalog", "show")
    assert code == ExitCode.REFUSED and "meterline catalog load" in error_line(output)


@pytest.mark.parametrize("args", RUN_COMMANDS, ids=" ".join)
def test_every_command_before_init_says_to_run_it_and_migrates_nothing(
    args: list[str], bare_warehouse: Warehouse, stores: dict[str, str]
) -> None:
    filled = [a.format(**stores) for a in args]
    code, output = invoke(*filled)
    assert code == ExitCode.REFUSED, output
    line = error_line(output)
    # A SQLite ledger file that does not exist yet is not created: it is named instead.
    missing = "METERLINE_LEDGER_URL" in line and "no ledger database at" in line
    assert ("has no meterline schema yet" in line or missing) and RUN_INIT in line, line
    assert applied_versions(bare_warehouse) is None
    assert ledger_migrations.current(stores["ledger"]) is None


def _migrate_all_but_the_last(wh: Warehouse, tmp: Path) -> str:
    older = tmp / "older"
    older.mkdir()
    *first, last = available()
    for migration in first:
        shutil.copy(migration.path, older / migration.path.name)
    migrate(wh, older)
    return last.name


def test_a_warehouse_schema_behind_the_code_is_refused_until_init(
    bare_warehouse: Warehouse, stores: dict[str, str], tmp_path: Path
) -> None:
    missing = _migrate_all_but_the_last(bare_warehouse, tmp_path)
    ledger_migrations.upgrade(stores["ledger"])
    assert invoke("catalog", "load")[0] == 0  # the ledger is complete: only the warehouse is behind
    for args in (["rollup", "--day", "2026-10-01"], ["rejected"], ["ingest", stores["events"]]):
        code, output = invoke(*args)
        assert code == ExitCode.REFUSED, output
        assert error_line(output) == (
            "meterline: error: the warehouse schema is behind this code (1 migration(s) to"
            f" apply, first {missing}): {RUN_INIT}"
        )
    code, output = invoke("init")
    assert code == 0 and output.splitlines()[0] == f"warehouse: applied migrations {missing}"
    code, output = invoke("rejected")
    assert code == 0, output


def test_a_ledger_schema_behind_the_code_is_refused_until_init(
    bare_warehouse: Warehouse, stores: dict[str, str]
) -> None:
    migrate(bare_warehouse)
    head = ledger_migrations.head()
    ledger_migrations.upgrade(stores["ledger"], "0003")
    for args in (["catalog", "show"], ["invoices", "list"], ["rollup", "--day", "2026-10-01"]):
        code, output = invoke(*args)
        assert code == ExitCode.REFUSED, output
        assert error_line(output) == (
            f"meterline: error: the ledger schema is at revision 0003, this code needs {head}:"
            " run `meterline init` (or `meterline ledger migrate`)"
        )
        assert ledger_migrations.current(stores["ledger"]) == "0003"
    code, output = invoke("init")
    assert code == 0 and output.splitlines() == [
        "warehouse: schema is up to date",
        f"ledger: upgraded from revision 0003 to {head}",
    ]
    assert invoke("invoices", "list")[0] == 0


def test_a_schema_ahead_of_the_code_or_an_edited_migration_is_refused(
    warehouse: Warehouse, tmp_path: Path, ledger_url: str  # noqa: F811
) -> None:
    require_current(warehouse)  # the fixture's database is this code's
    edited = tmp_path / "edited"
    shutil.copytree(MIGRATIONS_DIR, edited)
    last = available()[-1]
    (edited / last.path.name).write_text(last.text + "\n-- edited\n")
    with pytest.raises(SchemaNotReady, match=f"migration {last.name} changed after it was applied"):
        require_current(warehouse, edited)

    warehouse.command(
        "INSERT INTO schema_migrations (version, name, checksum, applied_at)"
        " VALUES (9999, '9999_future', 'x', now64(3))"
    )
    with pytest.raises(SchemaNotReady, match=r"ahead of this code \(migration 9999") as ahead:
        require_current(warehouse)
    assert exit_code_for(ahead.value) == ExitCode.REFUSED

    ledger_migrations.upgrade(ledger_url)
    from sqlalchemy import text

    from billing.db import create_ledger_engine

    engine = create_ledger_engine(ledger_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE meterline_ledger_version SET version_num = 'f00d'"))
        with pytest.raises(LedgerSchemaNotReady, match="revision f00d, which this code does not ship") as info:
            ledger_migrations.require_head(engine)
        assert exit_code_for(info.value) == ExitCode.REFUSED
    finally:
        engine.dispose()


def test_the_check_writes_nothing(bare_warehouse: Warehouse) -> None:
    """A read-only user (the auditor) can be checked: nothing is created, not even the
    migration log."""
    with pytest.raises(SchemaNotReady, match="has no meterline schema yet"):
        require_current(bare_warehouse)
    assert bare_warehouse.query_rows("EXISTS TABLE schema_migrations") == [(0,)]
    assert bare_warehouse.query_rows("SHOW TABLES") == []


def test_a_dag_task_on_an_old_schema_fails_without_retrying() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from meterline.jobs.dag_defaults import schema_checked

    for error in (SchemaNotReady("warehouse behind: run `meterline init`"),
                  LedgerSchemaNotReady("ledger behind: run `meterline init`")):
        with pytest.raises(AirflowFailException, match="run `meterline init`"), schema_checked():
            raise error
    with pytest.raises(ValueError, match="other"), schema_checked():
        raise ValueError("other")
