"""`meterline subscriptions change|changes` against bad input (docs/rating.md, "Plan
changes"): each fault a tester found kept as a test with the right value. On SQLite and,
with METERLINE_TEST_POSTGRES_URL, PostgreSQL (the ledger_url fixture).

Every refusal is one error line with the README's exit code, never a traceback, and a
refused change leaves the ledger as it was (`subscriptions changes` lists nothing)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing import plan_changes
from meterline.cli.exits import ExitCode
from tests.billing.factories import write_customers
from tests.billing.test_credits_breaker import _customer, one_error
from tests.meterline.test_credits_cli import invoke

CATALOG = """\
rounding_mode: half_up
meters:
  - {name: fin_resolution, aggregation: count, unit: resolution}
plans:
  - id: p1
    name: P1
    prices:
      - id: platform_fee
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: flat, amount: "250"}
  - id: p2
    name: P2
    prices:
      - id: platform_fee
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: flat, amount: "500"}
  - id: p_eur
    name: P EUR
    prices:
      - id: platform_fee
        versions:
          - effective_from: "2026-01-01"
            prices:
              EUR: {model: flat, amount: "400"}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_url: str) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger_url)
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    customer = _customer("cus_usd", "USD", "America/New_York")
    customer["end"] = "2026-06-01"
    for args in (
        ["ledger", "migrate"],
        ["catalog", "load", "catalog.yaml"],
        ["customers", "load", str(write_customers(tmp_path / "customers.jsonl", [customer]))],
    ):
        code, output = invoke(args)
        assert code == 0, output
    yield tmp_path


def change(*extra: str, at: str = "2026-02-10T00:00:00Z", plan: str = "p2") -> tuple[int, str]:
    args = ["subscriptions", "change", "sub_usd", "--at", at, "--plan", plan]
    defaults = {"--tiers": "continue", "--direction": "upgrade", "--by": "ann"}
    for name, value in defaults.items():
        if name not in extra:
            args += [name, value]
    return invoke(args + list(extra))


def recorded() -> list[dict[str, object]]:
    code, output = invoke(["subscriptions", "changes", "sub_usd", "--json"])
    assert code == 0, output
    return list(json.loads(output))


def test_a_by_name_longer_than_the_ledger_keeps_is_refused(cli: Path) -> None:
    """`--by` of 201 characters was stored on SQLite and an internal error (a
    StringDataRightTruncation traceback) on PostgreSQL: the ledger keeps 200."""
    code, output = change("--by", "b" * 201)
    assert code == ExitCode.REFUSED
    assert one_error(output) == (
        "meterline: error: --by: a name has at most 200 characters, not 201: give a shorter one"
    )
    assert recorded() == []
    assert change("--by", "b" * 200)[0] == ExitCode.OK


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"plan": "p1"}, "is on plan p1 then"),
        ({"plan": "nope"}, "plan 'nope' is not in the loaded catalog (its plans: p1, p2, p_eur)"),
        ({"plan": "p_eur"}, "plan p_eur has no price in USD"),
        ({"at": "2025-12-31T00:00:00Z"}, "is not inside subscription sub_usd's active span"),
        ({"at": "2026-01-01T05:00:00Z"}, "is not inside subscription sub_usd's active span"),
        ({"at": "2026-06-01T04:00:00Z"}, "is not inside subscription sub_usd's active span"),
        ({"at": "2026-02-10T00:00:00"}, "has no UTC offset"),
    ],
    ids=[
        "same-plan",
        "unknown-plan",
        "other-currency",
        "before",
        "at-start",
        "at-end",
        "no-offset",
    ],
)
@pytest.mark.parametrize("preview", [False, True], ids=["record", "preview"])
def test_refused_changes_held(
    cli: Path, kwargs: dict[str, str], fragment: str, preview: bool
) -> None:
    """What held: each refused with one line, exit 2, nothing recorded (a preview too)."""
    code, output = change(*(["--preview"] if preview else []), **kwargs)
    assert code == ExitCode.REFUSED and fragment in one_error(output), output
    assert recorded() == []


def test_changes_at_a_periods_start_and_at_the_same_instant(cli: Path) -> None:
    """What held: a change at a period's exact start is recorded; a second change at
    the same instant, or before the latest, is refused; a misspelt --tiers is a usage
    error."""
    assert change("--tiers", "continu")[0] == ExitCode.REFUSED
    assert change(at="2026-03-01T05:00:00Z")[0] == ExitCode.OK
    for at in ("2026-03-01T05:00:00Z", "2026-02-01T00:00:00Z"):
        code, output = change(at=at, plan="p1")
        assert code == ExitCode.REFUSED and "already changes plan at" in one_error(output)
    assert [c["at"] for c in recorded()] == ["2026-03-01T05:00:00Z"]


def test_a_change_to_the_plan_in_effect_says_what_to_do(cli: Path) -> None:
    """The refusal said only "subscription sub_usd is on plan p1 then"; it names what
    to do now (another plan, or the list of its changes)."""
    code, output = change(plan="p1")
    assert code == ExitCode.REFUSED
    assert one_error(output) == (
        "meterline: error: subscription sub_usd is on plan p1 then: name another plan, or"
        " see its plans over time with `meterline subscriptions changes sub_usd`"
    )


def test_a_change_recorded_meanwhile_at_the_same_instant_is_a_one_line_conflict(
    cli: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two people changing the plan at the same instant at once: the second's check read
    the changes before the first committed, and its insert hit the unique (subscription,
    at) key, an internal error (exit 5, a traceback written). Simulated with a stale
    view: the first change is recorded, then the second checked as if it were not."""
    assert change()[0] == ExitCode.OK
    with monkeypatch.context() as stale:
        stale.setattr(plan_changes, "changes_of", lambda session, ids: {})
        code, output = change("--by", "bob")
    assert code == ExitCode.UNAVAILABLE, output
    assert one_error(output) == (
        "meterline: error: another plan change of subscription sub_usd at"
        " 2026-02-10T00:00:00Z was recorded while this one was checked; nothing written:"
        " see `meterline subscriptions changes sub_usd`, then pick a later instant if the"
        " change is still wanted"
    )
    assert [(c["at"], c["changed_by"]) for c in recorded()] == [("2026-02-10T00:00:00Z", "ann")]


def test_a_date_is_midnight_in_the_subscriptions_timezone(cli: Path) -> None:
    """`--at 2026-02-10` was midnight UTC (19:00 the day before in New York), while
    `credits grant --effective-from 2026-02-10` is midnight in the subscription's
    timezone: now both read a date the same way (--preview goes through the same
    check: tests/scenarios/test_plan_change.py shows its instant)."""
    code, output = change("--json", at="2026-02-10")
    assert code == ExitCode.OK, output
    assert json.loads(output)["at"] == "2026-02-10T05:00:00Z"  # EST, UTC-5
    # an instant with its offset is itself
    code, output = change("--json", at="2026-03-10T00:00:00Z", plan="p1")
    assert code == ExitCode.OK and json.loads(output)["at"] == "2026-03-10T00:00:00Z"
    # a date outside the calendar or the range, or a time without an offset: refused,
    # naming the subscription's midnight
    code, output = change(at="2026-02-10T00:00")
    assert code == ExitCode.REFUSED
    assert "has no UTC offset" in one_error(output)
    assert "midnight in its timezone" in output and "midnight UTC" not in output
    assert change(at="2026-02-30")[0] == ExitCode.REFUSED
    assert change(at="1999-12-31")[0] == ExitCode.REFUSED


def test_the_help_says_how_a_date_is_read() -> None:
    code, output = invoke(["subscriptions", "change", "--help"])
    assert code == 0 and "midnight in the subscription's timezone" in " ".join(output.split())
