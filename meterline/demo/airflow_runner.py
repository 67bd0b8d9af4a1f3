"""Run the real DAGs in this process with `dag.test()`: for the demo and for users
without a scheduler. Airflow gets a metadata database of its own (SQLite) under the
given folder; its settings are environment variables set before Airflow is imported.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


def prepare(home: Path) -> None:
    """Point Airflow at `home` and create its metadata database (idempotent)."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home.resolve())
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "false"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    if not (home / "airflow.db").exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True, capture_output=True, env=os.environ.copy(), timeout=600,
        )


class DagRunFailed(RuntimeError):
    """A DAG run did not succeed; the message names its failed tasks (their logs say why)."""


def _failed_tasks(run: Any) -> str:
    try:
        failed = [
            ti.task_id
            for ti in run.get_task_instances()
            if str(ti.state) in ("failed", "upstream_failed", "up_for_retry")
        ]
    except Exception:  # the run's state is the message; the task list only helps
        return ""
    return f": task(s) {', '.join(sorted(failed))} failed, see their logs above" if failed else ""


def task_seconds(run: Any) -> dict[str, float]:
    """Seconds each task of a finished run took (start to end), by task id, in the order
    the tasks started."""
    out: dict[str, float] = {}
    started = [ti for ti in run.get_task_instances() if ti.start_date is not None]
    for ti in sorted(started, key=lambda ti: ti.start_date):
        seconds = ti.duration
        if seconds is None and ti.end_date is not None:
            seconds = (ti.end_date - ti.start_date).total_seconds()
        if seconds is not None:
            out[str(ti.task_id)] = float(seconds)
    return out


class DagRunner:
    """The project's DAGs, parsed once, run with dag.test()."""

    def __init__(self) -> None:
        # Airflow's API test client warns about its own httpx use: not ours to fix.
        warnings.filterwarnings("ignore", message=".*httpx.*")
        from airflow.dag_processing.dagbag import DagBag

        self.bag = DagBag(str(DAGS_FOLDER))
        if self.bag.import_errors:
            raise RuntimeError(f"DAG import errors: {self.bag.import_errors}")
        for name in ("airflow", "airflow.task", "airflow.processor"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def _test(self, dag_id: str, **kwargs: Any) -> Any:
        run = self.bag.get_dag(dag_id).test(**kwargs)
        if str(run.state) != "success":
            raise DagRunFailed(f"{dag_id} run {run.run_id} ended {run.state}{_failed_tasks(run)}")
        return run

    def rollup_day(self, day: date) -> Any:
        # A data-interval run whose logical date is D+1 covers the day D.
        import pendulum

        logical = pendulum.datetime(day.year, day.month, day.day, tz="UTC") + timedelta(days=1)
        return self._test("usage_rollup", logical_date=logical)

    def close(self, as_of: datetime) -> Any:
        conf = {"as_of": as_of.isoformat()}
        return self._test("billing_close", logical_date=as_of, run_conf=conf)
