"""Shared fixtures: one embedded chDB folder per test session, one database per test.

chDB opens one folder per process, so every warehouse test in this process shares the
session's folder and gets a database of its own (dropped afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from meters.catalog import MeterCatalog, load_meters
from meters.migrations import migrate
from meters.warehouse import Warehouse, connect

ROOT = Path(__file__).resolve().parent.parent
DEMO_CATALOG = ROOT / "catalog" / "intercom.yaml"


@pytest.fixture(scope="session")
def chdb_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warehouse")


@contextmanager
def fresh_warehouse(folder: Path) -> Iterator[Warehouse]:
    """A migrated, empty database of its own in the session's chDB folder."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    wh = connect(f"chdb://{folder}", database=database)
    migrate(wh)
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()


@pytest.fixture
def warehouse(chdb_folder: Path) -> Iterator[Warehouse]:
    with fresh_warehouse(chdb_folder) as wh:
        yield wh


@pytest.fixture(scope="session")
def catalog() -> MeterCatalog:
    return load_meters(DEMO_CATALOG)
