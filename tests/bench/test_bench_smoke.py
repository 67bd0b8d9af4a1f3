"""The benchmark suite (`python -m bench`, bench/suite.py) at a tiny size: it runs, every
contender that deduplicates reports the same totals as the generator's manifest, and
it writes its table, JSON file and chart. Timings are not checked (benchmarks, not
tests). PostgreSQL joins when METERLINE_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_suite_runs_and_totals_agree(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "20k", "--customers", "200", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("results.md", "results.json", "results.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    doc = json.loads((tmp_path / "results.json").read_text())
    (size,) = doc["sizes"]
    assert size["events_per_day"] == 20_000
    assert size["agree"] and not size["problems"]
    status = {r["contender"]: r["status"] for r in size["results"]}
    expected_pg = "ok" if os.environ.get("METERLINE_TEST_POSTGRES_URL") else "skipped"
    assert status == {"meterline": "ok", "duckdb_file": "ok", "duckdb_memory": "ok", "pandas": "ok",
                      "postgres": expected_pg, "chdb_floor": "ok", "chdb_dedup": "ok"}
    compared = [r for r in size["results"] if r["status"] == "ok" and r["compared"]]
    assert {json.dumps(r["totals"], sort_keys=True) for r in compared} == {
        json.dumps(size["day"]["totals"], sort_keys=True)}
    assert all(r["peak_rss_mb"] > 0 and r["wall_s"] > 0 for r in compared)
    assert "| meterline |" in (tmp_path / "results.md").read_text()


def test_disagreeing_totals_fail_with_one_line(tmp_path: Path) -> None:
    """The check the suite exits 1 on: a contender whose totals differ is named."""
    from bench.data import Day, Totals
    from bench.suite import check

    day = Day(20_000, 200, tmp_path / "day.parquet", rows=10, accepted=9, exact_duplicates=1,
              conflicting_duplicates=0, totals=Totals(8, 1, "3"), chunks=1)
    good = {"contender": "duckdb_file", "label": "DuckDB, file database", "status": "ok",
            "compared": True, "rows": 10, "accepted": 9, "groups": 4,
            "totals": {"resolutions": 8, "seat_events": 1, "seat_value_sum": "3"}}
    bad = {**good, "contender": "pandas", "label": "pandas",
           "totals": {"resolutions": 8, "seat_events": 1, "seat_value_sum": "4"}}
    assert check(day, [good]) == ([], 4)
    problems, _ = check(day, [good, bad])
    assert problems == ["pandas (pandas) disagrees: seat_value_sum 4 (manifest.json 3)"]
