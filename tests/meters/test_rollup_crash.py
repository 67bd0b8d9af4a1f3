"""Invariant 3 under real crashes: a rollup killed (SIGKILL) between a day's staging build
and its swap, between the swap and its record, or between two days of a backfill,
leaves the old or the new state of each day, and running the same command again gives
the rollup a clean rebuild gives, row for row, aggregate states included: no staging
table left, no day left dirty, every event counted once.

Each run is the real command (`python -m meterline.cli rollup --day D` or `backfill`)
in a subprocess with METERLINE_CRASH_AT (meters/crashpoints.py); the retry is the same
command. The world (tests/meters/rollup_crash_world.py) is built and read in this process
on the ClickHouse server backend, and in a subprocess on chDB, whose folder one process
at a time may open: a chDB world is built once and copied for each test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meterline.connections import open_warehouse
from meters.crashpoints import ENV
from meters.warehouse.base import Warehouse
from tests.conftest import ROOT, warehouse_url
from tests.meters import rollup_crash_world as world

ROLLUP = ["rollup", "--day", "2026-11-03", "--quiet"]
BACKFILL = ["backfill", "--from", "2026-11-01", "--to", "2026-11-03", "--quiet"]


class Site:
    """Where the world lives: the settings' URLs, and how to build or read it."""

    def __init__(self, warehouse_url: str, ledger_url: str, tmp: Path, embedded: bool):
        self.warehouse_url = warehouse_url
        self.ledger_url = ledger_url
        self.tmp = tmp
        self.embedded = embedded

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METERLINE_")}
        env["METERLINE_WAREHOUSE_URL"] = self.warehouse_url
        env["METERLINE_LEDGER_URL"] = self.ledger_url
        env["PYTHONPATH"] = str(ROOT)
        return env

    def helper(self, mode: str) -> dict[str, Any]:
        """world.build or world.inspect, in a subprocess for chDB, else here."""
        if not self.embedded:
            config = world.config_of(self.warehouse_url, self.ledger_url)
            return world.build(config) if mode == "build" else world.inspect(config)
        done = subprocess.run(
            [sys.executable, "-m", "tests.meters.rollup_crash_world", mode,
             self.warehouse_url, self.ledger_url],
            capture_output=True, text=True, env=self.env(), cwd=self.tmp, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def staging_tables(self) -> list[str]:
        """The rollup's staging tables in the world's database (chDB: their metadata
        files, read without opening the folder)."""
        if self.embedded:
            folder = Path(self.warehouse_url.removeprefix("chdb://")) / "metadata" / "meterline"
            return sorted(p.stem for p in folder.glob("usage_rollup_staging_*.sql"))
        config = world.config_of(self.warehouse_url, self.ledger_url)
        with open_warehouse(config) as wh:
            return sorted(row[0] for row in wh.query_rows(world.STAGING_NAMES))

    def cli(self, args: list[str], crash: str | None = None) -> int:
        env = self.env()
        if crash:
            env[ENV] = crash
        done = subprocess.run(
            [sys.executable, "-m", "meterline.cli", *args],
            capture_output=True, text=True, env=env, cwd=self.tmp, timeout=300,
        )  # fmt: skip
        assert done.returncode in (0, -signal.SIGKILL), done.stderr
        return done.returncode


@pytest.fixture(scope="module")
def embedded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chDB folder and SQLite ledger holding the built world (built once)."""
    folder = tmp_path_factory.mktemp("rollup_crash_template")
    site = Site(f"chdb://{folder / 'wh'}", f"sqlite:///{folder / 'ledger.db'}", folder, True)
    site.helper("build")
    return folder


@pytest.fixture
def site(warehouse: Warehouse, tmp_path: Path, request: pytest.FixtureRequest) -> Site:
    if type(warehouse).__name__ == "ChdbWarehouse":
        # This process holds the session's chDB folder: the world gets a copy of its own.
        template: Path = request.getfixturevalue("embedded_template")
        shutil.copytree(template / "wh", tmp_path / "wh", symlinks=True)  # relative links
        shutil.copy(template / "ledger.db", tmp_path / "ledger.db")
        return Site(
            f"chdb://{tmp_path / 'wh'}", f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, True
        )
    built = Site(warehouse_url(warehouse), f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, False)
    built.helper("build")
    return built


# (command, point): the nightly rollup of the third day rebuilds it, then the two
# earlier days its late events made dirty (hits 2 and 3); the backfill rebuilds the
# three days in order, each its own nightly run.
CASES = [
    (ROLLUP, "rollup.after_staging:2"),  # a late day built beside, not swapped in
    (ROLLUP, "rollup.after_swap:2"),  # a late day swapped in, its state not recorded
    (BACKFILL, "rollup.after_day:2"),  # two days done, the third not begun
]


@pytest.mark.parametrize(("command", "point"), CASES, ids=[p for _, p in CASES])
def test_a_killed_rollup_run_again_equals_a_clean_rebuild(
    site: Site, command: list[str], point: str
) -> None:
    assert site.cli(command, crash=point) == -signal.SIGKILL
    if point.startswith("rollup.after_staging"):
        (left,) = site.staging_tables()  # the late day's build, left beside
        assert left.startswith("usage_rollup_staging_20261101")
    assert site.cli(command) == 0
    found = site.helper("inspect")
    assert found["rows"] == found["clean_rows"]
    assert found["rows"], "an empty rollup proves nothing"
    assert found["staging_tables"] == []
    assert found["dirty_days"] == []
    assert found["rolled_up_events"] == found["raw_events"] == 120
