"""Alembic, configured in code (no alembic.ini): independent of the current directory.

    billing.migrate.upgrade(url)            # to the latest revision
    billing.migrate.downgrade(url, "-1")    # undo the latest migration
    billing.migrate.current(url)            # revision the database is at, or None

Each accepts a URL or an Engine (an Engine keeps its connect options, e.g. the
PostgreSQL schema of a test). The version table is ``meterline_ledger_version``, not
``alembic_version``, so the ledger can share a database with Airflow's metadata.

Only `meterline init` and `meterline ledger migrate` upgrade. Every other path opens the
ledger through meterline.connections.ledger_session, which calls ``require_head``: it
reads the revision and raises SchemaNotReady, naming what to run, unless the ledger is at
exactly the revision this code ships.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from billing.db import create_ledger_engine
from billing.errors import SchemaNotReady

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "meterline_ledger_version"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _run(target: str | Engine, action: str, revision: str) -> None:
    engine = create_ledger_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as connection:
            cfg = config()
            cfg.attributes["connection"] = connection
            if action == "upgrade":
                command.upgrade(cfg, revision)
            else:
                command.downgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the ledger at ``target`` up to ``revision`` (default: latest)."""
    _run(target, "upgrade", revision)


def downgrade(target: str | Engine, revision: str) -> None:
    """Migrate the ledger at ``target`` down to ``revision`` ("-1", a revision id, "base")."""
    _run(target, "downgrade", revision)


@cache
def head() -> str:
    """The latest revision id shipped with this code (read once per process)."""
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


@cache
def _shipped() -> frozenset[str]:
    return frozenset(r.revision for r in ScriptDirectory.from_config(config()).walk_revisions())


def current(target: str | Engine) -> str | None:
    """The revision the ledger database is at (None when never migrated)."""
    engine = create_ledger_engine(target) if isinstance(target, str) else target
    try:
        with engine.connect() as connection:
            ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        if isinstance(target, str):
            engine.dispose()


def require_head(target: str | Engine) -> None:
    """Raise SchemaNotReady unless the ledger is at the latest revision this code ships:
    one line saying what to run (never created, behind, or ahead of this code)."""
    at = current(target)
    latest = head()
    if at == latest:
        return
    if at is None:
        raise SchemaNotReady(
            "the ledger has no meterline schema yet: run `meterline init` (it creates the"
            " warehouse and ledger schemas)"
        )
    if at in _shipped():
        raise SchemaNotReady(
            f"the ledger schema is at revision {at}, this code needs {latest}: run"
            " `meterline init` (or `meterline ledger migrate`)"
        )
    raise SchemaNotReady(
        f"the ledger schema is at revision {at}, which this code does not ship (it needs"
        f" {latest}): run the meterline version that migrated it"
    )
