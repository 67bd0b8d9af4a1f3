"""Late events: delivered after their day was rolled up, before or after the invoice of
their period was finalized (prices: tests/scenarios/catalog.yaml)."""

from __future__ import annotations

import pytest

from tests.scenarios.harness import (
    Invoice,
    Line,
    Sub,
    World,
    check,
    day,
    event,
    find,
    resolutions,
    utc,
)


def test_late_event_before_finalization_is_invoiced(world: World) -> None:
    world.load_customers([Sub("c8", "basic", start="2026-11-01")])
    world.deliver(
        [
            # 5 on Nov 10, in the nightly delivery of Nov 11 00:30
            *resolutions("c8", "c8-r", 5, "2026-11-10 10:00", channel="chat"),
            # 1 more of Nov 10, delivered ten days late
            event(
                "c8-late",
                "c8",
                "resolution",
                "2026-11-10 15:00",
                ingested_at="2026-11-20 00:30",
                channel="chat",
            ),
        ]
    )
    world.nightly(day("2026-11-10"))
    assert [e["event_id"] for e in world.pending] == ["c8-late"]

    # The Nov 20 nightly run ingests the late delivery and rebuilds Nov 10 as well.
    (report,) = world.nightly(day("2026-11-20"))
    assert report.late_days == ["2026-11-10"]

    close = world.close(utc("2026-12-04 00:00"))
    assert close.periods_closed == 1
    check(
        world,
        [
            Invoice(
                "c8",
                "2026-11-01",
                lines=[
                    # 5 + 1 late = 6 resolutions in the first tier: 6 x 1.00
                    Line("resolution", "usage", None, 6, "6.00"),
                    Line("seat", "usage", None, 0, "0.00"),
                ],
                total="6.00",
            )
        ],
    )


# November, as finalized on Dec 4 (before the late events).
NOVEMBER = [
    Invoice(
        "c9",
        "2026-11-01",
        lines=[
            Line("seat", "usage", None, 1, "30.00"),  # 1 seat all month x 30.00
            Line("resolution", "usage", None, 98, "98.00"),  # 98 in tier 1 x 1.00
        ],
        total="128.00",
    ),
    Invoice(
        "c9b",
        "2026-11-01",
        lines=[
            Line("platform_fee", "flat", None, 1, "100.00"),
            Line("seat", "usage", None, 5, "150.00"),  # 5 x 30.00
            Line("resolution", "usage", None, 100, "100.00"),  # 100 x 1.00
            # 100 + 150 + 100 = 350.00 < 500.00: true-up 150.00
            Line("minimum_commitment", "minimum_true_up", None, 1, "150.00"),
        ],
        total="500.00",
    ),
]

# The corrections, on the December drafts (the next period of each subscription).
DECEMBER_DRAFTS = [
    Invoice(
        "c9",
        "2026-12-01",
        lines=[
            # 98 + 5 = 103 resolutions: 100 x 1.00 + 3 x 0.50 = 101.50, billed 98.00:
            # the 5 late ones cost 2 x 1.00 + 3 x 0.50 = 3.50 (the 3 beyond 100 in tier 2)
            Line("resolution", "adjustment", None, 5, "3.50"),
        ],
        total="3.50",
        status="draft",
        adjustments="3.50",
    ),
    Invoice(
        "c9b",
        "2026-12-01",
        lines=[
            # 100 + 30 = 130 resolutions: +30 x 1.00
            Line("resolution", "adjustment", None, 30, "30.00"),
            # lines now 100 + 150 + 130 = 380.00: the true-up falls from 150.00 to 120.00;
            # the customer still pays exactly the 500.00 commitment for November
            Line("minimum_commitment", "adjustment", None, 0, "-30.00"),
        ],
        total="0.00",
        status="draft",
    ),
]


def test_late_event_after_finalization_is_an_adjustment_on_the_next_invoice(
    world: World,
) -> None:
    late = "2026-12-05 00:30"  # after November was finalized (Dec 4 00:00)
    world.load_customers(
        [Sub("c9", "basic", start="2026-11-01"), Sub("c9b", "committed", start="2026-11-01")]
    )
    world.deliver(
        [
            event("c9-s", "c9", "seats", "2026-11-01 00:00", value=1),
            *resolutions("c9", "c9-r", 98, "2026-11-20 08:00", channel="chat"),
            *resolutions("c9", "c9-late", 5, "2026-11-20 22:00", ingested_at=late, channel="chat"),
            event("c9b-s", "c9b", "seats", "2026-11-01 00:00", value=5),
            *resolutions("c9b", "c9b-r", 100, "2026-11-20 08:00", channel="email"),
            *resolutions(
                "c9b", "c9b-late", 30, "2026-11-20 22:00", ingested_at=late, channel="email"
            ),
        ]
    )
    world.nightly(day("2026-11-01"), day("2026-11-20"))
    first = world.close(utc("2026-12-04 00:00"))
    assert len(first.invoices_finalized) == 2
    before = {i["customer"]: i for i in check(world, NOVEMBER)}

    # The late delivery: the Dec 4 nightly run rebuilds Nov 20; its close posts the
    # difference on the December drafts.
    (rollup,) = world.nightly(day("2026-12-04"))
    assert rollup.late_days == ["2026-11-20"]
    second = world.close(utc("2026-12-05 00:00"))
    assert (second.periods_closed, second.lines_created) == (0, 0)
    assert second.periods_checked_for_late_usage == 2
    assert second.adjustment_lines == 3
    invoices = check(world, NOVEMBER + DECEMBER_DRAFTS)

    # The finalized invoices did not change at all (same line ids, amounts, totals).
    for customer, invoice in before.items():
        assert find(invoices, customer, "2026-11-01") == invoice
    # Each adjustment points at the November line it corrects.
    for customer in ("c9", "c9b"):
        november = {ln["price_id"]: ln for ln in before[customer]["lines"]}
        for adj in find(invoices, customer, "2026-12-01")["lines"]:
            assert adj["adjusts_line_id"] == november[adj["price_id"]]["id"]
            assert adj["service_period_start"] == before[customer]["period_start"]

    # The next night's close finds nothing more to correct.
    world.nightly(day("2026-12-05"))
    third = world.close(utc("2026-12-06 00:00"))
    assert (third.lines_created, third.adjustment_lines) == (0, 0)
    assert check(world, NOVEMBER + DECEMBER_DRAFTS) == invoices

    # December closes: its own usage is rated and the corrections stay on its invoice.
    # (exact=False: this close also leaves empty January drafts behind, see
    # test_a_recheck_that_finds_nothing_to_correct_creates_no_invoice)
    world.deliver(resolutions("c9", "c9-dec", 10, "2026-12-10 09:00", channel="chat"))
    world.nightly(day("2026-12-10"))
    world.close(utc("2027-01-04 00:00"))
    check(
        world,
        [
            *NOVEMBER,
            Invoice(
                "c9",
                "2026-12-01",
                lines=[
                    Line("seat", "usage", None, 1, "30.00"),  # the seat carried on
                    Line("resolution", "usage", None, 10, "10.00"),  # 10 x 1.00
                    Line("resolution", "adjustment", None, 5, "3.50"),  # November's
                ],
                total="43.50",  # 30.00 + 10.00 + 3.50
                adjustments="3.50",
            ),
            Invoice(
                "c9b",
                "2026-12-01",
                lines=[
                    Line("platform_fee", "flat", None, 1, "100.00"),
                    Line("seat", "usage", None, 5, "150.00"),
                    Line("resolution", "usage", None, 0, "0.00"),
                    # December's own lines: 250.00, trued up by 250.00 to 500.00
                    Line("minimum_commitment", "minimum_true_up", None, 1, "250.00"),
                    Line("resolution", "adjustment", None, 30, "30.00"),
                    Line("minimum_commitment", "adjustment", None, 0, "-30.00"),
                ],
                total="500.00",
            ),
        ],
        exact=False,
    )


def late_after_finalization(world: World, sub: Sub) -> None:
    """10 resolutions in November, finalized on Dec 4; 2 more of November delivered on
    Dec 5 and corrected by that night's close."""
    c = sub.customer_id
    world.load_customers([sub])
    world.deliver(
        [
            *resolutions(c, f"{c}-r", 10, "2026-11-20 08:00", channel="chat"),
            *resolutions(
                c,
                f"{c}-late",
                2,
                "2026-11-20 22:00",
                ingested_at="2026-12-05 00:30",
                channel="chat",
            ),
        ]
    )
    world.nightly(day("2026-11-20"))
    world.close(utc("2026-12-04 00:00"))
    world.nightly(day("2026-12-04"))
    assert world.close(utc("2026-12-05 00:00")).adjustment_lines == 1


@pytest.mark.single_warehouse
def test_a_recheck_that_finds_nothing_to_correct_creates_no_invoice(world: World) -> None:
    late_after_finalization(world, Sub("c11", "basic", start="2026-11-01"))
    # January 4: December (carrying November's correction) closes. November is within the
    # late-usage lookback, but the Dec 5 run that corrected it saw its late events (its
    # watermark): nothing is late for it any more, so it is not even re-rated.
    report = world.close(utc("2027-01-04 00:00"))
    assert (report.periods_checked_for_late_usage, report.adjustment_lines) == (0, 0)
    check(
        world,
        [
            # 10 x 1.00
            Invoice(
                "c11",
                "2026-11-01",
                [
                    Line("resolution", "usage", None, 10, "10.00"),
                    Line("seat", "usage", None, 0, "0.00"),
                ],
                "10.00",
            ),
            Invoice(
                "c11",
                "2026-12-01",
                lines=[
                    Line("resolution", "usage", None, 0, "0.00"),
                    Line("seat", "usage", None, 0, "0.00"),
                    # 12 - 10 = 2 late resolutions, still in tier 1: 2 x 1.00
                    Line("resolution", "adjustment", None, 2, "2.00"),
                ],
                total="2.00",
            ),
            # and nothing for January, whose period has not ended
        ],
    )


@pytest.mark.single_warehouse
def test_corrections_of_an_ended_subscription_are_finalized(world: World) -> None:
    # The subscription ends on Dec 1: November is its last period.
    late_after_finalization(world, Sub("c12", "basic", start="2026-11-01", end="2026-12-01"))
    # The December cycle, which carries the correction, ended on Jan 1; + 72 h.
    world.close(utc("2027-01-04 00:00"))
    check(
        world,
        [
            Invoice(
                "c12",
                "2026-11-01",
                [
                    Line("resolution", "usage", None, 10, "10.00"),
                    Line("seat", "usage", None, 0, "0.00"),
                ],
                "10.00",
            ),
            Invoice(
                "c12",
                "2026-12-01",
                # 2 late resolutions x 1.00, finalized so that they are billed
                lines=[Line("resolution", "adjustment", None, 2, "2.00")],
                total="2.00",
                status="finalized",
            ),
        ],
    )
