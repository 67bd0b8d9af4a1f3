"""Revenue recognition and the journal, end to end (docs/revrec.md), on a small world of
two months (October and November 2026; prices: tests/scenarios/catalog.yaml, plan basic:
resolutions graduated 1.00 for the first 100 of a period then 0.50, seats 30.00 / EUR
20.00 time-weighted, here none held).

- ``ny`` (USD, America/New_York), 10% off resolutions, a promotional credit of USD 50
  (priority 10) and a paid commitment of USD 200 sold for USD 150 (priority 50, expiring
  2026-11-30). October: 200 resolutions on Oct 10 and 100 on Oct 20 = 100 x 1.00 + 200 x
  0.50 = 200.00, less 20.00 (10%) = 180.00; the promotion pays 50.00, the commitment
  130.00: October's invoice is 0.00. 20 more of Oct 25 arrive late (Nov 10): October is
  corrected on November's invoice: resolutions +10.00, discount -1.00, the commitment
  pays 9.00 more. November's 30 resolutions (Nov 12) are billed at list (the commitment
  is past its term by November's end): 30.00 less 3.00. Its rest, 61 of 200, expires
  on Nov 30: breakage.
- ``eu`` (EUR, UTC): 50 resolutions on Oct 5 = EUR 40.00; 30 on Nov 7 = EUR 24.00.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meterline.audit.reconcile import reconcile_period
from meterline.cli import main
from meterline.jobs.credits import grant_one
from meterline.jobs.journal import CSV_COLUMNS, journal_of
from meterline.jobs.revrec import revrec_period
from meterline.settings import settings
from tests.scenarios.harness import Sub, World, day, resolutions, utc

pytestmark = pytest.mark.single_warehouse


def build(world: World) -> None:
    world.load_customers(
        [
            Sub(
                "ny",
                "basic",
                start="2026-10-01",
                timezone="America/New_York",
                discounts=(
                    {"price": "resolution", "percent_off": "10", "valid_from": "2026-01-01"},
                ),
            ),
            Sub("eu", "basic", start="2026-10-01", currency="EUR"),
        ]
    )
    for record in (
        {
            "grant_id": "promo-ny",
            "kind": "promotional",
            "amount": "50.00",
            "priority": 10,
        },
        {
            "grant_id": "commit-ny",
            "kind": "paid_commit",
            "amount": "200.00",
            "price_paid": "150.00",
            "expires_at": "2026-11-30",
        },
    ):
        grant_one(
            {
                "customer_id": "ny",
                "currency": "USD",
                "effective_from": "2026-10-01",
                "reason": "scenario",
                **record,
            },
            by="tests",
            config=world.config,
        )
    # A month's usage in one delivery after it (one ingest, one nightly run that rolls up
    # every day it touched), and the late usage on its own.
    october = {"channel": "chat", "ingested_at": "2026-11-01 00:30"}
    november = {"channel": "chat", "ingested_at": "2026-12-01 00:30"}
    world.deliver(
        [
            *resolutions("ny", "a", 200, "2026-10-10 13:00", **october),
            *resolutions("ny", "b", 100, "2026-10-20 13:00", **october),
            *resolutions("eu", "e", 50, "2026-10-05 09:00", **october),
            *resolutions(
                "ny", "late", 20, "2026-10-25 13:00", channel="chat", ingested_at="2026-11-10 12:00"
            ),
            *resolutions("ny", "n", 30, "2026-11-12 13:00", **november),
            *resolutions("eu", "f", 30, "2026-11-07 09:00", **november),
        ]
    )
    world.nightly(day("2026-10-31"))
    world.close(utc("2026-11-05 00:00"))
    world.nightly(day("2026-11-30"))
    world.close(utc("2026-12-05 00:00"))


INVOICES_EUR = [
    "meterline-2026-11-EUR-invoices",
    "2026-11-30",
    "",
    "EUR",
    "meterline invoices finalized in 2026-11 (EUR, 1 invoice(s))",
]


def rows_of(rows: Any, customer: str) -> dict[tuple[str, str, str], int]:
    """(day, category, kind of key) -> minor units of one customer's rows."""
    out: dict[tuple[str, str, str], int] = {}
    for r in rows:
        if r.customer != customer:
            continue
        what = "release" if "|release|" in r.key else "adj" if "adj>" in r.key else "line"
        tag = (r.day.isoformat(), r.category, what)
        out[tag] = out.get(tag, 0) + r.amount_minor
    return out


def balance(found: Any, customer: str, on: str) -> tuple[int, int, int, int]:
    (b,) = [b for b in found.balances if b.customer == customer and b.day == date.fromisoformat(on)]
    return (b.billed, b.recognized, b.deferred, b.unbilled)


def cli(world: World, *args: str) -> tuple[int, str]:
    env = {
        "METERLINE_WAREHOUSE_URL": world.config.warehouse_url,
        "METERLINE_LEDGER_URL": world.config.ledger_url,
        "COLUMNS": "160",
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, list(args), env=env)
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


def test_a_month_recognized_balanced_and_journaled(ledger_world: World, tmp_path: Path) -> None:
    world = ledger_world
    build(world)
    october = revrec_period("2026-10", config=world.config)
    november = revrec_period("2026-11", config=world.config)
    # The rules, row by row (minor units). ny: usage on its days (200:100), the discount,
    # the promotion and the commitment's credit in proportion (remainders to the largest
    # fraction, a tie to the earliest day); the commitment's price released as its credit
    # paid: 150.00 x 130/200 = 97.50 on those days. The late usage of Oct 25 with its
    # discount, credit and release (52.50 - 45.75 = 6.75, the running balance rounded).
    assert rows_of(october.rows, "ny") == {
        ("2026-10-10", "revenue", "line"): 13333,
        ("2026-10-20", "revenue", "line"): 6667,
        ("2026-10-10", "discount", "line"): -1333,
        ("2026-10-20", "discount", "line"): -667,
        ("2026-10-10", "credit", "line"): -3333 - 8666,
        ("2026-10-20", "credit", "line"): -1667 - 4334,
        ("2026-10-10", "commit_release", "release"): 6500,
        ("2026-10-20", "commit_release", "release"): 3250,
        ("2026-10-25", "revenue", "adj"): 1000,
        ("2026-10-25", "discount", "adj"): -100,
        ("2026-10-25", "credit", "adj"): -900,
        ("2026-10-25", "commit_release", "release"): 675,
    }
    assert {r.rule for r in october.rows if "adj>" in r.key and r.category == "revenue"} == {
        "late_usage_days"
    }
    assert rows_of(october.rows, "eu") == {("2026-10-05", "revenue", "line"): 4000}
    # November: its usage, and the commitment's rest (61 of 200 units: 45.75) as breakage
    # on its expiry day.
    assert rows_of(november.rows, "ny") == {
        ("2026-11-12", "revenue", "line"): 3000,
        ("2026-11-12", "discount", "line"): -300,
        ("2026-11-30", "breakage", "line"): 4575,
    }
    # Balances (billed, recognized, deferred, unbilled): the commitment billed 150.00 on
    # Oct 1; October's invoice (0.00) finalized Nov 4 local; November's on Dec 4.
    assert balance(october, "ny", "2026-09-30") == (0, 0, 0, 0)
    assert balance(october, "ny", "2026-10-01") == (15000, 0, 15000, 0)
    assert balance(october, "ny", "2026-10-31") == (15000, 10425, 4575, 0)
    assert balance(november, "ny", "2026-11-30") == (15000, 17700, 0, 2700)
    assert balance(october, "eu", "2026-10-31") == (0, 4000, 0, 4000)
    assert balance(november, "eu", "2026-11-30") == (4000, 6400, 0, 2400)
    for month in (october, november):
        assert month.problems == [] and month.failures == []
        assert len(month.balances) == 2 * (len(month.rows) and (month.last - month.first).days + 2)
    # Reconcile checks the identity every day of both months: clean.
    for period in ("2026-10", "2026-11"):
        rec = reconcile_period(period, config=world.config)
        assert rec.ok and rec.findings == [], rec.summary()
    # The journal: balanced entries with stable ids, tied to the ledger and the balances.
    found = journal_of(october, world.config)
    assert found.ok, found.ties
    assert [e.external_id for e in found.entries] == [
        "meterline-2026-10-EUR-revenue",
        "meterline-2026-10-USD-revenue",
        "meterline-2026-10-USD-commitments",
    ]
    usd = {
        (ln.account, ln.memo): (ln.debit_minor, ln.credit_minor) for ln in found.entries[1].lines
    }
    assert usd == {
        ("4000", "revenue: resolution"): (0, 21000),
        ("4900", "discounts: resolution"): (2100, 0),
        ("4910", "credits applied: resolution"): (18900, 0),
        ("4910", "paid commitment released: resolution"): (0, 10425),
        ("2400", "deferred revenue released"): (10425, 0),
    }
    assert len(found.ties) == 12 and all(t.ok for t in found.ties)
    # The CLI: the month, the waterfall (CSV and PNG), the journal as NetSuite CSV twice
    # (the same file: a re-import changes nothing) and as JSON.
    code, out = cli(world, "revrec", "--period", "2026-10")
    assert code == 0, out
    assert "USD: billed = recognized + deferred - unbilled" in out and "NO" not in out, out
    code, out = cli(world, "revrec", "--period", "2026-11", "--customer", "ny", "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] and doc["customers"][0]["deferred"] == "0.00", doc["customers"]
    assert {r["rule"] for r in doc["rows"]} == {"usage_days", "follows_line", "breakage"}
    csv_path, png_path = tmp_path / "w.csv", tmp_path / "w.png"
    code, out = cli(
        world,
        "revrec",
        "waterfall",
        "--from",
        "2026-10",
        "--to",
        "2026-11",
        "--csv",
        str(csv_path),
        "--png",
        str(png_path),
    )
    assert code == 0, out
    assert csv_path.read_text().splitlines() == [
        "currency,billed,2026-10,2026-11,total",
        "EUR,2026-11,40.00,0.00,40.00",
        "EUR,2026-12,0.00,24.00,24.00",
        "EUR,total,40.00,24.00,64.00",
        "USD,2026-10,104.25,45.75,150.00",
        "USD,2026-12,0.00,27.00,27.00",
        "USD,total,104.25,72.75,177.00",
    ]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = cli(world, "journal", "--period", "2026-11")
    assert first == cli(world, "journal", "--period", "2026-11") and first[0] == 0, first
    table = list(csv.reader(io.StringIO(first[1])))
    assert table[0] == list(CSV_COLUMNS)
    assert [row[:8] for row in table if row[0] == "meterline-2026-11-EUR-invoices"] == [
        [*INVOICES_EUR, "1200", "40.00", ""],
        [*INVOICES_EUR, "1210", "", "40.00"],
    ]
    code, out = cli(world, "journal", "--period", "2026-11", "--format", "json")
    assert code == 0 and json.loads(out)["ok"], out
