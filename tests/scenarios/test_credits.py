"""Credit grants in the billing flow, end to end (docs/credits.md; prices:
tests/scenarios/catalog.yaml, plan basic: resolutions graduated, 1.00 for the first 100
of a period, 0.50 above; seats 30.00 time-weighted). Each scenario on both ledger
databases, worked out by hand below; reconcile stays clean on each."""

from __future__ import annotations

import io
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import text as sql

from billing.db import create_ledger_engine
from meterline.audit.explain import explain_line
from meterline.audit.reconcile import reconcile_period
from meterline.audit.statement.render import _environment as statement_environment
from meterline.cli.audit.text import render_explain
from meterline.jobs.credits import balances, grant_one
from meterline.jobs.ledger import void_invoice
from meterline.service.console import page_html as console_page
from tests.scenarios.harness import (
    Invoice,
    Line,
    Sub,
    World,
    check,
    day,
    days,
    event,
    resolutions,
    utc,
)

# The credit rules under test live in the ledger and rating, which run on both ledger
# databases here; the warehouse side of close is the same as in the other scenarios, which
# run on both warehouse backends (as tests/scenarios/test_periods.py): the embedded one
# only, to keep CI inside its hour.
pytestmark = pytest.mark.single_warehouse

ZERO = Decimal(0)


def grant(world: World, **fields: Any) -> None:
    record = {"kind": "promotional", "currency": "USD", "reason": "scenario", **fields}
    if record["kind"] == "paid_commit":
        record.setdefault("price_paid", record.get("amount") or "1")
    grant_one(record, by="tests", config=world.config)


def remaining(world: World, customer: str) -> dict[str, Decimal]:
    return {g["grant_id"]: Decimal(g["remaining"]) for g in balances(customer, config=world.config)}


def accounts(world: World, customer: str) -> dict[str, tuple[Decimal, ...]]:
    """(granted, consumed, expired, voided, remaining) of each grant."""
    return {
        g["grant_id"]: tuple(
            Decimal(g[k]) for k in ("granted", "consumed", "expired", "voided", "remaining")
        )
        for g in balances(customer, config=world.config)
    }


def audit_clean(world: World, *months: str) -> None:
    """Reconcile finds nothing in each month: raw = rollup = rated = posted, and every
    grant's ledger balances (no credit_balance finding)."""
    for month in months:
        rec = reconcile_period(month, config=world.config)
        assert rec.ok and rec.findings == [], rec.summary()


def seat0(*_: str) -> Line:
    return Line("seat", "usage", None, 0, "0.00")


def test_a_commit_drawn_down_over_three_months_with_overage_in_the_third(
    ledger_world: World,
) -> None:
    """USD 250 paid commit from Sep 1. Sep: 80 resolutions = 80.00, all paid (170 left);
    Oct: 90 = 90.00, paid (80 left); Nov: 120 = 100 x 1.00 + 20 x 0.50 = 110.00, the
    commit pays its last 80.00: overage 30.00."""
    world = ledger_world
    world.load_customers([Sub("cc", "basic", start="2026-09-01")])
    grant(
        world,
        grant_id="commit-cc",
        customer_id="cc",
        kind="paid_commit",
        amount="250.00",
        effective_from="2026-09-01",
        expires_at="2027-09-01",
    )
    world.deliver(
        [
            *resolutions("cc", "sep", 80, "2026-09-10 08:00", channel="chat"),
            *resolutions("cc", "oct", 90, "2026-10-10 08:00", channel="chat"),
            *resolutions("cc", "nov", 120, "2026-11-10 08:00", channel="chat"),
        ]
    )
    for month_end, closed in (
        ("2026-09-30", "2026-10-04 00:00"),
        ("2026-10-31", "2026-11-04 00:00"),
        ("2026-11-30", "2026-12-04 00:00"),
    ):
        world.nightly(*days(month_end[:8] + "01", month_end))
        world.close(utc(closed))
    res = "resolution"
    check(
        world,
        [
            Invoice(
                "cc",
                "2026-09-01",
                [
                    seat0("s"),
                    Line(res, "usage", None, 80, "80.00"),
                    Line(res, "credit", None, "80.00", "-80.00"),
                ],
                "0.00",
            ),
            Invoice(
                "cc",
                "2026-10-01",
                [
                    seat0("o"),
                    Line(res, "usage", None, 90, "90.00"),
                    Line(res, "credit", None, "90.00", "-90.00"),
                ],
                "0.00",
            ),
            Invoice(
                "cc",
                "2026-11-01",
                [
                    seat0("n"),
                    Line(res, "usage", None, 120, "110.00"),
                    Line(res, "credit", None, "80.00", "-80.00"),
                ],
                "30.00",
            ),
        ],
    )
    assert accounts(world, "cc") == {
        "commit-cc": (Decimal("250.00"), Decimal("250.00"), ZERO, ZERO, ZERO)
    }
    audit_clean(world, "2026-09", "2026-10", "2026-11")
    (november,) = [i for i in world.invoices() if i["period_start_local"] == "2026-11-01"]
    (credit,) = [ln for ln in november["lines"] if ln["kind"] == "credit"]
    found = explain_line(credit["id"], config=world.config)
    assert found.status == "agrees" and found.difference.is_exactly_zero, found
    out = Console(file=io.StringIO(), width=200)
    render_explain(out, found)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    # What the credit line is: the grant, what it paid of which line, the grant's balance
    # around it, the drawdown's order; the usage it pays is explained under that line.
    (usage,) = [ln for ln in november["lines"] if ln["kind"] == "usage" and ln["price_id"] == res]
    assert found.quantity is None and found.sample_events == [], found
    assert found.credit is not None and found.credit.pays_line_id == usage["id"], found
    paid = f"line {usage['id']}"
    assert f"credit    grant commit-cc (paid_commit) pays USD 80.00 of {paid}\n" in text, text
    assert "balance of grant commit-cc: USD 80.00 before, USD 0.00 after" in text, text
    assert f"1. line {credit['id']}: grant commit-cc (priority 50, expires" in text, text
    assert f"`meterline audit explain {usage['id']}`" in text, text
    assert "recomputed from raw events:" not in text and "sample events" not in text, text
    assert "quantity 80" not in text, text
    # The support console's page of the same explanation says the same (not a quantity).
    page = console_page("explain.html.j2", x=found, cur="USD")
    assert '<dd id="credit-balance">USD 80.00 before, USD 0.00 after</dd>' in page, page
    assert f'href="/console/invoices/{november["id"]}/lines/{usage["id"]}">line {usage["id"]}' in page
    assert "paid from credit grant commit-cc" in page and "recomputed from the events" in page
    # And the internal statement's audit chain of the line.
    chain = statement_chain(credit["id"], found)
    assert f"credit grant <code>commit-cc</code> (paid_commit) pays USD 80.00 of line {usage['id']}" in chain, chain
    assert "80 before, 0 after (USD)" in chain and "Re-rated from the raw events" not in chain, chain


def statement_chain(line_id: int, found: Any) -> str:
    """The statement's audit chain of one line (chain.html.j2), rendered with the
    statement's own template environment."""
    line = SimpleNamespace(
        id=line_id,
        kind="credit",
        price_id="",
        group=None,
        currency="USD",
        amount_minor=found.line.amount_minor,
        chain=found,
    )
    return statement_environment().get_template("chain.html.j2").render(ln=line)


def test_two_grants_by_priority_then_earliest_expiry(ledger_world: World) -> None:
    """November: 150 resolutions = 100 x 1.00 + 50 x 0.50 = 125.00. Grants: B (priority
    10, USD 40, expires 2027-12-01), C (priority 50, USD 30, expires 2026-12-20), A
    (priority 50, USD 50, expires 2027-01-15, the oldest). Order: B (lower priority
    first), then C (same priority as A, earlier expiry), then A. B pays 40.00 (85.00
    left), C 30.00 (55.00), A 50.00 (5.00): overage 5.00."""
    world = ledger_world
    world.load_customers([Sub("cp", "basic", start="2026-11-01")])
    for grant_id, amount, priority, expires in (
        ("A", "50.00", 50, "2027-01-15"),
        ("B", "40.00", 10, "2027-12-01"),
        ("C", "30.00", 50, "2026-12-20"),
    ):
        grant(
            world,
            grant_id=grant_id,
            customer_id="cp",
            amount=amount,
            priority=priority,
            effective_from="2026-11-01",
            expires_at=expires,
        )
    world.deliver(resolutions("cp", "r", 150, "2026-11-10 08:00", channel="chat"))
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    res = "resolution"
    (invoice,) = check(
        world,
        [
            Invoice(
                "cp",
                "2026-11-01",
                [
                    seat0(),
                    Line(res, "usage", None, 150, "125.00"),
                    Line(res, "credit", None, "40.00", "-40.00"),
                    Line(res, "credit", None, "30.00", "-30.00"),
                    Line(res, "credit", None, "50.00", "-50.00"),
                ],
                "5.00",
            )
        ],
    )
    paid = {
        ln["description"].split(" pays")[0]: ln["amount"]
        for ln in invoice["lines"]
        if ln["kind"] == "credit"
    }
    assert paid == {
        "credit grant B": "-40.00",
        "credit grant C": "-30.00",
        "credit grant A": "-50.00",
    }
    assert remaining(world, "cp") == {"A": ZERO, "B": ZERO, "C": ZERO}
    audit_clean(world, "2026-11")


def test_a_grant_expiring_mid_period_pays_nothing_for_it_and_its_rest_expires(
    ledger_world: World,
) -> None:
    """USD 100 from Oct 1, expiring Nov 15. October: 20 resolutions = 20.00, paid (80.00
    left). November: 40 = 40.00; the grant is not in effect at the period's end (Dec 1),
    so it pays nothing: 40.00 billed. The close of December 4 finalizes November, then
    expires the grant: 80.00 of breakage. granted 100 = consumed 20 + expired 80."""
    world = ledger_world
    world.load_customers([Sub("ce", "basic", start="2026-10-01")])
    grant(
        world,
        grant_id="E",
        customer_id="ce",
        amount="100.00",
        effective_from="2026-10-01",
        expires_at="2026-11-15",
    )
    world.deliver(
        [
            *resolutions("ce", "oct", 20, "2026-10-10 08:00", channel="chat"),
            *resolutions("ce", "nov", 40, "2026-11-10 08:00", channel="chat"),
        ]
    )
    world.nightly(*days("2026-10-01", "2026-10-31"))
    world.close(utc("2026-11-04 00:00"))
    assert accounts(world, "ce")["E"] == (Decimal(100), Decimal(20), ZERO, ZERO, Decimal(80))
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    res = "resolution"
    check(
        world,
        [
            Invoice(
                "ce",
                "2026-10-01",
                [
                    seat0(),
                    Line(res, "usage", None, 20, "20.00"),
                    Line(res, "credit", None, "20.00", "-20.00"),
                ],
                "0.00",
            ),
            Invoice("ce", "2026-11-01", [seat0(), Line(res, "usage", None, 40, "40.00")], "40.00"),
        ],
    )
    assert accounts(world, "ce")["E"] == (Decimal(100), Decimal(20), Decimal(80), ZERO, ZERO)
    audit_clean(world, "2026-10", "2026-11")


def test_late_events_after_finalization_draw_on_the_grant_as_it_stood(
    ledger_world: World,
) -> None:
    """USD 100 from Nov 1. November: 60 resolutions = 60.00, paid (40.00 left); finalized
    Dec 4. 30 more November resolutions arrive Dec 5: November is 90 = 90.00. The
    drawdown runs again on the grant as it stood for November (100.00: its own 60.00
    given back) and pays 90.00: the correction on December's invoice is +30.00 of usage
    and -30.00 of credit, linked to the lines they correct; finalizing December consumes
    30.00 more. granted 100 = consumed 90 + remaining 10."""
    world = ledger_world
    world.load_customers([Sub("cl", "basic", start="2026-11-01")])
    grant(world, grant_id="L", customer_id="cl", amount="100.00", effective_from="2026-11-01")
    world.deliver(
        [
            *resolutions("cl", "nov", 60, "2026-11-10 08:00", channel="chat"),
            *resolutions(
                "cl", "late", 30, "2026-11-20 08:00", ingested_at="2026-12-05 00:30", channel="chat"
            ),
        ]
    )
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    assert remaining(world, "cl") == {"L": Decimal(40)}
    world.nightly(day("2026-11-20"), day("2026-12-04"))
    assert world.close(utc("2026-12-05 00:00")).adjustment_lines == 2
    world.nightly(*days("2026-12-05", "2026-12-31"))
    world.close(utc("2027-01-04 00:00"))
    res = "resolution"
    invoices = check(
        world,
        [
            Invoice(
                "cl",
                "2026-11-01",
                [
                    seat0(),
                    Line(res, "usage", None, 60, "60.00"),
                    Line(res, "credit", None, "60.00", "-60.00"),
                ],
                "0.00",
            ),
            Invoice(
                "cl",
                "2026-12-01",
                [
                    seat0(),
                    Line(res, "usage", None, 0, "0.00"),
                    Line(res, "adjustment", None, "30.000000000", "30.00"),
                    Line(res, "adjustment", None, "30.00", "-30.00"),
                ],
                "0.00",
            ),
        ],
    )
    november = {ln["kind"]: ln["id"] for ln in invoices[0]["lines"] if ln["price_id"] == res}
    fixes = {ln["amount"]: ln for ln in invoices[1]["lines"] if ln["kind"] == "adjustment"}
    assert fixes["30.00"]["adjusts_line_id"] == november["usage"]
    assert fixes["-30.00"]["adjusts_line_id"] == november["credit"]
    assert accounts(world, "cl")["L"] == (Decimal(100), Decimal(90), ZERO, ZERO, Decimal(10))
    audit_clean(world, "2026-11", "2026-12")


def test_late_events_move_an_empty_grant_from_one_line_to_another(ledger_world: World) -> None:
    """USD 40 from Nov 1, paying lines in key order: November's 20 resolutions (20.00)
    and then the seat (30.00) with its last 20.00: the grant is empty. 10 more November
    resolutions arrive Dec 5: the drawdown as it stood pays resolutions 30.00 and the seat
    10.00, so December's correction consumes 10.00 more for the resolutions and gives
    10.00 back from the seat. The grant holds nothing until the seat's 10.00 is given back:
    finalizing records the return before the consumption (was BalanceError, and close
    stopped with an internal error). granted 40 = consumed 40."""
    world = ledger_world
    world.load_customers([Sub("cx", "basic", start="2026-11-01")])
    grant(world, grant_id="X", customer_id="cx", amount="40.00", effective_from="2026-11-01")
    world.deliver(
        [
            event("cx-s", "cx", "seats", "2026-11-01 00:00", value=1),
            *resolutions("cx", "nov", 20, "2026-11-10 08:00", channel="chat"),
            *resolutions(
                "cx", "late", 10, "2026-11-20 08:00", ingested_at="2026-12-05 00:30", channel="chat"
            ),
        ]
    )
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    assert remaining(world, "cx") == {"X": ZERO}
    world.nightly(day("2026-11-20"), day("2026-12-04"))
    world.close(utc("2026-12-05 00:00"))
    world.nightly(*days("2026-12-05", "2026-12-31"))
    world.close(utc("2027-01-04 00:00"))
    (_, december) = sorted(
        (i for i in world.invoices() if i["customer"] == "cx"),
        key=lambda i: i["period_start_local"],
    )
    fixes = sorted(
        (ln["price_id"], ln["amount"]) for ln in december["lines"] if ln["kind"] == "adjustment"
    )
    assert fixes == [("resolution", "-10.00"), ("resolution", "10.00"), ("seat", "10.00")]
    assert accounts(world, "cx")["X"] == (Decimal(40), Decimal(40), ZERO, ZERO, ZERO)
    audit_clean(world, "2026-11", "2026-12")


def test_a_void_returns_the_consumption_and_the_reissue_draws_again(ledger_world: World) -> None:
    """USD 50 from Nov 1. November: 30 resolutions = 30.00, paid (20.00 left), finalized.
    Voiding it returns the 30.00 (50.00 left); the next close re-issues November and
    draws 30.00 again (20.00 left): granted 50 = consumed 30 + remaining 20."""
    world = ledger_world
    world.load_customers([Sub("cv", "basic", start="2026-11-01")])
    grant(world, grant_id="V", customer_id="cv", amount="50.00", effective_from="2026-11-01")
    world.deliver(resolutions("cv", "nov", 30, "2026-11-10 08:00", channel="chat"))
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    (first,) = world.invoices()
    void_invoice(first["id"], as_of=utc("2026-12-04 12:00"), config=world.config)
    assert accounts(world, "cv")["V"] == (Decimal(50), ZERO, ZERO, ZERO, Decimal(50))
    world.close(utc("2026-12-05 00:00"))
    live = [i for i in world.invoices() if i["status"] != "void"]
    (reissued,) = live
    assert reissued["status"] == "finalized" and reissued["reissue_of"] == first["id"]
    credits = [ln["amount"] for ln in reissued["lines"] if ln["kind"] == "credit"]
    assert credits == ["-30.00"] and reissued["total"] == "0.00"
    assert accounts(world, "cv")["V"] == (Decimal(50), Decimal(30), ZERO, ZERO, Decimal(20))
    audit_clean(world, "2026-11")


def test_a_promotional_credit_limited_to_one_meter(ledger_world: World) -> None:
    """A promotional USD 100 for meter `seats` only. November: 2 seats all month = 2 x
    30.00 = 60.00, and 50 resolutions = 50.00. The grant pays the seats (60.00; 40.00
    left) and not the resolutions: 50.00 billed."""
    world = ledger_world
    world.load_customers([Sub("cm", "basic", start="2026-11-01")])
    grant(
        world,
        grant_id="P",
        customer_id="cm",
        amount="100.00",
        effective_from="2026-11-01",
        applies_to="meters:seats",
    )
    world.deliver(
        [
            event("cm-s", "cm", "seats", "2026-11-01 00:00", value=2),
            *resolutions("cm", "r", 50, "2026-11-10 08:00", channel="chat"),
        ]
    )
    world.nightly(*days("2026-11-01", "2026-11-30"))
    world.close(utc("2026-12-04 00:00"))
    res = "resolution"
    check(
        world,
        [
            Invoice(
                "cm",
                "2026-11-01",
                [
                    Line("seat", "usage", None, 2, "60.00"),
                    Line("seat", "credit", None, "60.00", "-60.00"),
                    Line(res, "usage", None, 50, "50.00"),
                ],
                "50.00",
            )
        ],
    )
    assert remaining(world, "cm") == {"P": Decimal(40)}
    audit_clean(world, "2026-11")


def test_a_yearly_commit_rolls_its_unused_units_into_the_next_term(ledger_world: World) -> None:
    """A yearly commit of 1,200 resolutions (paid USD 1,000.00), 2026-01-01..2027-01-01 in
    New York, that rolls over. 75 resolutions a month = 75.00 (the first tier, 1.00 each),
    each month paid by 75 units: 900 drawn by December, 300 left at the term's end. The
    close of 2027-01-05 finalizes December, then rolls the 300 over to
    commit-cr:rollover, 2027-01-01..2028-01-01 (local midnights: 05:00Z), paid 1,000.00 x
    300 / 1,200 = 250.00. January 2027: 120 = 100 x 1.00 + 20 x 0.50 = 110.00, all paid by
    120 units (180 left). February: 200 = 100 + 100 x 0.50 = 150.00 at 0.75 a unit; the
    180 left pay 135.00: overage 15.00. The commit: granted 1,200 = consumed 900 + rolled
    over 300; its next term: granted 300 = consumed 300."""
    world = ledger_world
    world.load_customers([Sub("cr", "basic", start="2026-01-01", timezone="America/New_York")])
    grant(
        world,
        grant_id="commit-cr",
        customer_id="cr",
        kind="paid_commit",
        units="1200",
        meter="resolution",
        price_paid="1000.00",
        effective_from="2026-01-01",
        expires_at="2027-01-01",
        rollover=True,
    )
    # Each month's usage on one day; three months come in one delivery (an ingest costs
    # seconds whatever its size; it takes events of the last 45 days), rolled up then. A
    # close bills every period due: the one of 2027-01-05 finalizes December and ends the
    # commit's term (its as_of less the 72 hours of grace: 2027-01-02).
    steps = (
        ("2026-03-02 00:30", ("2026-01-31", "2026-02-14", "2026-03-01"), None),
        ("2026-06-02 00:30", ("2026-04-30", "2026-05-14", "2026-06-01"), "2026-07-05 00:00"),
        ("2026-09-02 00:30", ("2026-07-31", "2026-08-14", "2026-09-01"), None),
        ("2026-12-02 00:30", ("2026-10-31", "2026-11-14", "2026-12-01"), "2027-01-05 00:00"),
        ("2027-02-02 00:30", ("2027-01-31", "2027-02-01"), "2027-03-05 00:00"),
    )
    count = {"2027-01-31": 120, "2027-02-01": 200}
    world.deliver(
        e
        for delivered, on, _ in steps
        for when in on
        for e in resolutions(
            "cr", when, count.get(when, 75), f"{when} 08:00", ingested_at=delivered, channel="chat"
        )
    )
    for delivered, on, closed in steps:
        world.ingest_until(utc(delivered))
        world.rollup(*(day(when) for when in on))
        if closed is not None:
            world.close(utc(closed))
        if closed == "2027-01-05 00:00":
            assert {g["grant_id"] for g in balances("cr", config=world.config)} == {
                "commit-cr",
                "commit-cr:rollover",
            }
    res = "resolution"
    expected = [
        Invoice(
            "cr",
            f"2026-{m:02d}-01",
            [
                seat0(),
                Line(res, "usage", None, 75, "75.00"),
                Line(res, "credit", None, 75, "-75.00"),
            ],
            "0.00",
        )
        for m in range(1, 13)
    ]
    expected += [
        Invoice(
            "cr",
            "2027-01-01",
            [
                seat0(),
                Line(res, "usage", None, 120, "110.00"),
                Line(res, "credit", None, 120, "-110.00"),
            ],
            "0.00",
        ),
        Invoice(
            "cr",
            "2027-02-01",
            [
                seat0(),
                Line(res, "usage", None, 200, "150.00"),
                Line(res, "credit", None, 180, "-135.00"),
            ],
            "15.00",
        ),
    ]
    invoices = check(world, expected)
    paid_by = {
        i["period_start_local"]: {
            ln["description"].split(" pays")[0] for ln in i["lines"] if ln["kind"] == "credit"
        }
        for i in invoices
    }
    assert paid_by["2026-12-01"] == {"credit grant commit-cr"}
    assert paid_by["2027-01-01"] == paid_by["2027-02-01"] == {"credit grant commit-cr:rollover"}

    grants = {g["grant_id"]: g for g in balances("cr", config=world.config)}
    commit, rolled = grants["commit-cr"], grants["commit-cr:rollover"]
    fields = ("granted", "consumed", "expired", "voided", "rolled_over", "remaining")
    assert tuple(Decimal(commit[k]) for k in fields) == (1200, 900, 0, 0, 300, 0)
    assert tuple(Decimal(rolled[k]) for k in fields) == (300, 300, 0, 0, 0, 0)
    assert (commit["rolled_over_to"], rolled["rolled_over_from"]) == (
        "commit-cr:rollover",
        "commit-cr",
    )
    assert (rolled["effective_from"], rolled["expires_at"]) == (
        "2027-01-01T05:00:00Z",
        "2028-01-01T05:00:00Z",
    )
    assert (rolled["kind"], rolled["price_paid"], rolled["rollover"]) == (
        "paid_commit",
        "250.00",
        False,
    )
    # As of the term's last day the commit still held 375 (December's 75 count at the end
    # of the period they paid, the term's end); the next term's grant held nothing yet.
    before = {
        g["grant_id"]: (g["granted"], g["remaining"], g["rolled_over"])
        for g in balances("cr", as_of=utc("2026-12-31 12:00"), config=world.config)
    }
    assert before == {
        "commit-cr": ("1200", "375", "0"),
        "commit-cr:rollover": ("0", "0", "0"),
    }
    audit_clean(world, "2026-12", "2027-01", "2027-02")

    (february,) = [i for i in invoices if i["period_start_local"] == "2027-02-01"]
    (credit,) = [ln for ln in february["lines"] if ln["kind"] == "credit"]
    found = explain_line(credit["id"], config=world.config)
    assert found.status == "agrees" and found.difference.is_exactly_zero, found
    out = Console(file=io.StringIO(), width=200)
    render_explain(out, found)
    text = out.file.getvalue()  # type: ignore[attr-defined]
    (usage,) = [ln for ln in february["lines"] if ln["kind"] == "usage" and ln["price_id"] == res]
    assert "grant commit-cr:rollover (paid_commit) pays " in text, text
    assert " resolution for USD " in text, text  # units of the meter, and what they paid
    assert f" of line {usage['id']}\n" in text, text
    assert f"`meterline audit explain {usage['id']}`" in text, text

    # A program writing around billing.credits: the commit rolled over twice. Reconcile
    # replays its ledger and finds it (the triggers let it in: positive, not below zero).
    engine = create_ledger_engine(world.config.ledger_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sql(
                    "INSERT INTO credit_ledger_entries (grant_id, kind, from_account,"
                    " to_account, amount, available_after, idempotency_key, effective_at,"
                    " note) SELECT id, 'rollover', 'available', 'rolled_over', '300', '0',"
                    " 'tampered', expires_at, 'x' FROM credit_grants"
                    " WHERE grant_id = 'commit-cr'"
                )
            )
    finally:
        engine.dispose()
    report = reconcile_period("2027-01", config=world.config)
    (finding,) = [f for f in report.failures if f.check == "credit_balance"]
    assert "cannot rollover 300: the grant's remaining balance is 0" in finding.detail, finding
