"""A day whose stored events changed since its rollup was built is billed right, or not
at all (issue 11 follow-up): on both warehouse backends and both ledger databases.

- History ingested with `--as-of` for a day older than the late-event lookback is rolled
  up by the next nightly run (the ingest journal names its days), and the next close
  adjusts the finalized period it belongs to, however long ago that period ended.
- A close never finalizes an invoice from a rollup that misses days: the period is held
  back, named with its days and the command to run, and `meterline close` exits 1; after
  the rollup, the close bills the exact amount.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import meters.rollup
from meterline.cli import main
from meterline.jobs.close import NotRolledUp
from meterline.settings import settings
from meters.ingest.ingestor import ingest_events
from meters.rollup import plan_scan
from meters.warehouse.base import Warehouse
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.scenarios.harness import CATALOG, Sub, World, resolutions, utc
from tests.scenarios.ledgers import load


@pytest.fixture
def world(
    warehouse: Warehouse,
    chdb_folder: Path,
    tmp_path: Path,
    ledger_url: str,  # noqa: F811
) -> World:
    """One pipeline: its own warehouse database, and its ledger on the running variant."""
    built = World(warehouse, chdb_folder, tmp_path / "world")
    built.config = built.config.model_copy(update={"ledger_url": ledger_url})
    return built


def lines(world: World) -> list[dict[str, Any]]:
    return [ln for inv in world.invoices() for ln in inv["lines"]]


def rollup_events(world: World, day: date) -> int:
    ((events,),) = world.warehouse.query_rows(
        "SELECT sum(events) FROM usage_rollup WHERE toDate(hour) = {day:Date}", {"day": day}
    )
    return int(events or 0)


def test_history_older_than_the_lookback_is_rolled_up_nightly_and_adjusted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test's steps are seconds apart: without the margin a scan reads only the ingests
    # journaled since the previous one began.
    monkeypatch.setattr(meters.rollup, "SCAN_MARGIN", timedelta(0))
    # Anchor day 5: the period 2026-08-05..2026-09-05 holds 2026-09-02.
    load(world, [Sub("c_old", "basic", start="2026-08-05", anchor=5)])
    world.deliver(resolutions("c_old", "r-", 5, "2026-09-02 10:00", channel="chat"))
    world.nightly(date(2026, 9, 2))
    first = world.close(utc("2026-09-09 00:00"))
    assert first.ok and first.periods_closed == 1 and len(first.invoices_finalized) == 1
    (usage,) = [ln for ln in lines(world) if ln["price_id"] == "resolution"]
    assert (Decimal(usage["quantity"]), usage["amount"]) == (5, "5.00")
    # Nights pass: each scans its lookback (Settings.late_lookback: 47 days by default).
    world.deliver(resolutions("c_old", "oct-", 2, "2026-10-30 09:00", channel="chat"))
    (night,) = world.nightly(date(2026, 10, 30))
    assert night.late_days == []

    # 2026-11-01: three more resolutions of 2026-09-02 (60 days old) arrive as a backfill,
    # accepted with --as-of; the day is older than the nightly lookback (from 2026-09-15).
    history = resolutions("c_old", "hist-", 3, "2026-09-02 20:00", channel="chat")
    for doc in history:
        doc.pop("ingested_at")
    summary = ingest_events(
        world.warehouse,
        world.meters,
        history,
        source="history",
        ingested_at=utc("2026-11-01 10:00"),
        as_of=utc("2026-09-03 00:00"),
    )
    assert summary.total.accepted == 3
    assert rollup_events(world, date(2026, 9, 2)) == 5

    # The next nightly run rebuilds that day: the journal names it, the lookback does not.
    (nightly,) = world.rollup(date(2026, 11, 1))
    assert nightly.late_days == ["2026-09-02"]
    assert (date(2026, 9, 2), date(2026, 9, 2)) in nightly.scanned
    assert rollup_events(world, date(2026, 9, 2)) == 8
    # Recorded: the night after reads its lookback only, and finds nothing.
    (after,) = world.rollup(date(2026, 11, 2))
    assert after.late_days == [] and after.scanned[0][0] > date(2026, 9, 2)

    # The period ended 2026-09-05, 58 days before this close: past the lookback, yet the
    # ingest since the previous close names it, and its 3 late resolutions are adjusted.
    again = world.close(utc("2026-11-02 00:00"))
    assert again.ok and again.not_rolled_up == ()
    assert (again.periods_checked_for_late_usage, again.adjustment_lines) == (1, 1)
    (adjustment,) = [ln for ln in lines(world) if ln["kind"] == "adjustment"]
    # 8 resolutions instead of 5, all in the first tier at 1.00.
    assert (Decimal(adjustment["quantity"]), adjustment["amount"]) == (3, "3.00")
    assert adjustment["service_period_start"].startswith("2026-08-05")
    # Closing again changes nothing.
    assert world.close(utc("2026-11-02 00:00")).adjustment_lines == 0


def test_a_scan_reads_the_days_ingests_wrote_not_the_whole_table(world: World) -> None:
    """The first scan reads every day once; later ones read their lookback plus the days
    of the ingests since, and carry the days after the rolled-up day to a later scan."""
    load(world, [Sub("c_scan", "basic", start="2026-01-01")])
    world.deliver(resolutions("c_scan", "a-", 1, "2026-03-10 10:00", channel="chat"))
    (first,) = world.nightly(date(2026, 3, 10))
    assert first.scanned == [(date(1970, 1, 1), date(2026, 3, 9))]
    old = resolutions("c_scan", "b-", 1, "2026-01-05 10:00", channel="chat")
    new = resolutions("c_scan", "c-", 1, "2026-06-20 10:00", channel="chat")
    for doc in (*old, *new):
        doc.pop("ingested_at")
    for batch, as_of in ((old, "2026-01-06 00:00"), (new, "2026-06-21 00:30")):
        ingest_events(
            world.warehouse,
            world.meters,
            batch,
            source="history",
            ingested_at=utc("2026-06-21 00:30"),
            as_of=utc(as_of),
        )
    # A rollup of an older day: the January day is scanned, the June one carried.
    (older,) = world.rollup(date(2026, 3, 12))
    assert older.late_days == ["2026-01-05"]
    assert older.scanned[0] == (date(2026, 1, 5), date(2026, 1, 5))
    plan = plan_scan(world.warehouse, up_to=date(2026, 7, 1), lookback_from=date(2026, 7, 1))
    assert plan.carried is None and (date(2026, 6, 20), date(2026, 6, 20)) in plan.ranges
    (june,) = world.rollup(date(2026, 7, 1))
    assert "2026-06-20" in june.late_days


def close_cli(world: World, *args: str) -> tuple[int, str]:
    env = {
        "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
        "METERLINE_LEDGER_URL": world.config.ledger_url,
        "METERLINE_CATALOG_PATH": str(CATALOG),
        "COLUMNS": "200",
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_close_holds_a_period_with_a_day_not_rolled_up(world: World) -> None:
    load(world, [Sub("c_wait", "basic", start="2026-11-01")])
    world.deliver(resolutions("c_wait", "r-", 5, "2026-11-09 10:00", channel="chat"))
    world.nightly(date(2026, 11, 9))
    # Nov 10's delivery is ingested; nobody rolls Nov 10 up before the close.
    world.deliver(resolutions("c_wait", "s-", 7, "2026-11-10 10:00", channel="chat"))
    world.ingest_until(utc("2026-11-11 01:00"))

    code, output = close_cli(world, "close", "--as-of", "2026-12-04T00:00:00Z")
    assert code == 1, output
    assert "days 2026-11-10: run `meterline rollup --day 2026-11-10`" in output
    assert "sub_c_wait (c_wait): period 2026-11-01..2026-12-01 not invoiced" in output
    assert "finalized 0 invoices" in output
    assert world.invoices() == []
    code, output = close_cli(world, "close", "--as-of", "2026-12-04T00:00:00Z", "--json")
    assert code == 1
    report = world.close(utc("2026-12-04 00:00"))
    assert not report.ok and report.periods_closed == 0 and report.invoices_finalized == ()
    assert report.not_rolled_up == (
        NotRolledUp(
            subscription="sub_c_wait",
            customer="c_wait",
            what="invoice",
            period=(utc("2026-11-01 00:00"), utc("2026-12-01 00:00")),
            days=(date(2026, 11, 10),),
            command="meterline rollup --day 2026-11-10",
        ),
    )

    code, output = close_cli(world, "rollup", "--day", "2026-11-10", "--quiet")
    assert code == 0, output
    code, output = close_cli(world, "close", "--as-of", "2026-12-04T00:00:00Z")
    assert code == 0, output
    (invoice,) = world.invoices()
    assert invoice["status"] == "finalized"
    (usage,) = [ln for ln in invoice["lines"] if ln["price_id"] == "resolution"]
    # 5 + 7 resolutions, all in the first tier at 1.00; no seats.
    assert (Decimal(usage["quantity"]), usage["amount"]) == (12, "12.00")
    assert Decimal(invoice["total"]) == Decimal("12.00")


def test_a_finalized_period_with_a_stale_day_is_not_adjusted_until_the_rollup(
    world: World,
) -> None:
    load(world, [Sub("c_late", "basic", start="2026-11-01")])
    world.deliver(resolutions("c_late", "r-", 4, "2026-11-09 10:00", channel="chat"))
    world.nightly(date(2026, 11, 9))
    assert world.close(utc("2026-12-04 00:00")).ok
    # Two late events of Nov 9 arrive; the close runs before the rollup.
    world.deliver(
        resolutions(
            "c_late", "x-", 2, "2026-11-09 20:00", channel="chat", ingested_at="2026-12-04 00:30"
        )
    )
    held = world.close(utc("2026-12-05 00:00"))
    assert [(h.what, h.days) for h in held.not_rolled_up] == [("adjustment", (date(2026, 11, 9),))]
    assert held.adjustment_lines == 0 and not held.ok
    assert [ln for ln in lines(world) if ln["kind"] == "adjustment"] == []
    world.rollup(date(2026, 12, 4))  # the nightly run rebuilds Nov 9 (a late day)
    done = world.close(utc("2026-12-05 00:00"))
    assert done.ok and done.adjustment_lines == 1
    (adjustment,) = [ln for ln in lines(world) if ln["kind"] == "adjustment"]
    assert (Decimal(adjustment["quantity"]), adjustment["amount"]) == (2, "2.00")
