"""Ledger fixtures: every ledger test runs on SQLite and, when METERLINE_TEST_POSTGRES_URL
is set, on PostgreSQL too (one fresh schema per test).

Without the variable the PostgreSQL variants skip with the reason; with it set and the
server unreachable they fail (never skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

import billing
from billing import migrate
from billing.db import create_ledger_engine, session_factory
from tests.billing.factories import CATALOG, write_customers

PG_ENV = "METERLINE_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pg_url_with_schema(base: str, schema: str) -> str:
    """A URL whose connections use ``schema`` first on the search path."""
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty (not migrated) ledger database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant: set {PG_ENV} (e.g. postgresql+psycopg://...) to run it")
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, pool_pre_ping=False)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # unreachable or misconfigured: fail loudly, never skip
        admin.dispose()
        pytest.fail(f"{PG_ENV} is set but PostgreSQL cannot be used: {exc}", pytrace=False)
    try:
        yield pg_url_with_schema(base, schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@dataclass
class Ledger:
    url: str
    engine: Engine
    Session: sessionmaker[Session]

    @property
    def backend(self) -> str:
        return self.engine.dialect.name


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    """A freshly migrated ledger (Alembic upgrade to head)."""
    engine = create_ledger_engine(ledger_url)
    migrate.upgrade(engine)
    try:
        yield Ledger(ledger_url, engine, session_factory(engine))
    finally:
        engine.dispose()


@pytest.fixture
def loaded(ledger: Ledger, tmp_path: Path) -> Ledger:
    """A ledger with the demo catalog and a few customers (see factories.CUSTOMERS)."""
    path = write_customers(tmp_path / "customers.jsonl")
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
        billing.load_customers_file(session, path)
    return ledger
