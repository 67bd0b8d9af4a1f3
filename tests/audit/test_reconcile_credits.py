"""Reconcile's credit_balance check (DESIGN.md invariant 9, docs/credits.md): a grant
whose ledger breaks granted = consumed + expired + voided + remaining, or takes an
account below zero, is an error; a grant that balances is nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.credits.store import GrantsFileInvalid
from meterline.audit.facts import GrantFacts
from meterline.audit.reconcile import reconcile_period
from meterline.audit.reconcile.checks import reconcile
from meterline.jobs import credits
from tests.audit.conftest import World
from tests.audit.test_audit_logic import facts

# The audit on chDB only: its month is built once per worker for each backend (60-130 s
# each), and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse

D = Decimal


def grant(*problems: str) -> GrantFacts:
    return GrantFacts("g1", "cus_1", "USD", D(100), D(30), D(0), D(0), D(70), problems)


def test_a_balanced_grant_is_no_finding() -> None:
    report = reconcile(facts(grants=[grant()]))
    assert report.ok and report.findings == []


def test_a_broken_grant_fails_with_every_problem() -> None:
    report = reconcile(facts(grants=[grant("entry 2: a balance went below zero", "granted x")]))
    (finding,) = report.failures
    assert (finding.check, finding.customer, finding.severity) == (
        "credit_balance",
        "cus_1",
        "error",
    )
    assert finding.detail == (
        "credit grant g1 (USD) does not balance: entry 2: a balance went below zero; granted x"
    )
    # The id follows the values: the same broken grant keeps its id, another has another.
    again = reconcile(facts(grants=[grant("entry 2: a balance went below zero", "granted x")]))
    other = reconcile(facts(grants=[grant("entry 3: other")]))
    assert again.failures[0].id == finding.id != other.failures[0].id


def test_a_grant_that_rolled_over_is_no_finding_and_its_finding_names_what_rolled() -> None:
    """granted 100 = consumed 30 + rolled over 70 (docs/credits.md, "Rollover")."""
    rolled = GrantFacts("g1", "cus_1", "USD", D(100), D(30), D(0), D(0), D(0), (), D(70))
    report = reconcile(facts(grants=[rolled]))
    assert report.ok and report.findings == []
    broken = GrantFacts(
        "g1", "cus_1", "USD", D(100), D(30), D(0), D(0), D(0), ("entry 3: x",), D(70)
    )
    (finding,) = reconcile(facts(grants=[broken])).failures
    assert finding.values["rolled_over"] == D(70)
    # A grant that never rolled over keeps its finding's values (and so its id).
    (plain,) = reconcile(facts(grants=[grant("entry 3: x")])).failures
    assert "rolled_over" not in plain.values


def test_reconcile_replays_the_ledger_and_finds_a_tampered_entry(
    copy_of_month: World, tmp_path: Path
) -> None:
    world = copy_of_month
    ((customer, currency),) = world.sql(
        "SELECT external_id, currency FROM customers ORDER BY id LIMIT 1"
    )
    path = tmp_path / "grants.yaml"

    def write(effective_from: str) -> None:
        path.write_text(
            f"- {{grant_id: g1, customer_id: {customer}, kind: promotional, currency: {currency},"
            f" amount: '100', effective_from: '{effective_from}', reason: launch credit}}\n"
        )

    # A grant pays periods not invoiced yet: one dated inside a finalized period is
    # refused (re-rating that period would find a credit its invoice never had: a
    # line_missing error, as this test found when the grant was dated 2026-10-01).
    write("2026-10-01")
    with pytest.raises(GrantsFileInvalid, match="inside a period already invoiced"):
        credits.load_file(path, by="test", config=world.config)
    ((through,),) = world.sql(
        "SELECT max(i.period_end) FROM invoices i JOIN customers c ON c.id = i.customer_id"
        " WHERE c.external_id = ? AND i.status = 'finalized'",
        customer,
    )
    start = str(through).replace(" ", "T")[:19]
    write(start + "Z")
    credits.load_file(path, by="test", config=world.config)
    month = start[:7]  # the month the grant takes effect in: reconcile replays it
    report = reconcile_period(month, customer=customer, config=world.config)
    assert report.ok and not [f for f in report.findings if f.check == "credit_balance"]
    # A program writing around billing.credits: a consumption whose stored balance is
    # not what the entries make (the triggers allow it: positive, not below zero).
    world.sql(
        "INSERT INTO credit_ledger_entries (grant_id, kind, from_account, to_account, amount,"
        " available_after, idempotency_key, effective_at, note) SELECT id, 'consume',"
        " 'available', 'consumed', '30', '100', 'tampered', ?, 'x' FROM credit_grants",
        f"{start[:10]} 12:00:00.000000",
    )
    report = reconcile_period(month, customer=customer, config=world.config)
    (finding,) = [f for f in report.failures if f.check == "credit_balance"]
    assert "stores a remaining balance of 100, the entries before it and its own make 70" in (
        finding.detail
    )
