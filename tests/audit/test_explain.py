"""`meterline audit explain` recomputes lines from the raw events: on a small period whose
every number is worked out by hand below (tiers, seat levels), and on every line of a
generated month, checked against a recomputation written in this test (raw events
counted by their own query, priced from the catalog file)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from billing.money import exponent
from meterline.audit.errors import AuditError
from meterline.audit.explain import Explanation, explain_line, explain_lines
from meterline.audit.explain.report import RatingView
from meterline.output import jsonable
from meters.warehouse.base import Warehouse
from tests.audit.conftest import World
from tests.scenarios.harness import Sub, day, event, resolutions, utc
from tests.scenarios.harness import World as Scenario

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse

D = Decimal


# --- one period, by hand --------------------------------------------------------------


@pytest.fixture
def hand(warehouse: Warehouse, chdb_folder: Path, tmp_path: Path) -> Scenario:
    """Plan basic of tests/scenarios/catalog.yaml (USD): resolutions graduated, 1.00 up to
    100 then 0.50; seats 30.00 each, time-weighted. November 2026, a 30-day cycle (720 h):
    - 70 chat resolutions on 2026-11-03 and 60 email ones on 2026-11-20: 130;
    - 2 seats from 2026-11-01 00:00, 5 from 2026-11-16 00:00 (360 h each)."""
    world = Scenario(warehouse, chdb_folder, tmp_path / "world")
    world.load_customers([Sub("c_hand", "basic", start="2026-11-01")])
    world.deliver(
        [
            *resolutions("c_hand", "chat-", 70, "2026-11-03 09:00", channel="chat"),
            *resolutions("c_hand", "email-", 60, "2026-11-20 09:00", channel="email"),
            event("seats-1", "c_hand", "seats", "2026-11-01 00:00", value=2),
            event("seats-2", "c_hand", "seats", "2026-11-16 00:00", value=5),
        ]
    )
    world.nightly(*(day(d) for d in ("2026-11-01", "2026-11-03", "2026-11-16", "2026-11-20")))
    world.close(utc("2026-12-05 00:00"))
    return world


def line_of(world: Scenario, price_id: str) -> dict[str, Any]:
    (line,) = [ln for inv in world.invoices() for ln in inv["lines"] if ln["price_id"] == price_id]
    return line


def test_a_graduated_line_explained_to_its_tiers(hand: Scenario) -> None:
    found = explain_line(line_of(hand, "resolution")["id"], config=hand.config)
    assert found.status == "agrees"
    # 130 resolutions: tier 1 takes 100 at 1.00 = 100.00, tier 2 the other 30 at 0.50 = 15.00.
    assert (found.line.quantity, found.line.amount_minor) == (D(130), 11_500)
    rating = found.rating
    assert isinstance(rating, RatingView)
    assert (rating.model, rating.billable_quantity) == ("graduated", D(130))
    assert [(e.tier, e.units, e.unit_amount, e.amount) for e in rating.entries] == [
        (1, D(100), D("1.00"), D(100)),
        (2, D(30), D("0.50"), D(15)),
    ]
    assert (rating.amount_precise, rating.amount) == (D(115), D(115))
    # Re-rated from the raw events: the same, to the cent and the unit.
    assert (found.recomputed.quantity, found.recomputed.amount_minor) == (D(130), 11_500)
    assert found.difference.is_exactly_zero and found.net.difference.is_exactly_zero
    # The quantity three ways: the window from raw events and from the rollup, per channel,
    # and the events counted by the meter's rule.
    chain = found.quantity
    assert chain is not None
    (window,) = chain.windows
    assert (window.raw_quantity, window.rollup_quantity) == (D(130), D(130))
    assert [(g.group, g.quantity, g.events) for g in window.groups] == [
        ("channel=chat", D(70), 70),
        ("channel=email", D(60), 60),
    ]
    assert chain.from_events == D(130) and chain.levels == []
    assert (chain.raw_events.events, chain.rollup.events, chain.rollup.rows) == (130, 130, 3)
    assert [(d.day.isoformat(), d.events) for d in chain.rollup.days] == [
        ("2026-11-03", 70),
        ("2026-11-20", 60),
    ]
    assert found.late_events.count == 0 and found.sample_events
    # The text a person reads, and --json under the names it always had.
    doc = jsonable(found)
    assert doc["recomputed"]["amount"] == "115.00" and doc["difference"]["amount_minor"] == 0
    assert doc["rating"]["entries"][1] == {
        "kind": "tier",
        "tier": 2,
        "range_from": "100",
        "range_to": "130",
        "units": "30",
        "unit_amount": "0.5",
        "flat_amount": "0",
        "amount": "15",
    }


def test_a_time_weighted_line_explained_to_its_levels(hand: Scenario) -> None:
    found = explain_line(line_of(hand, "seat")["id"], config=hand.config)
    assert found.status == "agrees"
    # 2 seats x 360 h / 720 h + 5 seats x 360 h / 720 h = 1 + 2.5 = 3.5 seats x 30.00.
    assert (found.line.quantity, found.line.amount_minor) == (D("3.5"), 10_500)
    assert found.invoice.billing_cycle.hours == 720
    chain = found.quantity
    assert chain is not None and chain.aggregation == "time_weighted"
    assert [(lv.value, lv.hours, lv.share_of_cycle, lv.events) for lv in chain.levels] == [
        (D(2), D(360), D(1), ("seats-1",)),
        (D(5), D(360), D("2.5"), ("seats-2",)),
    ]
    assert [lv.start for lv in chain.levels] == [utc("2026-11-01 00:00"), utc("2026-11-16 00:00")]
    assert chain.levels[-1].end == utc("2026-12-01 00:00")
    assert chain.from_events == D("3.5") and found.recomputed.amount_minor == 10_500


# --- every line of a generated month ---------------------------------------------------


def _prices(catalog: Path) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(plan, price, currency) -> the price bodies of its versions, read from the file."""
    doc = yaml.safe_load(catalog.read_text())
    return {
        (plan["id"], price["id"], currency): [v["prices"][currency] for v in price["versions"]]
        for plan in doc["plans"]
        for price in plan["prices"]
        for currency in price["versions"][0]["prices"]
    }


def _by_hand(body: dict[str, Any], quantity: Decimal, exponent: int) -> Decimal:
    """Per-unit (with free units) and graduated prices, rounded half-up to the minor unit."""
    billable = max(quantity - D(str(body.get("free_units", "0"))), D(0))
    if body["model"] == "per_unit":
        amount = billable * D(str(body["unit_amount"]))
    else:
        assert body["model"] == "graduated", body
        amount, lower = D(0), D(0)
        for tier in body["tiers"]:
            upper = D(str(tier["up_to"])) if tier["up_to"] is not None else billable
            amount += max(min(billable, upper) - lower, D(0)) * D(str(tier["unit_amount"]))
            lower = upper
    return amount.quantize(D(1).scaleb(-exponent), rounding=ROUND_HALF_UP)


def _raw_count(month: World, found: Explanation) -> int:
    """The line's events counted straight from usage_events, by this test's own query."""
    start, end = found.line.service_period
    ((n,),) = month.warehouse.query_rows(
        "SELECT count() FROM usage_events FINAL WHERE customer_id = {c:String}"
        " AND meter = {m:String} AND timestamp >= {s:DateTime64(3, 'UTC')}"
        " AND timestamp < {e:DateTime64(3, 'UTC')}",
        {"c": found.invoice.customer, "m": found.line.meter, "s": start, "e": end},
    )
    return int(n)


def test_explain_agrees_on_every_line_of_the_month(month: World) -> None:
    ids = month.line_ids()
    found = explain_lines(ids, config=month.config)
    assert [f.line.id for f in found] == ids
    assert [(f.line.id, f.status, f.notes) for f in found if f.status != "agrees"] == []
    prices = _prices(month.config.catalog_path)
    checked = 0
    for f in found:
        line = f.line
        assert f.difference.is_exactly_zero and f.net.difference.is_zero
        assert f.recomputed.key == line.key
        assert f.recomputed.amount_minor == line.amount_minor
        assert f.late_events.count == 0
        if line.kind != "usage":
            continue
        chain = f.quantity
        assert chain is not None
        # The rollup holds exactly the raw events of the window, and gives the same quantity.
        assert (chain.raw_vs_rollup.events, chain.raw_vs_rollup.value_sum) == (0, 0)
        assert all(w.raw_quantity == w.rollup_quantity for w in chain.windows)
        if chain.raw_events.events:
            assert f.sample_events, line
        if chain.aggregation == "time_weighted":
            assert chain.from_events == line.quantity
            held = sum(lv.share_of_cycle for lv in chain.levels)
            assert abs(held - line.quantity) <= D("1e-9") * len(chain.levels)
        if line.meter != "fin_resolution" or f.price.filter:
            continue
        # Resolutions: counted and priced here, independently of the rating code.
        assert chain.from_events == line.quantity == _raw_count(month, f)
        versions = prices[(f.invoice.plan, line.price_id, line.currency)]
        if len(f.price.windows) == 1 and len(versions) == 1:
            expected = _by_hand(versions[0], line.quantity, exponent(line.currency))
            assert D(line.amount) == expected, (line.id, versions[0], line.quantity)
            checked += 1
    assert checked >= 10, "too few resolution lines priced by hand"

    # The month exercised every kind of line and a price change inside a period.
    kinds = Counter(f.line.kind for f in found)
    assert {"usage", "flat", "discount", "minimum_true_up"} <= set(kinds), kinds
    assert any(f.quantity is not None and len(f.quantity.windows) == 2 for f in found), (
        "no line spans two price versions"
    )
    assert any(f.invoice.period.timezone != "UTC" for f in found)
    seats = [f for f in found if f.line.meter == "seats" and f.line.kind == "usage"]
    assert seats and all(f.quantity and f.quantity.levels for f in seats if f.line.quantity)
    # Seats: each level with the hours it was held, as a share of the billing cycle.
    changed = [f for f in seats if f.quantity and len(f.quantity.levels) > 1]
    assert changed, "no seat count changed during the month"
    for f in changed:
        cycle_ms = f.invoice.billing_cycle.hours * 3_600_000
        for level in f.quantity.levels if f.quantity else ():
            expected = level.value * level.held_ms / cycle_ms
            assert level.share_of_cycle == expected.quantize(D("1e-9"))
            assert level.events
            assert level.end - level.start == timedelta(milliseconds=level.held_ms)


def test_explain_an_unknown_line(month: World) -> None:
    with pytest.raises(AuditError, match="no invoice line 999999"):
        explain_line(999999, config=month.config)
