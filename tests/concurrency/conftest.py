"""Fixtures of the concurrency tests: the world (tests/concurrency/world.py) on the
running warehouse backend (chDB embedded, ClickHouse server: tests/conftest.py) and
ledger database (SQLite, and PostgreSQL when METERLINE_TEST_POSTGRES_URL is set: a schema
of its own, tests/billing/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.concurrency.world import with_ledger
from tests.scenarios.harness import World


@pytest.fixture
def world(warehouse: Warehouse, chdb_folder: Path, tmp_path: Path, ledger_url: str) -> World:  # noqa: F811
    """The world's warehouse database and ledger, catalog and customers loaded."""
    return with_ledger(World(warehouse, chdb_folder, tmp_path / "world"), ledger_url)


@pytest.fixture
def reference_url(tmp_path: Path) -> str:
    """A SQLite ledger of its own for the single-run reference."""
    return f"sqlite:///{tmp_path}/reference.db"
