"""docs/airflow.md stays true: its shell blocks run as written, in order, in one bash
shell, with `WORK` (everything the guide creates, `AIRFLOW_HOME` included) in a
temporary folder and no AIRFLOW_* or METERLINE_* variable inherited, so the guide's own
exports are the only settings. Then the runs it made are checked in Airflow's metadata
database and the ledger.

Blocks preceded by `<!-- guide-test: skip (...) -->` are not run: the install (the suite
runs inside it) and the scheduler's backfill, which tests/dags/test_scheduler_backfill.py
runs against real services; test_skipped_commands_are_run_elsewhere checks that.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from meterline.jobs.dag_defaults import WAREHOUSE_POOL

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "airflow.md"
BLOCK = re.compile(r"(<!-- guide-test: skip[^>]*-->\s*\n)?```sh\n(.*?)```", re.S)


def blocks() -> list[tuple[bool, str]]:
    """(run by the test, text) of each shell block of the guide, in order."""
    return [(not skip, text) for skip, text in BLOCK.findall(GUIDE.read_text())]


def test_skipped_commands_are_run_elsewhere() -> None:
    found = blocks()
    run = [text for runs, text in found if runs]
    skipped = "\n".join(text for runs, text in found if not runs)
    assert len(run) >= 6 and "make setup" in skipped
    # The backfill block runs, as documented, in the scheduler test.
    scheduler_test = (ROOT / "tests" / "dags" / "test_scheduler_backfill.py").read_text()
    for command in re.findall(r"^airflow ([a-z-]+(?: [a-z-]+)?)", skipped, re.M):
        words = command.split()
        assert all(f'"{w}"' in scheduler_test for w in words), command
    assert '"--from-date"' in scheduler_test and '"--to-date"' in scheduler_test
    # The names the guide uses are the project's.
    everything = GUIDE.read_text()
    assert f"airflow pools set {WAREHOUSE_POOL} 1 " in everything
    for dag_id in re.findall(r"airflow dags test ([a-z_]+)", everything):
        assert (ROOT / "dags" / f"{dag_id}.py").is_file(), dag_id
    assert "docs/airflow.md" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = "set -euo pipefail\nset -x\n" + "\n".join(text for runs, text in blocks() if runs)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "AIRFLOW__", "METERLINE_"))
    }
    # The virtualenv the suite runs in, as step 1 of the guide activates it.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["WORK"] = str(work)
    log = tmp_path / "guide.log"
    with log.open("w") as out:
        done = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            timeout=900,
        )
    assert done.returncode == 0, f"the guide failed:\n{log.read_text()[-6000:]}"

    with closing(sqlite3.connect(work / "airflow" / "airflow.db")) as db:
        runs = db.execute(
            "SELECT dag_id, substr(data_interval_start, 1, 10), state FROM dag_run"
            " ORDER BY dag_id, data_interval_start"
        ).fetchall()
        (pool,) = db.execute("SELECT slots FROM slot_pool WHERE pool = ?", (WAREHOUSE_POOL,))
    # Step 6 ingested and rolled up 2026-11-01, step 7 the next two days, step 8 closed.
    assert runs == [
        ("billing_close", "2026-12-04", "success"),
        ("usage_ingest", "2026-11-01", "success"),
        ("usage_ingest", "2026-11-02", "success"),
        ("usage_ingest", "2026-11-03", "success"),
        ("usage_rollup", "2026-11-01", "success"),
        ("usage_rollup", "2026-11-02", "success"),
        ("usage_rollup", "2026-11-03", "success"),
    ]
    assert pool == (1,)

    with closing(sqlite3.connect(work / "ledger.db")) as db:
        invoices = db.execute(
            "SELECT c.external_id, i.status FROM invoices i JOIN customers c"
            " ON c.id = i.customer_id WHERE i.period_start_local = '2026-11-01'"
        ).fetchall()
        (billed,) = db.execute(
            "SELECT count(*) FROM invoice_lines WHERE kind = 'usage' AND meter = 'fin_resolution'"
            " AND CAST(quantity AS REAL) > 0"
        ).fetchone()
    # The November periods of the anchor-1 customers were due, and billed from the rollup.
    assert ("cus_00001", "finalized") in invoices
    assert {status for _, status in invoices} == {"finalized"}
    assert billed > 0
    statement = (work / "statement.html").read_text()
    assert "Usage statement" in statement and "2026-11-01 to 2026-11-30" in statement
