"""Late readings of a carry-forward meter (seats, time_weighted: a reading holds until the
next one) change every finalized period their value reaches into, not only the period
they are dated in (prices: tests/scenarios/catalog.yaml, seat 30.00 a seat)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from meterline.audit.reconcile import reconcile_after_close, reconcile_period
from meters.ingest.ingestor import IngestOptions, ingest_events
from tests.scenarios.harness import Invoice, Line, Sub, World, check, day, event, utc

# Old enough readings are accepted: the late one is 50 days old when it arrives (the
# default 45 would refuse it, and no finalized October could then be late).
MAX_AGE_DAYS = 60

AUGUST = Invoice(
    "cs",
    "2026-08-01",
    lines=[Line("seat", "usage", None, 10, "300.00"), Line("resolution", "usage", None, 0, "0.00")],
    total="300.00",
)
SEPTEMBER = Invoice("cs", "2026-09-01", lines=AUGUST.lines, total="300.00")
OCTOBER = Invoice("cs", "2026-10-01", lines=AUGUST.lines, total="300.00")
NOVEMBER_DRAFT = Invoice(
    "cs",
    "2026-11-01",
    lines=[
        # September: 10 seats for 15 of its 30 days, 20 for the other 15: 15 seats on
        # average, 450.00; billed 300.00 (10 seats): + 5 seats, + 150.00
        Line("seat", "adjustment", None, 5, "150.00"),
        # October: the 20 seats held all month (no later reading): 600.00; billed 300.00
        # (10 seats): + 10 seats, + 300.00
        Line("seat", "adjustment", None, 10, "300.00"),
    ],
    total="450.00",
    status="draft",
    adjustments="450.00",
)


def late_seat_reading(world: World) -> None:
    """10 seats from August 1; August, September and October finalized on the 4th of the
    next month; on November 5 a reading of 20 seats dated September 16 arrives."""
    world.config = world.config.model_copy(update={"max_event_age_days": MAX_AGE_DAYS})
    world.load_customers([Sub("cs", "basic", start="2026-08-01")])
    world.deliver([event("cs-aug", "cs", "seats", "2026-08-01 00:00", value=10)])
    world.nightly(day("2026-08-01"))
    for as_of in ("2026-09-04 00:00", "2026-10-04 00:00", "2026-11-04 00:00"):
        assert len(world.close(utc(as_of)).invoices_finalized) == 1
    check(world, [AUGUST, SEPTEMBER, OCTOBER])

    arrived = utc("2026-11-05 00:30")
    summary = ingest_events(
        world.warehouse,
        world.meters,
        [event("cs-sep", "cs", "seats", "2026-09-16 00:00", value=20)],
        source="late delivery",
        ingested_at=arrived,
        options=IngestOptions(max_event_age=timedelta(days=MAX_AGE_DAYS)),
    )
    assert summary.total.accepted == 1
    # The Nov 4 nightly run rebuilds Sep 16, the day the late reading made dirty.
    (rollup,) = world.nightly(day("2026-11-04"))
    assert rollup.late_days == ["2026-09-16"]


def test_a_late_reading_is_adjusted_in_every_period_it_carries_into(ledger_world: World) -> None:
    world = ledger_world
    late_seat_reading(world)
    report = world.close(utc("2026-11-06 00:00"))
    # September (the reading's own period) and October (its value carried on); August
    # ended before the reading and is not late.
    assert report.periods_checked_for_late_usage == 2
    assert report.adjustment_lines == 2
    check(world, [AUGUST, SEPTEMBER, OCTOBER, NOVEMBER_DRAFT])

    # Reconcile finds nothing: every finalized period is billed what its raw events say.
    for month in ("2026-08", "2026-09", "2026-10"):
        rec = reconcile_period(month, config=world.config)
        assert rec.ok and rec.findings == [], rec.summary()

    # Adjusted once: the next close finds nothing late any more.
    again = world.close(utc("2026-11-07 00:00"))
    assert (again.periods_checked_for_late_usage, again.adjustment_lines) == (0, 0)
    check(world, [AUGUST, SEPTEMBER, OCTOBER, NOVEMBER_DRAFT])

    # November closes with its own 20 seats and carries both corrections.
    december = world.close(utc("2026-12-04 00:00"))
    assert december.ok
    check(
        world,
        [
            AUGUST,
            SEPTEMBER,
            OCTOBER,
            Invoice(
                "cs",
                "2026-11-01",
                lines=[
                    Line("seat", "usage", None, 20, "600.00"),
                    Line("resolution", "usage", None, 0, "0.00"),
                    *NOVEMBER_DRAFT.lines,
                ],
                total="1050.00",  # 600.00 + 150.00 + 300.00
                adjustments="450.00",
            ),
        ],
        exact=False,
    )
    for rec in reconcile_after_close(utc("2026-12-04 00:00"), config=world.config):
        assert rec.ok and rec.findings == [], rec.summary()


def test_a_late_reading_superseded_before_a_period_leaves_it_alone(world: World) -> None:
    """A reading of 12 seats on October 1 was seen by October's run: the late September
    reading stops there, so only September changes."""
    world.config = world.config.model_copy(update={"max_event_age_days": MAX_AGE_DAYS})
    world.load_customers([Sub("ct", "basic", start="2026-08-01")])
    world.deliver(
        [
            event("ct-aug", "ct", "seats", "2026-08-01 00:00", value=10),
            event("ct-oct", "ct", "seats", "2026-10-01 00:00", value=12),
        ]
    )
    world.nightly(day("2026-08-01"), day("2026-10-01"))
    for as_of in ("2026-09-04 00:00", "2026-10-04 00:00", "2026-11-04 00:00"):
        assert len(world.close(utc(as_of)).invoices_finalized) == 1
    ingest_events(
        world.warehouse,
        world.meters,
        [event("ct-sep", "ct", "seats", "2026-09-16 00:00", value=20)],
        source="late delivery",
        ingested_at=utc("2026-11-05 00:30"),
        options=IngestOptions(max_event_age=timedelta(days=MAX_AGE_DAYS)),
    )
    world.nightly(day("2026-11-04"))
    report = world.close(utc("2026-11-06 00:00"))
    assert (report.periods_checked_for_late_usage, report.adjustment_lines) == (1, 1)
    (november,) = [i for i in world.invoices() if i["period_start_local"] == "2026-11-01"]
    assert [
        (ln["price_id"], Decimal(ln["quantity"]), ln["amount"]) for ln in november["lines"]
    ] == [
        ("seat", 5, "150.00")  # September only: 15 seats on average instead of 10
    ]
    for month in ("2026-09", "2026-10"):
        rec = reconcile_period(month, config=world.config)
        assert rec.ok and rec.findings == [], rec.summary()
