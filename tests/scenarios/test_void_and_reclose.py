"""Voiding a finalized invoice whose late usage another finalized invoice billed, then
closing again: the period is billed exactly its re-rated amount, once (docs/ledger.md,
"Voiding"; prices: tests/scenarios/catalog.yaml)."""

from __future__ import annotations

from decimal import Decimal

from click.testing import CliRunner

from meterline.audit.reconcile import reconcile_period
from meterline.cli import main
from meterline.jobs.ledger import void_invoice
from meterline.settings import settings
from tests.scenarios.harness import Invoice, Line, Sub, World, check, day, event, resolutions, utc

# November: 1 seat (30.00) + 98 resolutions in tier 1 (98.00), finalized Dec 4; 5 more
# delivered Dec 5: 103 = 100 x 1.00 + 3 x 0.50 = 101.50, + 3.50 on December's invoice.
NOVEMBER_RERATED = Decimal("131.50")


def billed_for(world: World, period_start: str) -> Decimal:
    """What the customer is billed for the period, over every live invoice."""
    return sum(
        (
            Decimal(ln["amount"])
            for inv in world.invoices()
            if inv["status"] != "void"
            for ln in inv["lines"]
            if ln["service_period_start"].startswith(period_start)
        ),
        Decimal(0),
    )


def void_cli(world: World, invoice_id: int, as_of: str) -> tuple[int, str]:
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            ["invoices", "void", str(invoice_id), "--as-of", as_of],
            env={"METERLINE_LEDGER_URL": world.config.ledger_url},
        )
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_void_and_reclose_bills_the_period_its_re_rated_amount(ledger_world: World) -> None:
    world = ledger_world
    world.load_customers([Sub("cv", "basic", start="2026-11-01")])
    world.deliver(
        [
            event("cv-s", "cv", "seats", "2026-11-01 00:00", value=1),
            *resolutions("cv", "cv-r", 98, "2026-11-20 08:00", channel="chat"),
            *resolutions(
                "cv",
                "cv-late",
                5,
                "2026-11-20 22:00",
                ingested_at="2026-12-05 00:30",
                channel="chat",
            ),
            *resolutions("cv", "cv-dec", 10, "2026-12-10 09:00", channel="chat"),
        ]
    )
    world.nightly(day("2026-11-01"), day("2026-11-20"))
    world.close(utc("2026-12-04 00:00"))
    world.nightly(day("2026-12-04"), day("2026-12-10"))
    assert world.close(utc("2026-12-05 00:00")).adjustment_lines == 1
    world.close(utc("2027-01-04 00:00"))  # December, carrying November's + 3.50
    november = [i for i in world.invoices() if i["period_start_local"] == "2026-11-01"]
    (nov_id,) = [i["id"] for i in november]
    assert billed_for(world, "2026-11-01") == NOVEMBER_RERATED

    # A time before November was finalized (Dec 4) is refused: one line, exit 2.
    code, output = void_cli(world, nov_id, "2026-12-03T23:59:59Z")
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith("meterline: error: invoice") and "finalized at 2026-12-04" in line

    assert void_invoice(nov_id, as_of=utc("2027-01-05 00:00"), config=world.config) == nov_id
    # Billed for November now: December's 3.50, reversed on November's new draft.
    assert billed_for(world, "2026-11-01") == 0

    report = world.close(utc("2027-01-06 00:00"))
    assert report.ok and report.periods_closed == 1
    assert billed_for(world, "2026-11-01") == NOVEMBER_RERATED
    check(
        world,
        [
            Invoice(
                "cv",
                "2026-11-01",
                lines=[
                    Line("seat", "usage", None, 1, "30.00"),
                    Line("resolution", "usage", None, 103, "101.50"),
                    # December billed 3.50 of it already
                    Line("resolution", "adjustment", None, -5, "-3.50"),
                ],
                total="128.00",
            ),
            Invoice(
                "cv",
                "2026-12-01",
                lines=[
                    Line("seat", "usage", None, 1, "30.00"),
                    Line("resolution", "usage", None, 10, "10.00"),
                    Line("resolution", "adjustment", None, 5, "3.50"),
                ],
                total="43.50",
            ),
        ],
        exact=False,
    )
    (new,) = [
        i
        for i in world.invoices()
        if i["period_start_local"] == "2026-11-01" and i["status"] != "void"
    ]
    assert new["reissue_of"] == nov_id
    for month in ("2026-11", "2026-12"):
        rec = reconcile_period(month, config=world.config)
        assert rec.ok and rec.findings == [], rec.summary()
    # Nothing more to correct, nothing late: the next close changes nothing.
    again = world.close(utc("2027-01-07 00:00"))
    assert (again.lines_created, again.adjustment_lines) == (0, 0)
    assert billed_for(world, "2026-11-01") == NOVEMBER_RERATED
