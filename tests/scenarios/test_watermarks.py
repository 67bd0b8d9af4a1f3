"""Late means "not seen by the rating run that produced the line" (issue 11 item 12,
DESIGN.md invariant 7): two months of history ingested today and closed with an earlier
`as_of` have no late event; one event ingested after that close is late, exactly one,
and the next close adjusts it. On both warehouse backends and both ledger databases.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterline.audit.explain import explain_line
from meterline.audit.reconcile import reconcile_after_close
from meterline.audit.statement import render, statement_data
from meters.ingest.ingestor import ingest_events
from tests.scenarios.harness import Sub, World, event, resolutions, utc
from tests.scenarios.ledgers import load

# The wall-clock day the history is ingested: months after the periods it fills.
TODAY = utc("2027-02-15 10:00")
AS_OF = utc("2026-12-04 00:00")


def history(world: World, events: list[dict[str, Any]], *, as_of: str, at: Any) -> None:
    """Ingest a backfill: every event ingested at `at` (the clock of the machine), with
    the accepted age window measured from `as_of` (ingest's --as-of)."""
    for doc in events:
        doc.pop("ingested_at", None)
    summary = ingest_events(
        world.warehouse,
        world.meters,
        events,
        source="history",
        ingested_at=at,
        as_of=utc(as_of),
    )
    assert summary.total.balanced and not summary.total.rejected, summary.to_json()


def lines_of(world: World) -> list[dict[str, Any]]:
    return [ln for inv in world.invoices() for ln in inv["lines"]]


def test_history_ingested_today_and_closed_earlier_has_no_late_events(
    ledger_world: World,
) -> None:
    world = ledger_world
    load(world, [Sub("c_hist", "basic", start="2026-10-01")])
    # October: 2 seats all month and 10 resolutions; November: 20 resolutions.
    history(
        world,
        [
            event("s-1", "c_hist", "seats", "2026-10-01 00:00", value=2),
            *resolutions("c_hist", "oct-", 10, "2026-10-15 12:00", every_min=60, channel="chat"),
        ],
        as_of="2026-11-01 00:00",
        at=TODAY,
    )
    history(
        world,
        resolutions("c_hist", "nov-", 20, "2026-11-15 12:00", every_min=60, channel="chat"),
        as_of="2026-12-01 00:00",
        at=TODAY,
    )
    world.backfill(utc("2026-10-01 00:00").date(), utc("2026-11-30 00:00").date())
    report = world.close(AS_OF)
    assert report.periods_closed == 2 and report.ok
    # The close saw everything ingested up to TODAY: its watermark, not its as_of.
    assert report.watermark is not None and report.watermark.events == TODAY

    # Every line agrees and has no late event, although every event was ingested
    # (TODAY) after the close's logical time (AS_OF).
    lines = lines_of(world)
    assert len(lines) == 4
    for line in lines:
        doc = explain_line(line["id"], config=world.config)
        assert (doc.status, doc.late_events.count) == ("agrees", 0), line
    reports = reconcile_after_close(AS_OF, config=world.config)
    assert [r.period for r in reports] == ["2026-10", "2026-11"]
    for r in reports:
        assert r.ok and r.drift == [] and r.findings == [], r.summary()
        assert [c.late_events for c in r.customers] == [0]
    page = render(statement_data("c_hist", "2026-11", view="internal", config=world.config))
    assert "Events not seen by the rating run" not in page

    # One real late event: a November resolution ingested after that close.
    history(
        world,
        [event("nov-late", "c_hist", "resolution", "2026-11-20 08:00", channel="chat")],
        as_of="2026-12-01 00:00",
        at=TODAY + timedelta(days=1),
    )
    world.rollup(utc("2026-11-20 00:00").date())
    again = world.close(utc("2026-12-05 00:00"))
    assert (again.periods_checked_for_late_usage, again.adjustment_lines) == (1, 1)

    (usage,) = [
        ln
        for ln in lines_of(world)
        if ln["kind"] == "usage"
        and ln["price_id"] == "resolution"
        and ln["service_period_start"].startswith("2026-11-01")
    ]
    doc = explain_line(usage["id"], config=world.config)
    assert doc.status == "adjusted"
    assert doc.late_events.count == 1
    assert [e.event_id for e in doc.late_events.events] == ["nov-late"]
    (adjustment,) = doc.adjustments
    # 21 resolutions instead of 20, all in tier 1: + 1 x 1.00
    assert (adjustment.quantity, adjustment.amount) == (1, "1.00")
    october = [
        ln
        for ln in lines_of(world)
        if ln["service_period_start"].startswith("2026-10-01") and ln["kind"] == "usage"
    ]
    for line in october:
        assert explain_line(line["id"], config=world.config).late_events.count == 0
    (nov,) = [
        r
        for r in reconcile_after_close(utc("2026-12-05 00:00"), config=world.config)
        if r.period == "2026-11"
    ]
    assert nov.ok
    assert [(d.late_events, d.adjusted) for d in nov.drift] == [(1, True)]
    page = render(statement_data("c_hist", "2026-11", view="internal", config=world.config))
    assert "Events not seen by the rating run that produced the line: 1:" in page


@pytest.mark.single_warehouse
def test_a_stale_rollup_day_holds_its_period_until_the_rollup(ledger_world: World) -> None:
    """A close that reads a day whose rollup missed events records that day's own
    watermark and bills nothing of a period holding it (nothing is finalized from a
    rollup that misses days): the period is reported with the day; after the rollup,
    the next close bills every event."""
    world = ledger_world
    load(world, [Sub("c_stale", "basic", start="2026-11-01")])
    world.deliver(resolutions("c_stale", "r-", 5, "2026-11-10 10:00", channel="chat"))
    world.nightly(utc("2026-11-10 00:00").date())
    # Two more of Nov 10 arrive on Dec 2; nobody rolls Nov 10 up before the close.
    world.deliver(
        resolutions(
            "c_stale", "x-", 2, "2026-11-10 20:00", channel="chat", ingested_at="2026-12-02 00:30"
        )
    )
    report = world.close(AS_OF)
    assert report.watermark is not None
    assert report.watermark.events == utc("2026-12-02 00:30")
    assert report.watermark.stale == {utc("2026-11-10 00:00").date(): utc("2026-11-11 00:30")}
    assert not report.ok and report.invoices_finalized == ()
    assert [(h.subscription, h.days) for h in report.not_rolled_up] == [
        ("sub_c_stale", (utc("2026-11-10 00:00").date(),))
    ]
    assert lines_of(world) == []

    world.rollup(utc("2026-11-10 00:00").date())
    again = world.close(utc("2026-12-05 00:00"))
    assert again.ok and again.adjustment_lines == 0
    (usage,) = [ln for ln in lines_of(world) if ln["price_id"] == "resolution"]
    assert (Decimal(usage["quantity"]), usage["amount"]) == (7, "7.00")
    doc = explain_line(usage["id"], config=world.config)
    assert (doc.status, doc.late_events.count) == ("agrees", 0)


@pytest.mark.single_warehouse
def test_events_ingested_with_the_builds_own_clock_after_it_hold_the_period(
    ledger_world: World,
) -> None:
    """A delivery stamped with the same ingest time as the one a day's rollup was built
    from, but stored after the build: the watermark cannot tell its events from those the
    build read (the day's mark is the epoch), so the close bills nothing of the period;
    after the rollup, the next close bills all 7 events."""
    world = ledger_world
    load(world, [Sub("c_clock", "basic", start="2026-11-01")])
    world.deliver(resolutions("c_clock", "r-", 5, "2026-11-10 10:00", channel="chat"))
    world.nightly(utc("2026-11-10 00:00").date())  # built from the Nov 11 00:30 delivery
    history(
        world,
        resolutions("c_clock", "same-", 2, "2026-11-10 20:00", channel="chat"),
        as_of="2026-11-11 00:30",
        at=utc("2026-11-11 00:30"),
    )
    report = world.close(AS_OF)
    assert report.watermark is not None
    assert report.watermark.stale == {utc("2026-11-10 00:00").date(): utc("1970-01-01 00:00")}
    assert [h.command for h in report.not_rolled_up] == ["meterline rollup --day 2026-11-10"]
    assert lines_of(world) == []
    world.rollup(utc("2026-11-10 00:00").date())
    assert world.close(utc("2026-12-05 00:00")).ok
    (usage,) = [ln for ln in lines_of(world) if ln["price_id"] == "resolution"]
    assert (Decimal(usage["quantity"]), usage["amount"]) == (7, "7.00")
    assert explain_line(usage["id"], config=world.config).status == "agrees"
