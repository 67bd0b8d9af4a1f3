"""Two billing closes of the same period at once bill it once: the ledger holds exactly
what one close makes (same invoices, lines, totals; nothing twice, nothing missing),
then the same for the adjustments of late usage. In threads (close_periods, as the
billing_close DAG's task calls it) and as separate `meterline close` processes, on both
warehouse backends and both ledger databases."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from meterline.jobs.close import close_periods
from tests.concurrency.world import (
    CLOSE_AT,
    LATE_CLOSE_AT,
    books,
    invoices,
    load_ledger,
    prepare,
    prepare_with_reference,
    race,
    roll_up_late,
    same_ledger,
)
from tests.conftest import warehouse_url
from tests.scenarios.harness import CATALOG, World, comparable


def test_two_closes_at_once_bill_each_period_once(world: World, reference_url: str) -> None:
    prepare(world)
    load_ledger(reference_url, world.tmp / "reference")
    reference = world.config.model_copy(update={"ledger_url": reference_url})

    first = race(*[lambda: close_periods(CLOSE_AT, config=world.config)] * 2)
    once = close_periods(CLOSE_AT, config=reference)
    assert once.ok and once.lines_created > 0 and len(once.invoices_finalized) >= 4
    same_ledger(world, comparable(invoices(reference_url)))
    # Between them the two made what one makes: each line created by one of them.
    assert sum(r.lines_created for r in first) == once.lines_created
    assert sum(len(r.invoices_finalized) for r in first) == len(once.invoices_finalized)
    assert all(r.ok for r in first)

    # Late usage of finalized November, rolled up, then two closes at once again: each
    # correction is posted once.
    roll_up_late(world)
    second = race(*[lambda: close_periods(LATE_CLOSE_AT, config=world.config)] * 2)
    again = close_periods(LATE_CLOSE_AT, config=reference)
    assert again.adjustment_lines > 0
    same_ledger(world, comparable(invoices(reference_url)))
    assert sum(r.adjustment_lines for r in second) == again.adjustment_lines
    assert books(world.config).totals == books(reference_url).totals


def cli_env(warehouse_url: str, ledger_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
    env.update(
        METERLINE_WAREHOUSE_URL=warehouse_url,
        METERLINE_LEDGER_URL=ledger_url,
        METERLINE_CATALOG_PATH=str(CATALOG),
    )
    return env


def start_close(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "meterline.cli", "close", "--as-of", CLOSE_AT.isoformat(), "--json"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def test_two_close_commands_at_once_bill_each_period_once(
    world: World, reference_url: str, tmp_path: Path
) -> None:
    """Two `meterline close` processes started together. On chDB the second waits for
    the first to let go of the warehouse folder (one process per folder), then finds
    everything billed; on ClickHouse they run side by side."""
    if type(world.warehouse).__name__ == "ChdbWarehouse":
        url = f"chdb://{tmp_path / 'wh'}"  # this process holds the session's folder
    else:
        url = warehouse_url(world.warehouse)
    once = prepare_with_reference(url, reference_url, tmp_path)
    assert once["ok"] and once["lines_created"] > 0 and once["invoices_finalized"] >= 4
    procs = [start_close(cli_env(url, world.config.ledger_url), tmp_path / f"p{i}") for i in (1, 2)]
    reports = [finished(p) for p in procs]
    same_ledger(world, comparable(invoices(reference_url)))
    # One did all of it; the other, let through after it (the chDB folder, the SQLite
    # write lock or the PostgreSQL ledger's advisory lock), found it done.
    assert sorted(r["lines_created"] for r in reports) == [0, once["lines_created"]]
    assert sorted(r["invoices_finalized"] for r in reports) == [0, once["invoices_finalized"]]
    assert books(world.config).totals == books(reference_url).totals
