"""Editing a SQLite table's CREATE statement in place, for ledger migrations (0007, 0009).

SQLite cannot alter a CHECK constraint, and rebuilding a ledger table (create, copy,
drop, rename) fails as soon as another table's foreign key refers to its rows: dropping
the table deletes what they refer to, and foreign keys are on in every ledger
connection, so the rebuild cannot run in a migration's transaction. SQLite documents a
simpler procedure for changes that do not touch how rows are stored (removing or
loosening a CHECK, removing a foreign key: "ALTER TABLE", section "Making Other Kinds Of
Table Schema Changes"): edit the table's CREATE statement in ``sqlite_schema`` under
``writable_schema`` and bump ``schema_version``. Triggers and indexes stay as they are:
the table is never rebuilt.

A caller only loosens (or adds a CHECK every existing row satisfies): SQLite does not
check the rows again.
"""

from __future__ import annotations

from sqlalchemy import Connection


def edit_table(bind: Connection, table: str, replacements: list[tuple[str, str]]) -> None:
    """Rewrite ``table``'s CREATE statement, each (old, new) exactly once; then check the
    database's integrity. Raises RuntimeError (nothing changed) when the statement does
    not hold an ``old`` exactly once: the schema is not the one the migration expects."""
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    for old, new in replacements:
        if sql.count(old) != 1:
            raise RuntimeError(f"{table}' schema does not hold {old!r} once: not migrated")
        sql = sql.replace(old, new)
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        bind.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, table)
        )
        bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = bind.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    if problems != ["ok"]:
        raise RuntimeError(f"{table}' schema edit left the database inconsistent: {problems}")
