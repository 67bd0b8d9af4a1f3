"""Ending a subscription inside a period that already has a draft (the breaker's repro):
the draft's period is cut to the end, and close finalizes it at the cut end plus the
grace period, not two weeks later (docs/ledger.md, "Customers file", rule 3; prices:
tests/scenarios/catalog.yaml, 1.00 a resolution up to 100).

c4 (America/New_York, anchor 15) from 2026-12-15: December (12-15..01-15) is finalized
with 10 resolutions; 5 resolutions of January 10 arrive late and are corrected on the
draft of 01-15..02-15; then the customers file ends the subscription on 2027-02-01."""

from __future__ import annotations

from dataclasses import replace

from tests.scenarios.harness import Invoice, Line, Sub, World, check, day, resolutions, utc

C4 = Sub("c4", "basic", start="2026-12-15", timezone="America/New_York", anchor=15)
SEAT = Line("seat", "usage", None, 0, "0.00")
DECEMBER = Invoice(
    "c4",
    "2026-12-15",
    lines=[SEAT, Line("resolution", "usage", None, 10, "10.00")],
    total="10.00",
    utc_period=("2026-12-15 05:00", "2027-01-15 05:00"),
)
CORRECTION = Line("resolution", "adjustment", None, 5, "5.00")


def ended_with_a_draft(world: World) -> None:
    world.load_customers([C4])
    world.deliver(
        [
            *resolutions("c4", "dec", 10, "2026-12-20 15:00"),
            *resolutions("c4", "late", 5, "2027-01-10 15:00", ingested_at="2027-01-20 00:30"),
            *resolutions("c4", "jan", 7, "2027-01-20 15:00"),
            # after the end: never billed
            *resolutions("c4", "feb", 4, "2027-02-02 15:00"),
        ]
    )
    world.nightly(day("2026-12-20"))
    assert len(world.close(utc("2027-01-18 05:00")).invoices_finalized) == 1
    world.nightly(day("2027-01-19"))  # the late delivery: January 10 is rebuilt
    assert world.close(utc("2027-01-21 00:00")).adjustment_lines == 1
    check(
        world,
        [
            DECEMBER,
            Invoice(
                "c4",
                "2027-01-15",
                lines=[CORRECTION],
                total="5.00",
                status="draft",
                utc_period=("2027-01-15 05:00", "2027-02-15 05:00"),
            ),
        ],
    )
    world.load_customers([replace(C4, end="2027-02-01")])


def test_an_end_inside_a_drafted_period_cuts_the_draft(ledger_world: World) -> None:
    world = ledger_world
    ended_with_a_draft(world)
    # The reload itself cuts the draft's period; the correction it carries stays.
    cut = Invoice(
        "c4",
        "2027-01-15",
        lines=[CORRECTION],
        total="5.00",
        status="draft",
        utc_period=("2027-01-15 05:00", "2027-02-01 05:00"),
    )
    check(world, [DECEMBER, cut])

    world.nightly(day("2027-01-20"), day("2027-02-02"))
    # Not yet: the cut end (02-01 05:00Z) + 72 h is 02-04 05:00Z.
    early = world.close(utc("2027-02-04 04:00"))
    assert early.invoices_finalized == ()
    report = world.close(utc("2027-02-04 05:00"))
    assert report.ok and len(report.invoices_finalized) == 1
    check(
        world,
        [
            DECEMBER,
            Invoice(
                "c4",
                "2027-01-15",
                lines=[SEAT, Line("resolution", "usage", None, 7, "7.00"), CORRECTION],
                total="12.00",  # 7 resolutions before the end + the 5.00 correction
                adjustments="5.00",
                utc_period=("2027-01-15 05:00", "2027-02-01 05:00"),
            ),
        ],
    )
