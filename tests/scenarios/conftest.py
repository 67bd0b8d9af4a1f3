"""Scenario fixtures: a `World` per scenario (own warehouse database, own ledger), and
Airflow for the one scenario that runs the real DAGs.

Airflow reads its settings when first imported, so they are set here, at import, the
same way tests/dags/conftest.py sets them (AIRFLOW_HOME only if not set yet, so both
folders share one metadata database when they run in one session).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)

if TYPE_CHECKING:  # imported at run time only after the rewrite hook below is set
    from tests.scenarios.harness import World

# The harness's comparisons get pytest's assertion diffs (it is imported by the tests).
pytest.register_assert_rewrite("tests.scenarios.harness")

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="meterline-airflow-"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "false"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "false"


def pytest_configure(config: pytest.Config) -> None:
    # tests/conftest.py runs warehouse tests on both backends unless marked so
    config.addinivalue_line(
        "markers", "single_warehouse: a warehouse test that runs on one backend only"
    )


@pytest.fixture
def world(warehouse: Warehouse, chdb_folder: Path, tmp_path: Path) -> World:
    """The pipeline of one scenario: its warehouse database and its ledger."""
    from tests.scenarios.harness import World

    return World(warehouse, chdb_folder, tmp_path / "world")


@pytest.fixture
def ledger_world(world: World, ledger_url: str) -> World:  # noqa: F811
    """The scenario's world on the ledger database of the running variant: SQLite, and
    PostgreSQL (a schema of its own) when METERLINE_TEST_POSTGRES_URL is set."""
    world.config = world.config.model_copy(update={"ledger_url": ledger_url})
    return world


def _migrated(home: Path) -> bool:
    """Whether tests/dags (same AIRFLOW_HOME) already migrated the metadata database."""
    db = home / "airflow.db"
    if not db.exists():
        return False
    with closing(sqlite3.connect(db)) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()[0]
        )


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per session (skipped if tests/dags did it already)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    if _migrated(home):
        return home
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=300,
    )
    return home


@pytest.fixture(scope="session")
def dag_runner(airflow_db: Path) -> Iterator[object]:
    from meterline.demo.airflow_runner import DagRunner

    yield DagRunner()
