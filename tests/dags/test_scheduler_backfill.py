"""`airflow backfill create` against a running Airflow: api-server, scheduler and
dag-processor as separate processes (LocalExecutor, each task in its own process talking
to the execution API), as an engineer would run a backfill in production. The backfill's
runs roll up exactly the days asked, the rollup equals the raw events, and each run's
asset event triggers billing_close, which closes as of the rollup's interval end.

Everything runs in subprocesses with an Airflow home and a chDB folder of their own:
chDB opens one folder per process, and the test process has the suite's folder open.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = ["2026-11-01", "2026-11-02", "2026-11-03"]

# Run in a subprocess after the backfill: what the rollup holds, checked against the
# raw events (the same quantities from usage_events FINAL).
CHECK = """
import json, sys
from datetime import UTC, datetime
from meterline.connections import meter_catalog, open_warehouse
from meters.quantities import period_quantities, raw_period_quantities
with open_warehouse() as wh:
    catalog = meter_catalog()
    state = wh.query_rows("SELECT toString(day), events, rollup_rows FROM rollup_state FINAL ORDER BY day")
    window = dict(start=datetime(2026, 11, 1, tzinfo=UTC), end=datetime(2026, 11, 4, tzinfo=UTC))
    rolled = period_quantities(wh, catalog, **window)
    raw = raw_period_quantities(wh, catalog, **window)
    ((events,),) = wh.query_rows(
        "SELECT count() FROM usage_events FINAL WHERE timestamp >= '2026-11-01' AND timestamp < '2026-11-04'"
    )
print(json.dumps({"state": [[d, int(e), int(r)] for d, e, r in state],
                  "equal": rolled == raw, "series": len(rolled), "events": int(events)}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *args: str, timeout: int = 300, attempts: int = 1) -> str:
    """Run a command to success and give its output. With `attempts` > 1, a command that
    writes Airflow's SQLite database while the scheduler does is run again when SQLite
    refused its write with "database is locked": SQLite refuses a transaction's first
    write at once (no busy wait: waiting could deadlock) when another process is writing,
    and the command's transaction is rolled back whole. (Production runs Airflow on
    PostgreSQL: docker-compose.yml.)"""
    for attempt in range(1, attempts + 1):
        done = subprocess.run(
            [str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout
        )
        locked = "database is locked" in done.stdout + done.stderr
        if done.returncode == 0 or not locked or attempt == attempts:
            break
        time.sleep(2)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture
def airflow_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A running Airflow (api-server, scheduler, dag-processor) with its own home."""
    api_port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        # Three Airflow processes share one SQLite file: wait up to a minute for another's
        # write instead of SQLite's 5 s ("database is locked" on a loaded machine).
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}?timeout=60",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "false",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "meterline-test-only",
        "AIRFLOW__API__SECRET_KEY": "meterline-test-only",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "METERLINE_WAREHOUSE_URL": f"chdb://{tmp_path / 'warehouse'}",
        "METERLINE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = [sys.executable, "-m", "airflow"]
    _run(env, *airflow, "db", "migrate")
    _run(env, *airflow, "pools", "set", "meterline_warehouse", "1", "chDB: one process at a time")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    try:
        for name, args in (
            ("api-server", ["api-server", "--port", str(api_port)]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ):
            with (logs / f"{name}.log").open("w") as log:
                procs.append(
                    subprocess.Popen(
                        [*airflow, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        env["METERLINE_TEST_AIRFLOW_LOGS"] = str(logs)
        yield env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _runs(env: dict[str, str], dag_id: str = "usage_rollup") -> list[dict[str, str]]:
    out = _run(env, sys.executable, "-m", "airflow", "dags", "list-runs", dag_id,
               "--output", "json")
    # Airflow logs warnings to stdout before the JSON document.
    lines = [ln for ln in out.splitlines() if ln.startswith("[{") or ln.strip() == "[]"]
    return list(json.loads(lines[-1])) if lines else []


@pytest.mark.slow
@pytest.mark.single_warehouse
def test_backfill_create_runs_on_a_real_scheduler(tmp_path: Path, airflow_env: dict[str, str]) -> None:
    env = airflow_env
    data = tmp_path / "data"
    meterline = str(BIN / "meterline")
    _run(env, meterline, "generate", "--customers", "30", "--start", DAYS[0], "--days", "3",
         "--seed", "4", "--out", data)
    _run(env, meterline, "init")
    _run(env, meterline, "catalog", "load")
    _run(env, meterline, "ingest", "--quiet", "--as-of", "2026-11-04T01:00:00Z", data / "events")
    _run(env, meterline, "customers", "load", data / "customers.jsonl")

    # The DAG processor must have parsed the DAGs before a backfill can be created.
    deadline = time.monotonic() + 600
    while not {"usage_rollup", "billing_close"} <= set(
        _run(env, sys.executable, "-m", "airflow", "dags", "list").split()
    ):
        assert time.monotonic() < deadline, "the dag-processor never registered the DAGs"
        time.sleep(2)
    _run(env, sys.executable, "-m", "airflow", "backfill", "create", "--dag-id", "usage_rollup",
         "--from-date", DAYS[0], "--to-date", DAYS[-1], attempts=4)
    # Backfill runs start only for an active DAG (Airflow 3); billing_close follows the
    # rollup's asset.
    _run(env, sys.executable, "-m", "airflow", "dags", "unpause", "billing_close")
    _run(env, sys.executable, "-m", "airflow", "dags", "unpause", "usage_rollup")

    deadline = time.monotonic() + 900
    while True:
        backfills = [r for r in _runs(env) if r["run_id"].startswith("backfill__")]
        states = {r["logical_date"][:10]: r["state"] for r in backfills}
        if len(backfills) == len(DAYS) and all(s in ("success", "failed") for s in states.values()):
            break
        if time.monotonic() > deadline:
            logs = Path(env["METERLINE_TEST_AIRFLOW_LOGS"])
            tail = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
            pytest.fail(f"backfill runs did not finish: {states}\n{tail}")
        time.sleep(3)
    assert states == dict.fromkeys(DAYS, "success")

    # What each backfill run's task returned (its XCom, in Airflow's metadata database):
    # the run rebuilt its own data interval's day.
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        returned = {
            run_id: json.loads(value)
            for run_id, value in db.execute(
                "SELECT run_id, value FROM xcom WHERE dag_id = 'usage_rollup' "
                "AND task_id = 'rollup' AND key = 'return_value' AND run_id LIKE 'backfill__%'"
            )
        }
    # One report per day rolled up: a backfill run rolls up its data interval's day.
    assert all(len(reports) == 1 for reports in returned.values()), returned
    assert sorted(reports[0]["day"] for reports in returned.values()) == DAYS
    for (report,) in returned.values():
        assert report["rebuilt"][0]["day"] == report["day"]
        assert report["rebuilt"][0]["events"] > 0

    # billing_close ran on the rollup's asset events (Airflow may fold several events
    # into one run) and closed as of a rollup's interval end, never the clock.
    deadline = time.monotonic() + 900
    while True:
        closes = _runs(env, "billing_close")
        if closes and all(r["state"] in ("success", "failed") for r in closes):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"billing_close did not run to the end: {closes}")
        time.sleep(3)
    assert {r["state"] for r in closes} == {"success"}
    assert all(r["run_id"].startswith("asset_triggered__") for r in closes), closes
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        as_of = {
            json.loads(value)
            for (value,) in db.execute(
                "SELECT value FROM xcom WHERE dag_id = 'billing_close' "
                "AND task_id = 'resolve_as_of' AND key = 'return_value'"
            )
        }
        rollup_ends = {
            json.loads(extra).get("as_of")
            for (extra,) in db.execute("SELECT extra FROM asset_event")
        }
    assert as_of and as_of <= rollup_ends, (as_of, rollup_ends)

    found = json.loads(_run(env, sys.executable, "-c", CHECK).strip().splitlines()[-1])
    # Each day of the range was rolled up (the DAG's catch-up-less scheduled run may add
    # today's empty day), and every valid event of the range is in the rollup.
    rolled_days = {d: (events, rows) for d, events, rows in found["state"]}
    assert set(DAYS) <= set(rolled_days)
    assert sum(rolled_days[d][0] for d in DAYS) == found["events"] > 0
    assert all(rolled_days[d][1] > 0 for d in DAYS)
    assert found["equal"] and found["series"] > 30
