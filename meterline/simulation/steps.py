"""One pipeline step of a simulated run, as the scheduled tasks run it: in this process,
or in a subprocess that a crash point may kill (`python -m meterline.simulation.steps
STEP_JSON`, with METERLINE_CRASH_AT set; meters/crashpoints.py).

A step is a JSON-able dict: {"kind": ingest|rollup|backfill|close|deliver, ...} plus
"settings", the Settings fields that point the step at the world's stores. Each kind
calls the one job function its DAG task calls (meterline/jobs), so the simulator plays
the real pipeline. Returns a JSON-able summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from meterline.settings import Settings, load_settings


def config_of(step: dict[str, Any]) -> Settings:
    return load_settings(**step["settings"])


def run_step(step: dict[str, Any]) -> dict[str, Any]:
    """Run one step in this process; its summary."""
    config = config_of(step)
    kind = step["kind"]
    if kind == "ingest":
        from meterline.connections import ingest_options, meter_catalog, open_warehouse
        from meters.ingest.ingestor import Ingestor

        at = datetime.fromisoformat(step["at"])
        with open_warehouse(config) as warehouse:
            ingestor = Ingestor(
                warehouse, meter_catalog(config), ingested_at=at, options=ingest_options(config)
            )
            summary = ingestor.ingest_files([Path(p) for p in step["paths"]])
        total = summary.total
        return {
            "received": total.received,
            "accepted": total.accepted,
            "duplicates": total.duplicates,
            "rejected": total.rejected,
            "rolled_back": [r.ingest_id for r in summary.rolled_back],
        }
    if kind == "rollup":
        from meterline.jobs.rollup import rollup_day

        report = rollup_day(date.fromisoformat(step["day"]), config=config)
        return {"rebuilt": len(report.rebuilt), "rolled_back": report.rolled_back_ingests}
    if kind == "backfill":
        from meterline.jobs.rollup import backfill

        reports = backfill(
            date.fromisoformat(step["first"]), date.fromisoformat(step["last"]), config=config
        )
        return {"days": len(reports)}
    if kind == "close":
        from meterline.jobs.close import close_periods

        closed = close_periods(datetime.fromisoformat(step["as_of"]), config=config)
        return {
            "finalized": len(closed.invoices_finalized),
            "adjustment_lines": closed.adjustment_lines,
            "not_billed": len(closed.not_billed),
            "not_rolled_up": len(closed.not_rolled_up),
        }
    if kind == "deliver":
        from meterline.jobs.deliver import deliver

        delivered = deliver("stripe", config=config)
        return {
            "delivered": delivered.delivered,
            "failed": delivered.failed,
            "parked": delivered.parked,
            "left": delivered.left,
            "errors": delivered.errors,
        }
    raise ValueError(f"unknown step kind {kind!r}")


def run_killable(step: dict[str, Any], crash_at: str, timeout: float = 600) -> int | None:
    """Run the step in a subprocess that dies (SIGKILL) at `crash_at`. Returns the
    subprocess's exit code (negative: killed by that signal). Raises RuntimeError when
    it failed otherwise, with the end of its error output."""
    env = {k: v for k, v in os.environ.items() if k != "METERLINE_CRASH_AT"}
    env["METERLINE_CRASH_AT"] = crash_at
    done = subprocess.run(
        [sys.executable, "-m", "meterline.simulation.steps", json.dumps(step)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if done.returncode > 0:
        raise RuntimeError(f"{step['kind']} step failed: {done.stderr.strip()[-800:]}")
    return done.returncode


if __name__ == "__main__":
    print(json.dumps(run_step(json.loads(sys.argv[1]))))
