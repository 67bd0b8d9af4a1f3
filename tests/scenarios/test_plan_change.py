"""Plan changes mid-period, end to end, on both ledger databases (SQLite, and PostgreSQL
when METERLINE_TEST_POSTGRES_URL is set): the cases are data
(tests/scenarios/plan_change_cases.yaml, every number worked out by hand there), the
prices tests/scenarios/plan_change_catalog.yaml.

The rules (docs/rating.md, "Plan changes"): usage before the change is rated by the old
plan's prices, after it by the new plan's; fixed fees are prorated across the split;
tiers continue or restart as the change says; the change is recorded with who and when;
`--preview` shows the invoice the close then makes; a change inside a finalized period,
or to a plan without a price in the subscription's currency, is refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from billing.plan_changes import ChangeRequest, PlanChangeRefused
from meterline.audit.explain import explain_line
from meterline.cli import main
from meterline.jobs.plan_change import change, list_changes
from meterline.settings import settings
from tests.scenarios.harness import Invoice, Line, Sub, World, check, day, resolutions, utc
from tests.scenarios.ledgers import load

pytestmark = pytest.mark.single_warehouse

HERE = Path(__file__).parent
CATALOG = HERE / "plan_change_catalog.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load((HERE / "plan_change_cases.yaml").read_text())

SUB = Sub("c_up", "starter", start="2026-04-01")
EVENTS = [
    *resolutions("c_up", "before", 80, "2026-04-10 12:00"),
    *resolutions("c_up", "after", 60, "2026-04-20 12:00"),
]
CHANGE_AT = utc("2026-04-15 00:00")
AS_OF = utc("2026-06-04 00:00")  # May's end + the 72 h grace


def _request(tiers: str, at: str = "2026-04-15 00:00", plan: str = "pro") -> ChangeRequest:
    return ChangeRequest(
        SUB.subscription_id, utc(at), plan, tiers, "upgrade", "ana@ops", "asked for priority"
    )


def _world(world: World) -> World:
    load(world, [SUB], CATALOG)
    world.deliver(EVENTS)
    world.nightly(day("2026-04-10"), day("2026-04-20"))
    return world


def _expected(case: dict[str, Any]) -> list[Invoice]:
    april = [Line(p, kind, None, q, amount) for p, kind, q, amount in case["april"]]
    may = [
        Line("platform_fee", "flat", None, 1, "90.00"),
        Line("priority_support", "flat", None, 1, "60.00"),
        Line("resolution", "usage", None, 0, "0.00"),
    ]
    return [
        Invoice("c_up", "2026-04-01", lines=april, total=case["april_total"]),
        Invoice("c_up", "2026-05-01", lines=may, total="150.00"),
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"].replace(" ", "_"))
def test_plan_change_on_the_15th(ledger_world: World, case: dict[str, Any]) -> None:
    world = _world(ledger_world)
    preview = change(_request(case["tiers"]), preview=True, config=world.config)
    # the preview writes nothing and shows April's invoice as the close will make it
    assert not preview.recorded and preview.error is None
    assert list_changes(SUB.subscription_id, config=world.config) == []
    shown = {ln.price_id: ln.amount for ln in preview.lines}
    assert shown == {p: Decimal(amount) for p, _, _, amount in case["april"]}

    recorded = change(_request(case["tiers"]), config=world.config)
    assert recorded.recorded
    (stored,) = list_changes(SUB.subscription_id, config=world.config)
    assert stored["from_plan"] == "starter" and stored["to_plan"] == "pro"
    assert stored["tiers"] == case["tiers"] and stored["direction"] == "upgrade"
    assert stored["changed_by"] == "ana@ops" and stored["reason"] == "asked for priority"
    assert stored["at"] == "2026-04-15T00:00:00Z" and stored["created_at"]

    report = world.close(AS_OF)
    assert report.periods_closed == 2 and not report.not_billed
    check(world, _expected(case))
    (april, _) = world.invoices()
    resolution = next(ln for ln in april["lines"] if ln["price_id"] == "resolution")
    assert "starter" in resolution["description"] and "pro" in resolution["description"]
    # the audit re-rates the split period from the raw events with the same rule
    for line in april["lines"]:
        explained = explain_line(line["id"], config=world.config)
        assert explained.status == "agrees" and explained.difference.is_exactly_zero


def test_refusals(ledger_world: World) -> None:
    world = _world(ledger_world)
    with pytest.raises(PlanChangeRefused, match="no price in USD"):
        change(_request("continue", plan="euro_only"), config=world.config)
    with pytest.raises(PlanChangeRefused, match="is on plan starter"):
        change(_request("continue", plan="starter"), config=world.config)
    with pytest.raises(PlanChangeRefused, match="not inside"):
        change(_request("continue", at="2026-03-20 00:00"), config=world.config)
    world.close(utc("2026-05-04 00:00"))  # April finalized (on starter)
    with pytest.raises(PlanChangeRefused, match="finalized"):
        change(_request("continue"), config=world.config)
    # at the end of the last finalized period: May is pro's from its first instant
    change(_request("restart", at="2026-05-01 00:00"), config=world.config)
    with pytest.raises(PlanChangeRefused, match="time order"):
        change(_request("continue", at="2026-04-30 00:00", plan="starter"), config=world.config)
    world.close(AS_OF)
    (_, may) = world.invoices()
    assert {ln["price_id"]: ln["amount"] for ln in may["lines"]} == {
        "platform_fee": "90.00",
        "priority_support": "60.00",
        "resolution": "0.00",
    }


def _cli(world: World, args: list[str]) -> tuple[int, str]:
    env = {
        "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
        "METERLINE_LEDGER_URL": world.config.ledger_url,
        "METERLINE_CATALOG_PATH": str(world.config.catalog_path),
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, args, env=env)
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_the_commands(ledger_world: World) -> None:
    world = _world(ledger_world)
    args = ["subscriptions", "change", SUB.subscription_id, "--at", "2026-04-15", "--plan", "pro"]
    args += ["--tiers", "restart", "--direction", "upgrade", "--by", "ana@ops"]
    code, output = _cli(world, [*args, "--preview", "--json"])
    doc = json.loads(output)
    assert code == 0 and not doc["recorded"] and doc["invoice"]["total"] == "222.00"
    code, output = _cli(world, [*args, "--preview"])
    assert code == 0 and output.startswith("preview (nothing written) of sub_c_up")
    # the README's output rules, as `invoices show`: quantities without trailing zeros
    # (it printed 140.000000000), money with its currency (total 222.00), versions by
    # their date (descriptions held the version's hash)
    shown = [line.rstrip() for line in output.splitlines()]
    assert shown[1:9] == [
        "invoice 2026-04-01T00:00:00Z .. 2026-05-01T00:00:00Z",
        "price             kind      version  quantity      amount",
        "─" * 57,
        "platform_fee      flat   2026-01-01         1   USD 62.00",
        "priority_support  flat   2026-01-01         1   USD 32.00",
        "resolution        usage  2026-01-01       140  USD 128.00",
        "total USD 222.00",
        "how each line was computed:",
    ]
    assert "  resolution: plan change: starter: quantity 80, graduated: tier 1: 80 × 1.00" in output
    assert ".000" not in output and "#" not in output
    assert _cli(world, ["subscriptions", "changes", SUB.subscription_id, "--json"]) == (0, "[]\n")
    code, output = _cli(world, [*args[:6], "euro_only", *args[7:]])
    assert code == 2 and len(output.strip().splitlines()) == 1 and "no price in USD" in output
    code, output = _cli(world, [*args, "--reason", "asked for priority"])
    assert (code, output) == (
        0,
        "recorded sub_c_up: starter -> pro at 2026-04-15T00:00:00Z (upgrade, tiers restart,"
        " by ana@ops)\n",
    )
    code, output = _cli(world, ["subscriptions", "changes", SUB.subscription_id])
    assert code == 0 and "priority" in output and "restart" in output and "ana@ops" in output
    # usage of the split period: the period's quantity (80 on starter + 60 on pro), each
    # plan's part with its own, and the resolution line as close rates it (80 x 1.00 on
    # starter's ladder, pro's restarted at the change: 60 x 0.80)
    code, output = _cli(world, ["usage", "c_up", "--as-of", "2026-04-25T00:00:00Z", "--json"])
    (usage,) = json.loads(output)["subscriptions"]
    assert code == 0 and usage["plan"] == "pro" and usage["error"] is None
    assert [(m["meter"], Decimal(m["quantity"]), m["events"]) for m in usage["meters"]] == [
        ("resolution", 140, 140)
    ]
    assert [
        (s["plan"], s["start"], s["end"], [Decimal(m["quantity"]) for m in s["meters"]])
        for s in usage["segments"]
    ] == [
        ("starter", "2026-04-01T00:00:00+00:00", "2026-04-15T00:00:00+00:00", [80]),
        ("pro", "2026-04-15T00:00:00+00:00", "2026-04-25T00:00:00+00:00", [60]),
    ]
    resolution = next(p for p in usage["prices"] if p["price_id"] == "resolution")
    assert (Decimal(resolution["quantity"]), resolution["amount"]) == (140, "128.00")
    code, output = _cli(world, ["usage", "c_up", "--as-of", "2026-04-25T00:00:00Z"])
    assert code == 0 and "plan change in this period: starter 2026-04-01T00:00:00Z .." in output
    # the same instant again: refused, one line, exit code 2; an unknown subscription: 3
    code, output = _cli(world, args)
    assert code == 2 and len(output.strip().splitlines()) == 1 and "time order" in output
    code, output = _cli(world, ["subscriptions", "changes", "nope"])
    assert code == 3 and len(output.strip().splitlines()) == 1


def test_a_preview_prints_versions_by_date_and_money_grouped() -> None:
    """A description naming a version prints its date, not its content hash; a large
    total is grouped with its currency (USD 1,350.04)."""
    from meterline.cli.subscriptions import _readable, print_preview

    assert _readable("p@2026-01-01#e31f7e54295a: 22.000000000 × 1.5") == "p@2026-01-01: 22 × 1.5"
    runner = CliRunner()
    line = {
        "price_id": "p",
        "price_version": "2026-01-01#e31f7e54295a",
        "kind": "usage",
        "group": None,
        "quantity": "22.000000000",
        "amount": "1350.04",
        "currency": "USD",
        "description": "",
    }
    doc = {"period_start": "a", "period_end": "b", "currency": "USD", "total": "1350.04"}
    with runner.isolation() as (out, _, _):
        print_preview({**doc, "lines": [line]})
    text = out.getvalue().decode()
    assert "total USD 1,350.04" in text and " 22 " in text and "#" not in text
