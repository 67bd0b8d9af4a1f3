"""The ledger CLI (click's CliRunner), against the configured ledger URL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
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


def test_a_credit_line_shows_its_grant_and_the_line_it_pays(
    configured: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credit line's amount is money the grant paid, not a quantity of its price: the
    text shows no quantity and no version, names the grant and the line it pays, and the
    totals say the credits apart; --json keeps `discounts` (discounts and credits, as
    before) and adds `credits`, and each credit line's `grant_id` and `pays_line_id`."""
    monkeypatch.setenv("COLUMNS", "120")
    run("catalog", "load")
    run("customers", "load", str(write_customers(tmp_path / "customers.jsonl")))
    for grant_id, amount in (("welcome", ["--amount", "100"]), ("units", ["--units", "5"])):
        made = run(
            *("credits", "grant", "--grant-id", grant_id, "--customer", "cus_00001"),
            *("--kind", "promotional", "--currency", "USD", *amount),
            *("--effective-from", "2026-01-01", "--reason", "test", "--by", "t"),
            *(["--meter", "fin_resolution"] if grant_id == "units" else []),
        )
        assert made.exit_code == 0, made.output
    with configured.Session.begin() as session:
        charges = standard_charges(session, resolutions=2000)
        fin = charges[0]
        for grant_id, units, unit, amount in (
            ("welcome", "100.00", "USD", "-100.00"),
            ("units", "5", "fin_resolution", "-4.95"),
        ):
            charges.append(
                billing.ChargeLine(
                    price_id=fin.price_id,
                    price_version=fin.price_version,
                    kind="credit",
                    quantity=Decimal(units),
                    amount=Decimal(amount),
                    amount_precise=Decimal(amount),
                    currency="USD",
                    meter=fin.meter,
                    grant_id=grant_id,
                    description=f"credit grant {grant_id} pays {amount} USD of fin_resolution",
                    breakdown={
                        "grant_id": grant_id,
                        "pays": "sub_00001|fin_resolution|",
                        "amount": amount,
                        "units": units,
                        "unit": unit,
                    },
                )
            )
        result = billing.post_charges(
            session, "sub_00001", period_of("sub_00001", 2026, 3), charges
        )
    invoice = next(iter(result.invoice_ids.values()))
    shown = json.loads(run("invoices", "show", str(invoice), "--json").output)
    # 2000 x 0.99 + 3 x 99 = 2,277.00; the credits pay 104.95 of it.
    assert (shown["subtotal"], shown["discounts"], shown["credits"], shown["total"]) == (
        "2277.00",
        "-104.95",
        "-104.95",
        "2172.05",
    )
    paid = next(
        ln["id"]
        for ln in shown["lines"]
        if ln["kind"] == "usage" and ln["meter"] == "fin_resolution"
    )
    credits = [ln for ln in shown["lines"] if ln["kind"] == "credit"]
    assert [(c["grant_id"], c["pays_line_id"]) for c in credits] == [
        ("welcome", paid),
        ("units", paid),
    ]
    human = run("invoices", "show", str(invoice)).output
    rows = {ln.split()[0]: ln.split()[1:] for ln in human.splitlines() if ln.strip()[:1].isdigit()}
    welcome, units = (str(c["id"]) for c in credits)
    # kind, what it pays, the amount: no quantity, no version, no unit price.
    assert rows[welcome] == [
        "credit",
        "grant",
        "welcome",
        "pays",
        "line",
        str(paid),
        "USD",
        "-100.00",
    ]
    assert rows[units] == ["credit", "grant", "units", "pays", "line", str(paid), "USD", "-4.95"]
    totals = [
        ln.split()
        for ln in human.splitlines()
        if ln.split()[:1] in (["discounts"], ["credits"], ["total"])
    ]
    assert totals == [
        ["discounts", "USD", "0.00"],
        ["credits", "USD", "-104.95"],
        ["total", "USD", "2,172.05"],
    ], human
    words = " ".join(human.split())
    assert (
        f"{welcome}: credit: grant welcome pays line {paid} (fin_resolution): USD 100.00 paid"
        in words
    ), human
    assert (
        f"{units}: credit: grant units pays line {paid} (fin_resolution): 5 fin_resolution"
        " taken from the grant, USD 4.95 paid" in words
    ), human


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


def test_the_totals_show_the_tax_recorded_pending_or_voided() -> None:
    """`invoices show` (text) shows an invoice's tax through the tax sink (docs/tax.md),
    as --json does under "tax": recorded, the tax and the total with it; pending or
    voided, said so; no tax row, the totals as before."""
    from meterline.cli.ledger import invoice_totals

    detail = {
        "currency": "USD",
        "subtotal": "1367.00",
        "discounts": "0.00",
        "credits": "0.00",
        "adjustments": "0.00",
        "total": "1367.00",
    }
    untaxed = invoice_totals(detail)
    assert untaxed[-1] == "       total USD 1,367.00"
    recorded = {"status": "recorded", "tax": "116.20", "total_with_tax": "1483.20"}
    assert invoice_totals({**detail, "tax": recorded})[-3:] == [
        "         total USD 1,367.00",
        "           tax   USD 116.20",
        "total with tax USD 1,483.20",
    ]
    pending = {"status": "pending", "tax": None, "total_with_tax": None}
    assert invoice_totals({**detail, "tax": pending})[-1] == (
        "         tax pending: not recorded yet (`meterline outbox list --sink avalara`: why)"
    )
    voided = {"status": "voided", "tax": "116.20", "total_with_tax": "1483.20"}
    assert invoice_totals({**detail, "tax": voided})[-1] == (
        "         tax voided with the invoice (was USD 116.20)"
    )


def test_catalog_show_names_each_prices_tax_code(configured: Ledger, tmp_path: Path) -> None:
    head = "      - id: fin_resolution\n        meter: fin_resolution\n"
    text = CATALOG.read_text()
    assert head in text
    taxed = tmp_path / "taxed.yaml"
    taxed.write_text(text.replace(head, head + "        tax_code: SW054000\n"))
    assert run("catalog", "load", str(taxed)).exit_code == 0
    shown = run("catalog", "show").output
    assert "fin_resolution on fin_resolution: EUR, GBP, USD; versions from" in shown
    assert "; tax code SW054000\n" in shown
    assert "seat_advanced on seats [seat_type=advanced]: EUR, GBP, USD; versions from" in shown
    doc = json.loads(run("catalog", "show", "--json").output)
    codes = {entry["price"]: entry["tax_code"] for entry in doc["prices"]}
    assert codes["fin_resolution"] == "SW054000" and codes["seat_advanced"] is None
