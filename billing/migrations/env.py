"""Alembic environment of the ledger (run through billing.migrate, never alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from billing.migrate import VERSION_TABLE
from billing.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things: later migrations rebuild tables in batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run ledger migrations through billing.migrate (it passes a connection)")
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported for the ledger")
run_migrations_online()
