"""`meterline export` against bad input (docs/export.md): each fault a tester found kept as
a test with the right value.

Every refusal is one error line with the README's exit code, never a traceback, and
nothing written; a run killed between its files is ignored by readers and the next run
leaves every loader with exactly the ledger. The world is tests/billing/
test_revrec_breaker.py's (USD, JPY and KWD customers; October closed, a void, November
closed), built once here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import tests.scenarios.harness as harness
from billing.db import create_ledger_engine, session_factory
from billing.models import ExportRun
from meterline.cli import main
from meterline.jobs import export as export_job
from meterline.jobs.export import export_period
from meterline.jobs.ledger import void_invoice
from meterline.jobs.revrec import revrec_schedule
from meterline.settings import load_settings, settings
from meterline.sinks.lake import manifest as mf
from meterline.sinks.lake.store import (
    Destination,
    LakeUnavailable,
    LakeUnwritable,
    latest_manifest,
    loaded_rows,
    open_destination,
    part_runs,
)
from meterline.sinks.lake.tables import INVOICES, TABLES
from meterline.sinks.lake.versions import latest
from tests.billing.test_revrec_breaker import CATALOG, build
from tests.conftest import fresh_warehouse
from tests.scenarios.harness import World, day, event, utc

pytestmark = pytest.mark.single_warehouse

MONTH = "2026-10"


@pytest.fixture(scope="module")
def world(chdb_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("export-breaker")
    catalog = folder / "catalog.yaml"
    catalog.write_text(CATALOG)
    with pytest.MonkeyPatch.context() as patch, fresh_warehouse(chdb_folder) as warehouse:
        patch.setattr(harness, "CATALOG", catalog)
        built = World(warehouse, chdb_folder, folder / "world")
        build(built)
        yield built


def cli(world: World, *args: str) -> tuple[int, str]:
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            list(args),
            env={
                "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
                "METERLINE_LEDGER_URL": world.config.ledger_url,
            },
        )
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def one_error(output: str) -> str:
    errors = [ln for ln in output.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "Traceback" not in output and "internal" not in output, output
    return errors[0]


def runs_recorded(world: World) -> int:
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(ExportRun)) or 0)
    finally:
        engine.dispose()


def loader_state(lake: Path, table: str) -> list[dict[str, Any]]:
    """What a loader holds after taking every part file of the month, whatever run wrote
    it (a dead run's too): the latest version of each key, tombstones left out."""
    (t,) = [t for t in TABLES if t.name == table]
    files = [pq.read_table(p) for p in sorted((lake / f"period={MONTH}" / table).glob("part-*"))]
    return latest(t, files).to_pylist()


# --- destinations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # Wrote period=... into the working folder, shown as file:/period=...
        ("file://", "names no folder or bucket"),
        ("s3://", "names no folder or bucket"),
        # Each wrote a local folder named after the typo (./s3:/x, ./C:\lake, ./:/x).
        ("s3:/bucket/x", "looks like a URL with its // missing"),
        ("C:\\lake", "looks like a URL with its // missing"),
        ("://x", "is not a URL scheme"),
        # Was accepted: the summary line then broke in two.
        ("{tmp}/la\nke", "control character"),
        # Was a folder " lake " beside the one meant.
        (" {tmp}/lake ", "spaces at either end"),
        # Were internal errors (exit code 5): a driver's TypeError, tarfile's ReadError.
        ("reference://x", "cannot open it"),
        ("tar://x::{tmp}/empty.tar", "cannot open it"),
    ],
)
def test_a_url_that_names_no_destination_is_refused(
    tmp_path: Path, url: str, fragment: str
) -> None:
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(LakeUnwritable, match=fragment):
        open_destination(url.format(tmp=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tar"]


def test_an_unreachable_destination_is_unavailable_and_memory_is_refused() -> None:
    # Was ConnectionRefusedError: an internal error (exit code 5) instead of 4.
    with pytest.raises(LakeUnavailable, match="Connection refused; try again"):
        open_destination("ftp://127.0.0.1:1/lake")
    # Was a run recorded and its files reported, gone when the process ended.
    for url in ("memory://lake", "cached::memory://lake"):
        with pytest.raises(LakeUnwritable, match="memory:// keeps files only while"):
            export_period(MONTH, url, config=load_settings())


def test_files_in_a_months_folder_that_are_not_the_exports_are_refused(tmp_path: Path) -> None:
    dest = open_destination(str(tmp_path))
    folder = tmp_path / f"period={MONTH}"
    (folder / "invoices").mkdir(parents=True)
    # Each was an internal error (JSONDecodeError, KeyError 'run', ArrowInvalid).
    for text in ("{garbage", json.dumps({"format": mf.FORMAT, "schema_version": 1})):
        (folder / "manifest-000000007.json").write_text(text)
        with pytest.raises(LakeUnwritable, match=r"manifest-000000007\.json is not a manifest"):
            latest_manifest(dest, MONTH)
    (folder / "manifest-000000007.json").unlink()
    (folder / "invoices" / "part-000000007.parquet").write_bytes(b"junk")
    with pytest.raises(LakeUnwritable, match=r"part-000000007\.parquet is not a part file"):
        loaded_rows(dest, MONTH, INVOICES, since_run=1)


# --- a month exported, changed, killed half-way, exported again ------------------------------


class Killed(BaseException):
    """The process killed (kill -9 leaves the same files; nothing after it runs)."""


class _DiesAfter:
    """A file system that dies after `moves` renames (a run's files are renamed into
    place one by one, then its manifest)."""

    def __init__(self, fs: Any, moves: int) -> None:
        self._fs, self._left = fs, moves

    def mv(self, *args: Any, **kwargs: Any) -> Any:
        if self._left == 0:
            raise Killed()
        self._left -= 1
        return self._fs.mv(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)


def test_a_run_killed_between_files_is_ignored_and_the_next_run_is_the_ledger(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    first = export_period(MONTH, str(lake), config=world.config)
    assert first.run is not None
    again = export_period(MONTH, str(lake), config=world.config)
    assert again.run is None and again.unchanged_since == first.run  # nothing written
    # USD's October invoice voided and re-issued, and 3 more JPY resolutions of Oct 28
    # arrive on Dec 6 (a correction on December's invoice): the month changes.
    us = next(i for i in world.invoices() if i["customer"] == "us" and i["status"] != "void")
    void_invoice(us["id"], as_of=utc("2026-12-06 00:00"), config=world.config)
    world.deliver(
        [
            event(f"jp-dec{i}", "jp", "resolution", utc(f"2026-10-28 0{i}:00"),
                  ingested_at="2026-12-06 12:00")
            for i in range(3)
        ]
    )  # fmt: skip
    world.nightly(day("2026-12-06"))
    world.close(utc("2026-12-07 00:00"))

    real = export_job.open_destination

    def dying(url: str) -> Destination:
        dest = real(url)
        return Destination(dest.url, _DiesAfter(dest.fs, 3), dest.root)

    monkeypatch.setattr(export_job, "open_destination", dying)
    with pytest.raises(Killed):
        export_period(MONTH, str(lake), config=world.config)
    monkeypatch.setattr(export_job, "open_destination", real)
    dest = open_destination(str(lake))
    # Readers see run 1 only; the dead run left 3 files in place and the rest staged.
    assert latest_manifest(dest, MONTH)["run"] == first.run
    dead = max(r for t in TABLES for r in part_runs(dest, MONTH, t))
    assert dead > first.run
    assert sum(dead in part_runs(dest, MONTH, t) for t in TABLES) == 3
    assert list((lake / f"period={MONTH}" / "_tmp").iterdir())

    after = export_period(MONTH, str(lake), config=world.config)
    assert after.run is not None and after.run > dead
    manifest = latest_manifest(dest, MONTH)
    assert manifest["run"] == after.run and manifest["previous_run"] == first.run
    # The dead run's staged files are gone (they were left for ever).
    assert not (lake / f"period={MONTH}" / "_tmp").exists()
    # A loader that took every file, the dead run's too, holds exactly the ledger.
    ledger = {
        (i["id"], i["status"], i["total_minor"])
        for i in world.invoices()
        if i["period_start_local"].startswith(MONTH)
    }
    held = {
        (r["invoice_id"], r["status"], r["total_minor"]) for r in loader_state(lake, "invoices")
    }
    assert held == ledger and any(status == "void" for _, status, _ in held)
    schedule = {r.key: r.amount_minor for r in revrec_schedule(MONTH, config=world.config)}
    held_schedule = {
        r["schedule_key"]: r["amount_minor"] for r in loader_state(lake, "revrec_schedule")
    }
    assert held_schedule == schedule
    late = [
        r for r in loader_state(lake, "revrec_schedule") if r["day"].isoformat() == "2026-10-28"
    ]
    assert any(r["customer_id"] == "jp" and r["rule"] == "late_usage_days" for r in late), late
    assert {r["row_version"] for r in loader_state(lake, "invoices")} == {after.run}

    # The folder holds a run above this ledger's next one (written from another ledger,
    # or this ledger restored from a backup): was written as run N+1 under run 999's
    # manifest, every loader keeping run 999's rows. Now refused, nothing recorded or
    # written.
    ahead = dict(manifest, run=999, row_version=999)
    (lake / f"period={MONTH}" / mf.manifest_name(999)).write_bytes(mf.dumps(ahead))
    jp = next(i for i in world.invoices() if i["customer"] == "jp" and i["status"] != "void")
    void_invoice(jp["id"], as_of=utc("2026-12-08 00:00"), config=world.config)
    world.close(utc("2026-12-09 00:00"))
    recorded = runs_recorded(world)
    files = sorted(str(p) for p in lake.rglob("*"))
    status, output = cli(world, "export", "--period", MONTH, "--to", str(lake))
    assert status == 2 and "holds run 999" in one_error(output), output
    assert sorted(str(p) for p in lake.rglob("*")) == files
    assert runs_recorded(world) == recorded


@pytest.mark.parametrize(
    ("url", "code", "fragment"),
    [
        ("memory://lake", 2, "memory:// keeps files only while this process runs"),
        ("s3:/bucket/lake", 2, "looks like a URL with its // missing"),
        ("file://", 2, "names no folder or bucket"),
        ("ftp://127.0.0.1:1/lake", 4, "try again"),
    ],
)
def test_the_command_refuses_in_one_line(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    code: int,
    fragment: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # where a URL taken for a local path would have gone
    recorded = runs_recorded(world)
    status, output = cli(world, "export", "--period", MONTH, "--to", url)
    assert status == code and fragment in one_error(output), output
    assert runs_recorded(world) == recorded
    assert list(tmp_path.iterdir()) == []


def test_a_month_whose_periods_have_not_ended_does_not_suggest_closing_them(
    world: World, tmp_path: Path
) -> None:
    # Was "run `meterline close --period 2199-12`": a close that would finalize periods
    # that have not ended (here, for a month so far ahead, none `close` takes after it).
    status, output = cli(world, "export", "--period", "2199-11", "--to", str(tmp_path / "l"))
    error = one_error(output)
    assert status == 2 and "is not closed" in error, output
    assert "are not all due before 2200-01-04T12:00:00Z" in error and "from then on" in error
