"""Proration of fixed fees, end to end: partial first and last periods, two of them
across a DST change, on both ledger databases (SQLite, and PostgreSQL when
METERLINE_TEST_POSTGRES_URL is set). Prices: tests/scenarios/proration_catalog.yaml.

The rule (docs/rating.md, "Proration of fixed fees"): a fixed fee (platform_fee, a flat
price; licence, per licence held on a `latest` meter) bills, for a partial period, its
amount for the whole anchor cycle times the share of the cycle's elapsed time the period
covers (hours here: whole-hour zones), kept to 12 decimals and rounded once, half-up.
support_fee says `proration: full`. Seats are time-weighted, already divided by the
whole cycle, so never prorated again; resolutions are usage, never prorated. Every
expected number is worked out by hand in the comment above it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterline.audit.explain import explain_line
from meterline.cli.audit.text import render_explain
from meterline.output import jsonable
from tests.scenarios.harness import (
    Invoice,
    Line,
    Scenario,
    Sub,
    World,
    check,
    day,
    event,
    resolutions,
    utc,
)
from tests.scenarios.ledgers import load

pytestmark = pytest.mark.single_warehouse

CATALOG = Path(__file__).with_name("proration_catalog.yaml")

ISSUE_CASE = Scenario(
    name="issue 16: a JPY flat fee for a six-day subscription",
    # Asia/Tokyo (no DST): 2026-03-01 00:00 JST = Feb 28 15:00 UTC, the end 2026-03-07
    # 00:00 JST = Mar 6 15:00 UTC: 144 h of March's 744 h (6 of 31 days).
    customers=[
        Sub(
            "c_jpy",
            "fixed",
            start="2026-03-01",
            end="2026-03-07",
            currency="JPY",
            timezone="Asia/Tokyo",
        )
    ],
    events=[],
    rollup_days=[],
    as_of=utc("2026-03-10 00:00"),  # the end + the 72 h grace
    expected=[
        Invoice(
            "c_jpy",
            "2026-03-01",
            lines=[
                # 10,000 x 144/744 = 1,935.483870967742 -> JPY 1,935, not 10,000
                Line("platform_fee", "flat", None, 1, "1935"),
                # proration: full
                Line("support_fee", "flat", None, 1, "3000"),
                # no licence, seat or resolution: lines of 0
                Line("licence", "usage", None, 0, "0"),
                Line("seat", "usage", None, 0, "0"),
                Line("resolution", "usage", None, 0, "0"),
            ],
            total="4935",
            utc_period=("2026-02-28 15:00", "2026-03-06 15:00"),
        )
    ],
)

NEW_YORK_FIRST = Scenario(
    name="a first period in America/New_York across the spring DST change",
    # Starts 2026-03-05; clocks go forward on Mar 8. Period: Mar 5 00:00 EST (05:00 UTC)
    # to Apr 1 00:00 EDT (04:00 UTC) = 647 h. Cycle: Mar 1 05:00 UTC to Apr 1 04:00 UTC
    # = 743 h. (By calendar days the share would be 27/31.)
    customers=[Sub("c_ny", "fixed", start="2026-03-05", timezone="America/New_York")],
    events=[
        event("ny-lic", "c_ny", "licences", "2026-03-05 05:00", value=3),
        event("ny-seat", "c_ny", "seats", "2026-03-05 05:00", value=2),
        *resolutions("c_ny", "ny-r", 10, "2026-03-10 12:00"),
    ],
    rollup_days=[day("2026-03-05"), day("2026-03-10")],
    as_of=utc("2026-04-04 12:00"),
    expected=[
        Invoice(
            "c_ny",
            "2026-03-05",
            lines=[
                # 100 x 647/743 = 87.079407806191 -> 87.08 (27/31 of 100 would be 87.10)
                Line("platform_fee", "flat", None, 1, "87.08"),
                Line("support_fee", "flat", None, 1, "30.00"),
                # 3 licences x 20 = 60 a cycle; 60 x 647/743 = 52.247644683715 -> 52.25
                Line("licence", "usage", None, 3, "52.25"),
                # 2 seats x 647 h / 743 h = 1.741588156 (9 places); x 30 = 52.24764468
                # -> 52.25: prorated once, by the quantity (twice would be 45.50)
                Line("seat", "usage", None, "1.741588156", "52.25"),
                # usage: 10 x 1.00, whatever the period's length
                Line("resolution", "usage", None, 10, "10.00"),
            ],
            total="231.58",
            utc_period=("2026-03-05 05:00", "2026-04-01 04:00"),
        )
    ],
)

BERLIN_LAST = Scenario(
    name="a last period in Europe/Berlin across the autumn DST change",
    # Runs 2026-09-01 to 2026-10-28; clocks go back on Oct 25. September is a whole
    # cycle (Aug 31 22:00 UTC to Sep 30 22:00 UTC, 720 h), billed in full. October's last
    # period: Oct 1 00:00 CEST (Sep 30 22:00 UTC) to Oct 28 00:00 CET (Oct 27 23:00 UTC)
    # = 649 h of the cycle's 745 h (to Nov 1 00:00 CET = Oct 31 23:00 UTC).
    customers=[
        Sub(
            "c_ber",
            "fixed",
            start="2026-09-01",
            end="2026-10-28",
            currency="EUR",
            timezone="Europe/Berlin",
        )
    ],
    events=[
        event("ber-lic", "c_ber", "licences", "2026-08-31 22:00", value=3),
        event("ber-seat", "c_ber", "seats", "2026-08-31 22:00", value=2),
    ],
    rollup_days=[day("2026-08-31")],
    as_of=utc("2026-10-31 00:00"),  # October's end (Oct 27 23:00 UTC) + 72 h has passed
    expected=[
        Invoice(
            "c_ber",
            "2026-09-01",
            lines=[
                Line("platform_fee", "flat", None, 1, "100.00"),
                Line("support_fee", "flat", None, 1, "30.00"),
                Line("licence", "usage", None, 3, "60.00"),
                Line("seat", "usage", None, 2, "60.00"),
                Line("resolution", "usage", None, 0, "0.00"),
            ],
            total="250.00",
        ),
        Invoice(
            "c_ber",
            "2026-10-01",
            lines=[
                # 100 x 649/745 = 87.114093959732 -> 87.11 (27/31 of 100 would be 87.10)
                Line("platform_fee", "flat", None, 1, "87.11"),
                Line("support_fee", "flat", None, 1, "30.00"),
                # the licences held since August: 60 x 649/745 = 52.268456375839 -> 52.27
                Line("licence", "usage", None, 3, "52.27"),
                # 2 x 649/745 = 1.742281879; x 30 = 52.26845637 -> 52.27
                Line("seat", "usage", None, "1.742281879", "52.27"),
                Line("resolution", "usage", None, 0, "0.00"),
            ],
            total="221.65",
            utc_period=("2026-09-30 22:00", "2026-10-27 23:00"),
        ),
    ],
)

SCENARIOS = [ISSUE_CASE, NEW_YORK_FIRST, BERLIN_LAST]


def _run(world: World, scenario: Scenario) -> None:
    load(world, list(scenario.customers), CATALOG)
    world.deliver(scenario.events)
    world.nightly(*scenario.rollup_days)
    report = world.close(scenario.as_of)
    assert report.periods_closed == len(scenario.expected)
    assert len(report.invoices_finalized) == len(scenario.expected)


@pytest.mark.parametrize(
    "scenario", SCENARIOS, ids=lambda s: s.name.split(":")[0].replace(" ", "_")
)
def test_proration(ledger_world: World, scenario: Scenario) -> None:
    _run(ledger_world, scenario)
    check(ledger_world, scenario.expected)


def test_explain_shows_the_proration_step_and_agrees(ledger_world: World) -> None:
    _run(ledger_world, NEW_YORK_FIRST)
    (invoice,) = ledger_world.invoices()
    lines = {ln["price_id"]: ln for ln in invoice["lines"]}
    fee = explain_line(lines["platform_fee"]["id"], config=ledger_world.config)
    # Re-rated from the raw events with the same rule: a difference of zero.
    assert fee.status == "agrees" and fee.difference.is_exactly_zero
    doc = jsonable(fee)["rating"]
    assert doc["amount"] == "100" and doc["proration"] == {
        "billed_seconds": 647 * 3600,
        "cycle_seconds": 743 * 3600,
        "share": "0.870794078062",
        "full_amount_precise": "100",
        "amount_precise": "87.079407806191",
        "amount": "87.08",
        "explanation": "prorated for 647 h of the billing cycle's 743 h: 100 × 647/743 ="
        " 87.079407806191 → USD 87.08",
    }
    assert "prorated for 647 h" in lines["platform_fee"]["description"]
    # `meterline audit explain` prints the step under the rating of the whole cycle.
    out = Console(file=io.StringIO(), width=200)
    render_explain(out, fee)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "  prorated for 647 h of the billing cycle's 743 h: 100 × 647/743" in text
    # A time-weighted seat line and a fee billed in full carry no proration step.
    for price_id in ("seat", "support_fee"):
        found = explain_line(lines[price_id]["id"], config=ledger_world.config)
        assert found.status == "agrees"
        assert jsonable(found)["rating"].get("proration") is None
