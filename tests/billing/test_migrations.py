"""Alembic: upgrade from empty, downgrade of the latest migration, models == migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from billing import migrate
from billing.db import create_ledger_engine
from billing.models import Base

TABLES = {
    "customers",
    "subscriptions",
    "subscription_discounts",
    "plans",
    "price_versions",
    "rating_runs",
    "invoices",
    "invoice_lines",
    "rating_run_stale_days",
    "finding_acknowledgements",
    "credit_grants",
    "credit_ledger_entries",
    "subscription_plan_changes",
}


def _triggers(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        else:
            rows = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                    " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
                )
            )
        return {r[0] for r in rows}


def test_upgrade_from_empty_and_downgrade_latest(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        assert migrate.current(engine) is None
        migrate.upgrade(engine)
        head = migrate.head()
        assert migrate.current(engine) == head
        tables = set(inspect(engine).get_table_names())
        assert tables >= TABLES
        assert migrate.VERSION_TABLE in tables and "alembic_version" not in tables
        assert {"ledger_lines_insert", "ledger_lines_update", "ledger_lines_delete"} <= _triggers(
            engine
        )

        migrate.downgrade(engine, "0002")
        assert migrate.current(engine) == "0002"
        assert "events_watermark" not in {
            c["name"] for c in inspect(engine).get_columns("rating_runs")
        }
        assert not {"rating_run_stale_days", "finding_acknowledgements"} & set(
            inspect(engine).get_table_names()
        )
        migrate.downgrade(engine, "0001")  # the immutability triggers
        assert migrate.current(engine) == "0001"
        assert _triggers(engine) == set()

        migrate.upgrade(engine)
        assert migrate.current(engine) == head
        migrate.downgrade(engine, "base")
        assert migrate.current(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine)  # and back up again from empty
        assert migrate.current(engine) == head
    finally:
        engine.dispose()


def test_one_head() -> None:
    from alembic.script import ScriptDirectory

    assert len(ScriptDirectory.from_config(migrate.config()).get_heads()) == 1


def test_migrations_match_the_models(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "version_table": migrate.VERSION_TABLE}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_migrations_accept_a_url(ledger_url: str) -> None:
    migrate.upgrade(ledger_url)
    assert migrate.current(ledger_url) == migrate.head()
    migrate.require_head(ledger_url)
