"""Airflow for the DAG tests: a metadata database of its own (SQLite, in a temp folder),
the project's dags/ folder, no examples. Set before Airflow is first imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="meterline-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "false"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "false"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per test session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True, capture_output=True, env=os.environ.copy(), timeout=300,
    )
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Iterator[object]:
    from airflow.dag_processing.dagbag import DagBag

    yield DagBag(str(ROOT / "dags"))
