"""`meterline revrec`, `revrec waterfall` and `journal` against bad input (docs/revrec.md):
each fault a tester found kept as a test with the right value.

Every refusal is one error line with the README's exit code, never a traceback, and
nothing partially written; every identity holds to the minor unit.

The world (`world`, built once): three customers in USD (New York), JPY (Tokyo, 0
decimals) and KWD (Kuwait, 3 decimals), each with a platform fee (USD 100.00, JPY 10,001,
KWD 31.001: amounts that do not divide by a month's days) and resolutions at 0.99 / 99 /
0.305, 10% off. JPY has a paid commitment (10,000 for 7,777, expiring Nov 30); KWD a
promotion (1.001) and a paid commitment (5.000 for 3.333) voided on Nov 15. October: 10
resolutions each on Oct 3 and 17, 2 more of Oct 25 arrive late (Nov 10); November: 5 on
Nov 12. October is closed on Nov 5, JPY's October invoice voided on Nov 6 and re-issued,
November closed on Dec 5.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

import tests.scenarios.harness as harness
from billing.revrec import RevLine, build_schedule
from meterline.cli import main
from meterline.jobs.close import close_periods
from meterline.jobs.credits import grant_one
from meterline.jobs.credits import void as void_grant
from meterline.jobs.journal import journal_of
from meterline.jobs.ledger import void_invoice
from meterline.jobs.revrec import RevrecPeriod, revrec_period
from meterline.settings import SettingsError, load_settings, settings
from tests.conftest import fresh_warehouse
from tests.scenarios.harness import Sub, World, day, event, utc

pytestmark = pytest.mark.single_warehouse

CATALOG = """\
rounding_mode: half_up
meters:
  - {name: resolution, aggregation: count, unit: resolution}
plans:
  - id: p1
    name: P1
    prices:
      - id: platform_fee
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: flat, amount: "100.00"}
              JPY: {model: flat, amount: "10001"}
              KWD: {model: flat, amount: "31.001"}
      - id: resolution
        meter: resolution
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: per_unit, unit_amount: "0.99"}
              JPY: {model: per_unit, unit_amount: "99"}
              KWD: {model: per_unit, unit_amount: "0.305"}
"""
MONTHS = ("2026-10", "2026-11", "2026-12")


def _resolutions(customer: str, tag: str, count: int, first: str, ingested: str) -> list[dict]:
    start = utc(first)
    return [
        event(f"{customer}-{tag}{i}", customer, "resolution", start + timedelta(minutes=i),
              ingested_at=ingested)
        for i in range(count)
    ]  # fmt: skip


def build(world: World) -> None:
    off = ({"price": "resolution", "percent_off": "10", "valid_from": "2026-01-01"},)
    world.load_customers(
        [
            Sub("us", "p1", start="2026-10-01", timezone="America/New_York", discounts=off),
            Sub("jp", "p1", start="2026-10-01", currency="JPY", timezone="Asia/Tokyo", discounts=off),
            Sub("kw", "p1", start="2026-10-01", currency="KWD", timezone="Asia/Kuwait", discounts=off),
        ]
    )  # fmt: skip
    for grant in (
        {"customer_id": "jp", "currency": "JPY", "grant_id": "jp-commit", "kind": "paid_commit",
         "amount": "10000", "price_paid": "7777", "expires_at": "2026-11-30"},
        {"customer_id": "kw", "currency": "KWD", "grant_id": "kw-promo", "kind": "promotional",
         "amount": "1.001", "priority": 10},
        {"customer_id": "kw", "currency": "KWD", "grant_id": "kw-commit", "kind": "paid_commit",
         "amount": "5.000", "price_paid": "3.333", "expires_at": "2026-12-31"},
    ):  # fmt: skip
        grant_one(
            {"effective_from": "2026-10-01", "reason": "test", **grant},
            by="tests",
            config=world.config,
        )
    for c in ("us", "jp", "kw"):
        world.deliver(
            [
                *_resolutions(c, "a", 10, "2026-10-03 12:00", "2026-11-01 00:30"),
                *_resolutions(c, "b", 10, "2026-10-17 12:00", "2026-11-01 00:30"),
                *_resolutions(c, "late", 2, "2026-10-25 12:00", "2026-11-10 12:00"),
                *_resolutions(c, "n", 5, "2026-11-12 12:00", "2026-12-01 00:30"),
            ]
        )
    world.nightly(day("2026-10-31"))
    world.close(utc("2026-11-05 00:00"))
    jp = next(i["id"] for i in world.invoices() if i["customer"] == "jp")
    void_invoice(jp, as_of=utc("2026-11-06 00:00"), config=world.config)
    void_grant("kw-commit", as_of=utc("2026-11-15 00:00"), by="tests", reason="test",
               config=world.config)  # fmt: skip
    world.nightly(day("2026-11-30"))
    world.close(utc("2026-12-05 00:00"))


@pytest.fixture(scope="module")
def world(chdb_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("revrec-breaker")
    catalog = folder / "catalog.yaml"
    catalog.write_text(CATALOG)
    with pytest.MonkeyPatch.context() as patch, fresh_warehouse(chdb_folder) as warehouse:
        patch.setattr(harness, "CATALOG", catalog)
        built = World(warehouse, chdb_folder, folder / "world")
        build(built)
        yield built


@pytest.fixture(scope="module")
def months(world: World) -> dict[str, RevrecPeriod]:
    return {m: revrec_period(m, config=world.config) for m in MONTHS}


def cli(world: World, *args: str, **env: str) -> tuple[int, str]:
    """The command's exit code and its output (standard output, then standard error)."""
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main,
            list(args),
            env={
                "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
                "METERLINE_LEDGER_URL": world.config.ledger_url,
                "COLUMNS": "160",
                **env,
            },
        )
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def one_error(output: str) -> str:
    errors = [ln for ln in output.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "Traceback" not in output and "internal" not in output, output
    return errors[0]


# --- the identities, exact to the minor unit ---------------------------------------------


def test_zero_and_three_decimal_currencies_are_exact_to_the_minor_unit(
    world: World, months: dict[str, RevrecPeriod]
) -> None:
    for found in months.values():
        assert found.problems == [] and found.failures == [], (found.problems, found.failures)
        journal = journal_of(found, world.config)
        assert journal.ok and all(e.debits == e.credits for e in journal.entries), journal.ties
    october = months["2026-10"]

    def fee(customer: str) -> list[int]:
        return [
            r.amount_minor
            for r in sorted(october.rows, key=lambda r: r.day)
            if r.customer == customer and r.product == "platform_fee"
        ]

    # JPY 10,001 over 31 days: 322 each and 19 yen left, one to each of the first 19 days;
    # KWD 31.001: 1.000 each and 1 fils left, to October 1. The re-issued JPY invoice's
    # fee has the same keys as the voided one's: one set of rows, not two.
    assert fee("jp") == [323] * 19 + [322] * 12
    assert fee("kw") == [1001] + [1000] * 30
    assert fee("us") == [323] * 18 + [322] * 13
    # A month before any data and one far ahead: every balance zero or carried, balanced.
    for period in ("2000-01", "2199-12"):
        far = revrec_period(period, config=world.config)
        assert far.rows == [] and far.failures == [] and far.problems == []


def test_a_voided_commitment_leaves_no_deferred_revenue(months: dict[str, RevrecPeriod]) -> None:
    (kw,) = [b for b in months["2026-12"].closing() if b.customer == "kw"]
    # 3.333 billed; 2.992 released as it paid 4.489 of October's usage; 0.341 un-billed by
    # the void (its unused 0.511): nothing is left deferred. (Is 2.992, for ever.)
    assert kw.deferred_commitments == 0


def test_lines_of_one_minor_unit_and_negative_lines_land_exactly() -> None:
    oct_ = (utc("2026-10-01 00:00"), utc("2026-11-01 00:00"))

    def line(line_id: int, kind: str, amount: int) -> RevLine:
        return RevLine(
            line_id=line_id, key=f"s|2026-10-01T00:00:00Z|fee|v1|{kind}", invoice_id=1,
            customer="c", currency="JPY", timezone="Asia/Tokyo", kind=kind, price_id="fee",
            aggregation=None, amount_minor=amount, quantity=Decimal(1),
            service_start=oct_[0], service_end=oct_[1], billed_on=None,
        )  # fmt: skip

    # 1 yen over a Tokyo month (32 local days: Oct 1 09:00 to Nov 1 09:00): all of it on
    # the first, no row of 0; a refund of 1 yen the same; a discount bigger than its line
    # on the line's one day. Each line's rows add up to it.
    for fee, discount in ((1, -3), (-1, 0), (-31, 5)):
        lines = [line(1, "flat", fee)] + ([line(2, "discount", discount)] if discount else [])
        schedule = build_schedule(lines)
        assert schedule.problems == []
        days = {}
        for ln in lines:
            rows = [r for r in schedule.rows if r.line_id == ln.line_id]
            assert sum(r.amount_minor for r in rows) == ln.amount_minor
            assert all(r.amount_minor for r in rows)
            days[ln.kind] = {r.day for r in rows}
        assert len(days["flat"]) == min(abs(fee), 32)
        assert days.get("discount", set()) <= days["flat"]


# --- the commands' refusals ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["revrec", "--period", "2026-13"], 2, "is not a month YYYY-MM"),
        (["revrec", "--period", "26-01"], 2, "is not a month YYYY-MM"),
        (["revrec", "--period", ""], 2, "is not a month YYYY-MM"),
        (["journal", "--period", "2200-01"], 2, "outside the months"),
        (["revrec", "waterfall", "--from", "2026-11", "--to", "2026-10"], 2, "before --from"),
        (
            ["revrec", "waterfall", "--from", "2000-01", "--to", "2199-12"],
            2,
            "is 2,400 months; a waterfall shows at most 120",
        ),
        (["revrec", "--period", "2026-10", "--customer", "nobody"], 3, "no customer 'nobody'"),
    ],
)
def test_bad_periods_and_ranges_are_refused(
    world: World, args: list[str], code: int, fragment: str
) -> None:
    status, output = cli(world, *args)
    assert status == code and fragment in one_error(output), output


def test_output_files_are_checked_first_and_written_whole(world: World, tmp_path: Path) -> None:
    csv_path = tmp_path / "w.csv"
    waterfall = ["revrec", "waterfall", "--from", "2026-10", "--to", "2026-11"]
    refused = [
        # Was a FileNotFoundError after the work, and the CSV already written.
        ([*waterfall, "--csv", str(csv_path), "--png", str(tmp_path / "no" / "w.png")],
         "the folder"),
        # Was the chart written over the CSV.
        ([*waterfall, "--csv", str(csv_path), "--png", f"{tmp_path}/./w.csv"], "the same file"),
        # Was ". : Is a directory".
        (["journal", "--period", "2026-10", "--out", ""], "give a file name"),
        (["journal", "--period", "2026-10", "--out", str(tmp_path)], "is a directory"),
        (["journal", "--period", "2026-10", "--out", f"{csv_path}/j.csv"], "does not exist"),
    ]  # fmt: skip
    if Path("/dev/full").exists():
        # Was an internal error (exit code 5), and the CSV already in place.
        refused += [
            ([*waterfall, "--csv", str(csv_path), "--png", "/dev/full"], "No space left"),
            (["journal", "--period", "2026-10", "--out", "/dev/full"], "No space left"),
        ]
    for args, fragment in refused:
        status, output = cli(world, *args)
        assert status == 2 and fragment in one_error(output), (args, output)
        assert os.listdir(tmp_path) == [], (args, os.listdir(tmp_path))
    status, output = cli(world, *waterfall, "--csv", str(csv_path), "--png", f"{tmp_path}/w.png")
    assert status == 0, output
    assert sorted(os.listdir(tmp_path)) == ["w.csv", "w.png"]  # no temporary file left
    rows = list(csv.reader(io.StringIO(csv_path.read_text())))
    totals = {r[0]: r[2:] for r in rows if r[1] == "total"}
    # JPY without a decimal point, KWD with three.
    assert totals["JPY"][0].isdigit() and len(totals["KWD"][0].split(".")[1]) == 3, totals


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        (
            "METERLINE_JOURNAL_ACCOUNTS",
            '{"revenue": "1200"}',
            "accounts_receivable and revenue are both account '1200'",
        ),
        (
            "METERLINE_JOURNAL_ACCOUNTS",
            '{"deferred_revenue": "1210"}',
            "deferred_revenue and unbilled_receivables are both",
        ),
        (
            "METERLINE_JOURNAL_ACCOUNTS",
            '{"breakage": "2400"}',
            "deferred_revenue and breakage are both account '2400'",
        ),
        (
            "METERLINE_JOURNAL_REVENUE_ACCOUNTS",
            '{"resolution": "1210"}',
            "unbilled_receivables and revenue of resolution",
        ),
        (
            "METERLINE_JOURNAL_REVENUE_ACCOUNTS",
            '{"resolutoin": "4100"}',
            "unknown product line(s) resolutoin",
        ),
        ("METERLINE_JOURNAL_ACCOUNTS", "{bad", "is not JSON"),
        ("METERLINE_JOURNAL_ACCOUNTS", '{"revenu": "4000"}', "unknown role(s) revenu"),
    ],
)
def test_an_account_mapping_that_would_misstate_the_books_is_refused(
    world: World, tmp_path: Path, variable: str, value: str, fragment: str
) -> None:
    # Were written as balanced entries booking revenue to a receivable, a commitment's
    # sale to nothing, or a product line's revenue to the default account.
    out = tmp_path / "j.csv"
    status, output = cli(world, "journal", "--period", "2026-10", "--out", str(out),
                         **{variable: value})  # fmt: skip
    assert status == 2 and fragment in one_error(output), output
    assert not out.exists()


def test_receivables_may_share_an_account_and_product_lines_take_theirs(world: World) -> None:
    status, output = cli(
        world,
        "journal",
        "--period",
        "2026-11",
        METERLINE_JOURNAL_ACCOUNTS='{"unbilled_receivables": "1200"}',
        METERLINE_JOURNAL_REVENUE_ACCOUNTS='{"resolution": "4100"}',
    )
    assert status == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert {r["Line: Account"] for r in rows if r["Line: Memo"] == "revenue: resolution"} == {
        "4100"
    }
    kwd = [r for r in rows if r["Currency"] == "KWD" and r["Line: Credit"]]
    assert kwd and all(len(r["Line: Credit"].split(".")[1]) == 3 for r in kwd)


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("METERLINE_JOURNAL_ACCOUNTS", "{bad"),
        ("METERLINE_JOURNAL_ACCOUNTS", ""),
        ("METERLINE_JOURNAL_ACCOUNTS", " "),
        ("METERLINE_JOURNAL_REVENUE_ACCOUNTS", '{"fin_resolution": "4100"'),
    ],
)
def test_a_json_setting_that_is_not_json_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Was pydantic-settings' own SettingsError: an internal error (exit code 5).
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"invalid setting {variable}: is not JSON"):
        load_settings()


@pytest.mark.parametrize("value", ["Parent\nChild", " Parent", "Parent\t:US", "   "])
def test_a_subsidiary_that_netsuite_cannot_match_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    # Was written into every CSV row as given (a line break inside a field, spaces).
    monkeypatch.setenv("METERLINE_JOURNAL_SUBSIDIARY", value)
    with pytest.raises(
        SettingsError, match=r"METERLINE_JOURNAL_SUBSIDIARY: .* is not a subsidiary"
    ):
        load_settings()
    monkeypatch.setenv("METERLINE_JOURNAL_SUBSIDIARY", "")
    assert load_settings().journal_subsidiary is None


def test_voiding_the_invoice_that_returned_a_voided_grants_consumption_closes(
    world: World, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"  # a copy: the module's world stays as built
    shutil.copy(world.config.ledger_url.removeprefix("sqlite:///"), ledger)
    config = world.config.model_copy(update={"ledger_url": f"sqlite:///{ledger}"})
    (november,) = [
        i["id"]
        for i in world.invoices()
        if i["customer"] == "kw" and i["period_start_local"] == "2026-11-01"
    ]
    void_invoice(november, as_of=utc("2026-12-08 00:00"), config=config)
    try:
        report = close_periods(utc("2026-12-09 00:00"), config=config)
    except Exception as exc:  # the fault: an internal error, exit code 5, every night
        raise AssertionError(f"close failed: {exc!r}") from None
    assert report.ok and len(report.invoices_finalized) == 1
