"""Credit grants in the billing flow, end to end (docs/credits.md; prices:
tests/scenarios/catalog.yaml, plan basic: resolutions graduated, 1.00 for the first 100
of a period, 0.50 above; seats 30.00 time-weighted). Each scenario on both ledger
databases, worked out by hand below; reconcile stays clean on each."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meterline.jobs.credits import balances, grant_one
from tests.scenarios.harness import Invoice, Line, Sub, World, check, days, resolutions, utc

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


def seat0(period: str) -> Line:
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
