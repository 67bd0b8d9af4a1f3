"""`meterline credits ...` end to end on a SQLite ledger (the ledger rules themselves:
tests/billing/test_credits_ledger.py): load all or nothing, grant, list, balance, void,
and one error line with the README's exit code for each refusal."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from meterline.cli import main
from meterline.cli.exits import ExitCode
from meterline.settings import settings
from tests.billing.factories import write_customers

GRANTS = """\
- grant_id: commit_2026
  customer_id: cus_00001
  kind: paid_commit
  currency: USD
  units: 10000
  meter: fin_resolution
  price_paid: "8500"
  effective_from: 2026-01-01
  expires_at: 2027-01-01
  reason: annual commitment, order 42
- grant_id: welcome
  customer_id: cus_00001
  kind: promotional
  currency: USD
  amount: "50.00"
  priority: 10
  effective_from: 2026-01-01
  applies_to: meters:fin_resolution
  reason: welcome credit
"""


def write_grants(path: Path, text: str = GRANTS) -> Path:
    path.write_text(text)
    return path


def invoke(args: list[str]) -> tuple[int, str]:
    settings.cache_clear()
    result = CliRunner().invoke(main, args)
    settings.cache_clear()
    return result.exit_code, result.output


def one_error(output: str) -> str:
    errors = [ln for ln in output.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("METERLINE_"):
            monkeypatch.delenv(name)
    for args in (
        ["ledger", "migrate"],
        ["catalog", "load"],
        ["customers", "load", str(write_customers(tmp_path / "customers.jsonl"))],
    ):
        code, output = invoke(args)
        assert code == 0, output
    yield tmp_path


def test_load_list_balance_void(ledger: Path) -> None:
    path = write_grants(ledger / "grants.yaml")
    assert invoke(["credits", "load", str(path)]) == (
        0,
        f"{path}: 2 grant(s): 2 created, 0 already in the ledger as given\n",
    )
    # Loading the same file again changes nothing.
    assert "0 created, 2 already" in invoke(["credits", "load", str(path)])[1]
    code, output = invoke(["credits", "list", "--json"])
    grants = {g["grant_id"]: g for g in json.loads(output)["grants"]}
    assert code == 0 and set(grants) == {"commit_2026", "welcome"}
    assert (grants["commit_2026"]["unit"], grants["commit_2026"]["remaining"]) == (
        "fin_resolution",
        "10000",
    )
    assert grants["commit_2026"]["effective_from"] == "2026-01-01T05:00:00Z"  # New York
    assert grants["welcome"]["applies_to_ids"] == ["fin_resolution"]
    code, output = invoke(["credits", "balance", "--customer", "cus_00001"])
    assert code == 0 and "remaining USD 50.00" in output, output
    assert "remaining 10,000 fin_resolution" in output, output
    code, output = invoke(
        ["credits", "void", "welcome", "--as-of", "2026-03-01", "--reason", "sold by mistake"]
    )
    assert (code, output) == (
        0,
        "grant welcome voided: USD 50.00 returned, USD 0.00 consumed stays paid\n",
    )
    code, output = invoke(["credits", "balance", "--customer", "cus_00001", "--json"])
    welcome = next(g for g in json.loads(output)["grants"] if g["grant_id"] == "welcome")
    assert (welcome["remaining"], welcome["voided"], welcome["void_reason"]) == (
        "0.00",
        "50.00",
        "sold by mistake",
    )
    # Balances as of before the void still hold it.
    code, output = invoke(
        ["credits", "balance", "--customer", "cus_00001", "--as-of", "2026-02-01", "--json"]
    )
    welcome = next(g for g in json.loads(output)["grants"] if g["grant_id"] == "welcome")
    assert welcome["remaining"] == "50.00"


def test_grant_one_by_the_command(ledger: Path) -> None:
    args = [
        "credits",
        "grant",
        "--grant-id",
        "promo",
        "--customer",
        "cus_00001",
        "--kind",
        "promotional",
        "--currency",
        "USD",
        "--amount",
        "25",
        "--effective-from",
        "2026-11-01T00:00:00Z",
        "--expires-at",
        "2026-12-01",
        "--reason",
        "apology",
        "--json",
    ]
    code, output = invoke(args)
    stored = json.loads(output)
    assert code == 0 and stored["granted"] == "25.00"
    assert stored["expires_at"] == "2026-12-01T05:00:00Z"
    assert invoke(args)[0] == 0  # the same grant again: no change
    code, output = invoke([*args[:-3], "--reason", "apology", "--priority", "3"])
    assert code == ExitCode.REFUSED
    assert "grant promo is in the ledger with other terms (priority)" in output


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            GRANTS.replace("currency: USD\n  units", "currency: EUR\n  units"),
            ["line 1: currency: customer cus_00001 is billed in USD"],
        ),
        (
            GRANTS.replace("meters:fin_resolution", "prices:fin_resolutoin"),
            ["line 11: applies_to: unknown price 'fin_resolutoin'"],
        ),
        (
            GRANTS.replace("kind: promotional", "kind: promo").replace(
                'price_paid: "8500"', "price_paid: 8500.555"
            ),
            ["line 11: kind: must be paid_commit or promotional", "line 1: price_paid"],
        ),
        (GRANTS.replace("units: 10000", "amount: 10000"), ["line 1: meter: a grant of money"]),
        ("- {grant_id: x}\n", ["line 1: customer_id: Field required"]),
        ("grant_id,customer_idd\n", ["line 1: header: unknown column 'customer_idd'"]),
    ],
    ids=["currency", "price", "kind", "meter", "missing", "csv_header"],
)
def test_a_bad_file_is_refused_whole_with_line_and_field(
    ledger: Path, text: str, fragments: list[str]
) -> None:
    name = "grants.csv" if text.startswith("grant_id,") else "grants.yaml"
    code, output = invoke(["credits", "load", str(write_grants(ledger / name, text))])
    assert code == ExitCode.REFUSED, output
    assert "nothing was loaded" in one_error(output)
    for fragment in fragments:
        assert fragment in output, output
    assert json.loads(invoke(["credits", "list", "--json"])[1]) == {"grants": []}


@pytest.mark.parametrize(
    ("args", "expected", "fragment"),
    [
        (["credits", "balance", "--customer", "nobody"], 3, "no customer 'nobody'"),
        (["credits", "list", "--customer", "nobody"], 3, "no customer 'nobody'"),
        (["credits", "void", "nope", "--as-of", "2026-03-01", "--reason", "r"], 3, "'nope'"),
        (["credits", "void", "nope", "--as-of", "2026-03-01"], 2, "--reason"),
        (["credits", "grant", "--grant-id", "x"], 2, "--customer"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_refusals_are_one_line_with_the_readme_exit_code(
    ledger: Path, args: list[str], expected: int, fragment: str
) -> None:
    code, output = invoke(args)
    assert code == expected, output
    assert fragment in one_error(output)


ROLLING = """\
- grant_id: commit_2026
  customer_id: cus_00001
  kind: paid_commit
  currency: USD
  units: 10000
  meter: fin_resolution
  price_paid: "8500"
  effective_from: 2026-01-01
  expires_at: 2027-01-01
  rollover: true
  reason: annual commitment, order 42
"""


def test_a_rollover_shows_in_void_list_and_balance(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A void past the term's end rolls the rest over first (docs/credits.md, "Rollover"):
    list and balance show what rolled over and the link between the two terms' grants."""
    monkeypatch.setenv("COLUMNS", "200")
    path = write_grants(ledger / "grants.yaml", ROLLING)
    assert invoke(["credits", "load", str(path)])[0] == 0
    code, output = invoke(
        ["credits", "void", "commit_2026", "--as-of", "2027-01-02", "--reason", "ended"]
    )
    assert (code, output) == (
        0,
        "grant commit_2026 voided: 0 fin_resolution returned, 0 fin_resolution consumed"
        " stays paid, 10,000 fin_resolution rolled over to commit_2026:rollover at"
        " 2027-01-01T05:00:00Z\n",
    )
    code, output = invoke(["credits", "list", "--json"])
    grants = {g["grant_id"]: g for g in json.loads(output)["grants"]}
    parent, child = grants["commit_2026"], grants["commit_2026:rollover"]
    assert (parent["rolled_over"], parent["remaining"], parent["rolled_over_to"]) == (
        "10000",
        "0",
        "commit_2026:rollover",
    )
    assert (child["rolled_over_from"], child["rolled_over_to"], child["remaining"]) == (
        "commit_2026",
        None,
        "10000",
    )
    assert (child["price_paid"], child["rollover"], child["created_by"]) == (
        "8500.00",
        False,
        "meterline",
    )
    assert (child["effective_from"], child["expires_at"]) == (
        "2027-01-01T05:00:00Z",
        "2028-01-01T05:00:00Z",
    )
    code, output = invoke(["credits", "balance", "--customer", "cus_00001"])
    assert code == 0 and "rolled over" in output, output
    assert "remaining 10,000 fin_resolution" in output  # the parent is void: not counted
    # The link is under each grant's id (the table folds its cells to fit).
    words = "".join(output.split())
    assert "rolledovertocommit_2026:rollover" in words, output
    assert "rolledoverfromcommit_2026" in words, output
    code, output = invoke(["credits", "balance", "--customer", "cus_00001", "--json"])
    shown = {g["grant_id"]: g["rolled_over"] for g in json.loads(output)["grants"]}
    assert shown == {"commit_2026": "10000", "commit_2026:rollover": "0"}


def test_list_and_balance_show_every_term_and_account_in_text(
    ledger: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text of list and balance shows what --json has: each grant's kind, rollover,
    price paid, reason and who granted it under its id, and all six accounts of the
    identity (docs/credits.md) including voided; money through the one money formatter
    (grouped digits), as `credits grant` and `credits void` say it."""
    monkeypatch.setenv("COLUMNS", "200")
    assert invoke(["credits", "load", str(write_grants(ledger / "grants.yaml"))])[0] == 0
    code, output = invoke(
        [
            *("credits", "grant", "--grant-id", "big", "--customer", "cus_00001"),
            *("--kind", "paid_commit", "--currency", "USD", "--amount", "5000"),
            *("--price-paid", "4500", "--rollover", "--effective-from", "2026-01-01"),
            *("--expires-at", "2027-01-01", "--reason", "annual deal", "--by", "ana"),
        ]
    )
    assert (code, output) == (0, "grant big: USD 5,000.00 for cus_00001, remaining USD 5,000.00\n")
    code, output = invoke(
        [*("credits", "void", "welcome", "--as-of", "2026-03-01"), "--reason=mistake", "--by=sam"]
    )
    assert output == "grant welcome voided: USD 50.00 returned, USD 0.00 consumed stays paid\n"
    for args in (["credits", "list"], ["credits", "balance", "--customer", "cus_00001"]):
        code, output = invoke(args)
        assert code == 0, output
        lines = [ln.rstrip() for ln in output.splitlines()]
        header = next(ln for ln in lines if ln.startswith("grant "))
        assert header.split() == [
            *("grant", "granted", "consumed", "expired", "voided", "rolled", "over"),
            "remaining",
        ], output
        row = {ln.split()[0]: ln.split()[1:] for ln in lines if ln[:1].strip()}
        # granted, consumed, expired, voided, rolled over, remaining
        assert row["big"] == ["5,000.00", "0.00", "0.00", "0.00", "0.00", "5,000.00"], output
        assert row["welcome"] == ["(void)", "50.00", "0.00", "0.00", "50.00", "0.00", "0.00"]
        assert row["commit_2026"][-1] == "10,000", output
        big = lines[lines.index(next(ln for ln in lines if ln.startswith("big "))) :]
        terms = [ln.strip() for ln in big[1:8]]
        assert terms[:5] == [
            "paid_commit in USD",
            "rollover yes",
            "price paid USD 4,500.00",
            "reason: annual deal",
            "by ana",
        ], output
        assert "price paid USD 8,500.00" in output and "voided" in output, output
        assert any(ln.strip().endswith(" by sam: mistake") for ln in lines), output
    code, output = invoke(["credits", "balance", "--customer", "cus_00001"])
    assert output.splitlines()[-2:] == ["remaining USD 5,000.00", "remaining 10,000 fin_resolution"]
