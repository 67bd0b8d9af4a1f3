"""The init job: create or upgrade both schemas, the warehouse's (sql/migrations) and
the ledger's (Alembic). The one place that migrates: `meterline init`, the
`meterline_init` DAG and the compose stack's init service run it; every other path only
checks the schema version (meterline.connections) and says to run it.

Idempotent: run on a current schema, it applies nothing and reports so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meterline.connections import (
    init_warehouse,
    ledger_engine,
    open_warehouse,
    refuse_foreign_file,
    refuse_foreign_folder,
)
from meterline.settings import Settings, settings


@dataclass(frozen=True)
class InitReport:
    """What an init changed: the warehouse migrations applied (names, in order) and the
    ledger's revision before and after (None: no schema)."""

    warehouse_applied: list[str] = field(default_factory=list)
    ledger_before: str | None = None
    ledger_after: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.warehouse_applied) or self.ledger_before != self.ledger_after

    def lines(self) -> list[str]:
        """One line per store, as `meterline init` prints them."""
        if self.warehouse_applied:
            warehouse = "warehouse: applied migrations " + ", ".join(self.warehouse_applied)
        else:
            warehouse = "warehouse: schema is up to date"
        if self.ledger_before == self.ledger_after:
            ledger = f"ledger: schema is up to date (revision {self.ledger_after})"
        else:
            ledger = (
                f"ledger: upgraded from revision {self.ledger_before or 'none'}"
                f" to {self.ledger_after}"
            )
        return [warehouse, ledger]


def migrate_ledger(
    config: Settings | None = None, revision: str = "head"
) -> tuple[str | None, str | None]:
    """Upgrade the ledger schema to ``revision`` (Alembic; default the latest).
    (revision before, revision after)."""
    from billing import migrate

    with ledger_engine(config or settings()) as engine:
        before = migrate.current(engine)
        migrate.upgrade(engine, revision)
        return before, migrate.current(engine)


def init_schemas(config: Settings | None = None) -> InitReport:
    """Create or upgrade the warehouse schema, then the ledger schema, to what this code
    ships. Raises WarehouseError / SQLAlchemy errors as the openers do (a store that
    cannot be reached: exit code 4), NotAStore (exit code 2) before changing anything
    when either URL names something else than a store."""
    config = config or settings()
    refuse_foreign_folder(config)
    refuse_foreign_file(config.ledger_url)
    with open_warehouse(config, check_schema=False) as warehouse:
        applied = init_warehouse(warehouse)
    before, after = migrate_ledger(config)
    return InitReport(applied, before, after)
