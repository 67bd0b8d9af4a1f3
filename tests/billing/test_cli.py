"""The ledger CLI (click's CliRunner), against the configured ledger URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import billing
from billing import migrate
from meterline.cli import main
from meterline.settings import settings
from tests.billing.conftest import Ledger
from tests.billing.factories import CATALOG, period_of, standard_charges, write_customers


@pytest.fixture
def configured(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger.url)
    monkeypatch.setenv("METERLINE_CATALOG_PATH", str(CATALOG))
    settings.cache_clear()
    yield ledger
    settings.cache_clear()


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_customers_and_catalog_load(configured: Ledger, tmp_path: Path) -> None:
    # The catalog first: a customers file is checked against its plans and prices.
    cat = run("catalog", "load")
    assert cat.exit_code == 0 and "price versions 33 created" in cat.output
    assert "(nothing changed)" in run("catalog", "load", str(CATALOG)).output
    path = write_customers(tmp_path / "customers.jsonl")
    first = run("customers", "load", str(path))
    assert first.exit_code == 0, first.output
    assert "customers 3 created" in first.output
    again = run("customers", "load", str(path))
    assert "(nothing changed)" in again.output


def test_invalid_customers_file_exits_with_the_line(configured: Ledger, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"customer_id": "c1"}\n')
    result = CliRunner().invoke(main, ["customers", "load", str(path)])
    assert result.exit_code == 2
    assert "line 1: name: Field required" in result.output


@pytest.fixture
def invoiced(configured: Ledger, tmp_path: Path) -> int:
    run("catalog", "load")
    run("customers", "load", str(write_customers(tmp_path / "customers.jsonl")))
    with configured.Session.begin() as session:
        result = billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), standard_charges(session)
        )
    return next(iter(result.invoice_ids.values()))


def test_invoices_list_and_show(invoiced: int) -> None:
    listed = run("invoices", "list", "--period", "2026-03", "--customer", "cus_00001", "--json")
    data = json.loads(listed.output)
    assert [i["id"] for i in data["invoices"]] == [invoiced]
    assert data["totals"] == {"USD": {"invoices": 1, "total": "396.00", "total_minor": 39600}}
    assert (
        json.loads(run("invoices", "list", "--period", "2026-04", "--json").output)["invoices"]
        == []
    )
    text = run("invoices", "list").output
    assert "cus_00001" in text and "USD 396.00" in text and "total USD 396.00" in text

    shown = json.loads(run("invoices", "show", str(invoiced), "--json").output)
    assert shown["total"] == "396.00" and len(shown["lines"]) == 2
    fin = next(line for line in shown["lines"] if line["price_id"] == "fin_resolution")
    assert (fin["quantity"], fin["amount"], fin["tiers"][0]["tier"]) == ("100", "99.00", 1)
    human = run("invoices", "show", str(invoiced)).output
    assert "fin_resolution" in human and "tier 1" in human and "total USD 396.00" in human
    # The version by its effective date (its whole id is in --json and `audit explain`).
    assert fin["price_version"].split("#")[0] in human and fin["price_version"] not in human
    missing = CliRunner().invoke(main, ["invoices", "show", "999"])
    assert missing.exit_code == 3 and "meterline: error: no invoice 999" in missing.output
    bad = CliRunner().invoke(main, ["invoices", "list", "--period", "2026-3"])
    assert bad.exit_code == 2 and "YYYY-MM" in bad.output


def test_finalize_and_void(invoiced: int) -> None:
    early = CliRunner().invoke(
        main, ["invoices", "finalize", str(invoiced), "--as-of", "2026-04-02"]
    )
    assert early.exit_code == 2 and "grace period" in early.output
    naive = CliRunner().invoke(
        main, ["invoices", "finalize", str(invoiced), "--as-of", "2026-04-05T00:00:00"]
    )
    assert naive.exit_code == 2 and "UTC offset" in naive.output
    done = run("invoices", "finalize", "--due", "--as-of", "2026-04-05T00:00:00Z", "--grace", "3d")
    assert done.output.strip() == f"finalized 1 invoice(s): {invoiced}"
    shown = json.loads(run("invoices", "show", str(invoiced), "--json").output)
    assert (shown["status"], shown["finalized_at"]) == ("finalized", "2026-04-05T00:00:00+00:00")
    assert run("invoices", "void", str(invoiced), "--as-of", "2026-04-06").output.strip() == (
        f"invoice {invoiced} is void"
    )
    listed = json.loads(run("invoices", "list", "--status", "void", "--json").output)
    assert [i["id"] for i in listed["invoices"]] == [invoiced] and listed["totals"] == {}


def test_the_ledger_must_be_migrated(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite and PostgreSQL alike: commands check the schema, only `meterline init` or
    `meterline ledger migrate` create it."""
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger_url)
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["invoices", "list"])
        assert result.exit_code == 2 and "run `meterline init`" in result.output
        head = migrate.head()
        current = CliRunner().invoke(main, ["ledger", "current"])
        if ledger_url.startswith("sqlite"):
            # A SQLite file that does not exist is named, never created by a reader.
            assert current.exit_code == 2 and "no ledger database at" in current.output
            assert not Path(ledger_url.removeprefix("sqlite:///")).exists()
        else:
            assert current.output.strip() == f"at none; latest {head}"
        assert f"ledger schema at {head}" in run("ledger", "migrate").output
        assert run("ledger", "current").output.strip() == f"at {head}; latest {head}"
        assert run("invoices", "list").exit_code == 0
    finally:
        settings.cache_clear()


def test_finalize_waits_the_configured_grace_by_default(
    invoiced: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --grace, finalize waits METERLINE_FINALIZE_GRACE_HOURS, as close does."""
    monkeypatch.setenv("METERLINE_FINALIZE_GRACE_HOURS", "12")
    settings.cache_clear()
    done = run("invoices", "finalize", str(invoiced), "--as-of", "2026-04-02T00:00:00Z")
    assert done.output.strip() == f"finalized 1 invoice(s): {invoiced}"
