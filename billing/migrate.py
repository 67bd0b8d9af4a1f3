"""Alembic, configured in code (no alembic.ini): independent of the current directory.

    billing.migrate.upgrade(url)            # to the latest revision
    billing.migrate.downgrade(url, "-1")    # undo the latest migration
    billing.migrate.current(url)            # revision the database is at, or None

Each accepts a URL or an Engine (an Engine keeps its connect options, e.g. the
PostgreSQL schema of a test). The version table is ``meterline_ledger_version``, not
``alembic_version``, so the ledger can share a database with Airflow's metadata.
"""

from __future__ import annotations

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


def head() -> str:
    """The latest revision id shipped with this code."""
    rev = ScriptDirectory.from_config(config()).get_current_head()
    assert rev is not None
    return rev


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
    """Raise SchemaNotReady unless the ledger is migrated to the latest revision."""
    at = current(target)
    if at != head():
        raise SchemaNotReady(
            f"ledger schema is at revision {at or 'none'}, this code needs {head()}:"
            " run `meterline ledger migrate`"
        )
