"""The statement's cases from issue 11 item 13, through the real pipeline (events ingested,
rolled up, closed into a ledger) and rendered in headless Chromium:

- a volume price: 12,226 units fall in tier 2, so all of them are charged at 0.30
  (3,667.80); tier 1 is not applied (it once showed "5,000 used, 0.00");
- a KWD amount keeps its three decimals (12.345, once cut to 12.34);
- a Dublin customer's October shows as the local dates 2026-10-01 to 2026-10-31 (once
  2026-09-30..2026-10-31 UTC), its daily chart by local day;
- an anchor-31 customer's period starting on 2026-10-31 (local) is found as 2026-10;
- the customer view carries no ledger ids, version hashes or 9-decimal quantities;
- a period that does not exist exits 3 with one line listing the periods that do.

Prices: tests/audit/statement/catalog.yaml. Each expected number is worked out by hand
in the comment above it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import billing
from billing.db import create_ledger_engine, session_factory
from billing.migrate import upgrade
from meterline.audit.statement import StatementNotFound, render, statement_data, write_statement
from meterline.cli import main
from meterline.connections import meter_catalog
from meterline.settings import load_settings, settings
from meters.warehouse.base import Warehouse
from tests.audit.test_statement import render_in_chromium
from tests.billing.conftest import ledger_url  # noqa: F401  (SQLite, and PostgreSQL when set)
from tests.conftest import fresh_warehouse, selected_backends, warehouse_url
from tests.scenarios.harness import Sub, World, day, event, resolutions

# The statement cases on chDB only: their ledgers are built once per worker for each
# backend, and the server backend differs in transport only (the same engine runs the same
# SQL), proved by the warehouse tests (tests/meters, tests/production) on both.
pytestmark = pytest.mark.single_warehouse

CATALOG = Path(__file__).resolve().parent / "statement" / "catalog.yaml"
AS_OF = datetime(2026, 12, 5, tzinfo=UTC)

CUSTOMERS = [
    # Dublin, anchor 1: October is 2026-10-01 00:00 IST (2026-09-30 23:00 UTC) to
    # 2026-11-01 00:00 GMT (the clocks go back on 2026-10-25): 745 hours.
    Sub("dublin", "volume", start="2026-10-01", timezone="Europe/Dublin"),
    # Kuwait (UTC+3), anchor 31: periods 2026-09-30..2026-10-30 and 2026-10-31..2026-11-29
    # (local days), then 2026-11-30.., not ended by AS_OF.
    Sub("kuwait", "volume", start="2026-09-30", currency="KWD", timezone="Asia/Kuwait", anchor=31),
]
EVENTS = [
    # 12,226 resolutions, one a minute from 2026-09-30 23:00 UTC, the first local minute
    # of October in Dublin: local 2026-10-01 holds the first 1,440 of them.
    *resolutions("dublin", "d-", 12_226, "2026-09-30 23:00", channel="chat"),
    # 3 seats from 2026-10-11 00:00 UTC to the period's end: 504 of its 745 hours, so
    # 3 x 504 / 745 = 2.029530201... seats (10.00 each: 20.30).
    event("d-seats", "dublin", "seats", "2026-10-11 00:00", value=3),
    # The first anchor-31 period: 10 x 0.005 = 0.050 KWD.
    *resolutions("kuwait", "k1-", 10, "2026-10-05 08:00", channel="email"),
    # The period starting 2026-10-31 local: 2,469 x 0.005 = 12.345 KWD.
    *resolutions("kuwait", "k2-", 2_469, "2026-11-10 00:00", channel="email"),
]
# The UTC days holding events (a gauge holds its level through days without events).
ROLLUP_DAYS = [
    day(d)
    for d in (
        "2026-09-30",
        *(f"2026-10-{n:02d}" for n in range(1, 11)),
        "2026-10-11",
        "2026-11-10",
        "2026-11-11",
    )
]


@dataclass
class Cases(World):
    """A harness World on this file's catalog, loaded into the ledger first (the catalog
    every step reads)."""

    ledger_url: str | None = None

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config = load_settings(
            warehouse_url=warehouse_url(self.warehouse),
            ledger_url=self.ledger_url or f"sqlite:///{self.tmp}/ledger.db",
            catalog_path=CATALOG,
        )
        upgrade(self.config.ledger_url)
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine).begin() as session:
                billing.load_catalog(session, CATALOG)
        finally:
            engine.dispose()
        self.meters = meter_catalog(self.config)

    def load_customers(self, customers: Any) -> None:
        path = self.tmp / "customers.jsonl"
        path.write_text("".join(json.dumps(c.row()) + "\n" for c in customers))
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine).begin() as session:
                billing.load_customers_file(session, path)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def _built(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if "clickhouse" in selected_backends():
        request.getfixturevalue("clickhouse_server")
    with ExitStack() as stack:
        yield {"_stack": stack}


@pytest.fixture
def cases(
    _built: dict[str, Any],
    warehouse_backend: str,
    chdb_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Cases:
    """The customers above, their events rolled up and closed as of AS_OF (once per
    backend and module). Read-only."""
    if warehouse_backend not in _built:
        wh = _built["_stack"].enter_context(fresh_warehouse(chdb_folder))
        world = Cases(wh, chdb_folder, tmp_path_factory.mktemp(f"statement-{warehouse_backend}"))
        world.load_customers(CUSTOMERS)
        world.deliver(EVENTS)
        world.nightly(*ROLLUP_DAYS)
        world.close(AS_OF)
        _built[warehouse_backend] = world
    built: Cases = _built[warehouse_backend]
    return built


def ledger(world: Cases, statement: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(world.tmp / "ledger.db")) as conn:
        return conn.execute(statement, params).fetchall()


def tier_cells(seen: dict[str, Any]) -> dict[int, dict[str, str]]:
    return {t["tier"]: t for t in seen["tier_rows"]}


# --- volume tiers, a Dublin period in local dates -------------------------------------


def test_volume_tiers_and_dublin_local_period(cases: Cases, tmp_path: Path) -> None:
    out = write_statement("dublin", "2026-10", tmp_path / "dublin.html", config=cases.config)
    seen = render_in_chromium(out, tmp_path)
    text = seen["text"]

    # One invoice: October in Dublin's local dates, never the UTC instants.
    assert seen["periods"] == [
        {"first": "2026-10-01", "last": "2026-10-31", "text": seen["periods"][0]["text"]}
    ]
    assert "Period 2026-10-01 to 2026-10-31 (Europe/Dublin)" in seen["periods"][0]["text"]
    assert "2026-09-30" not in text and "UTC" not in text

    # Volume: every one of the 12,226 units at tier 2's 0.30 = 3,667.80; tier 1 unused.
    tiers = tier_cells(seen)
    assert tiers[1]["applied"] == "no"
    assert tiers[1]["cells"] == ["1", "0 to 5,000", "0.40", "not applied", "—", "—"]
    assert tiers[2]["applied"] == "yes"
    assert tiers[2]["cells"] == [
        "2",
        "over 5,000",
        "0.30",
        "all 12,226 units",
        "12,226",
        "3,667.80",
    ]
    assert "every unit is charged at the price of the one tier" in text
    assert "5,000 used" not in text and "7,226" not in text

    # The invoice lines: quantities with their meaningful decimals; the seats average
    # 2.029530201 shown as "≈ 2.03" (three decimals at most), billed 20.30.
    rows = {r["price"]: r["cells"] for r in seen["rows"]}
    assert rows["resolution"] == [
        "resolution\nvolume tier 2: every unit at that tier's price",
        "12,226 resolution",
        "0.30",
        "3,667.80",
    ]
    assert rows["seat"] == ["seat", "≈ 2.03 seat", "10.00", "20.30"]
    # 3,667.80 + 20.30
    assert seen["totals"] == {"subtotal": "3,688.10", "total": "3,688.10"}

    # The daily chart is by local day: the 60 resolutions of 2026-09-30 23:00-23:59 UTC
    # are on 2026-10-01 (1,440 that local day), and nothing is drawn on 2026-09-30.
    (chart,) = [c for c in seen["charts"] if c["meter"] == "resolution"]
    per_day: dict[str, Decimal] = {}
    for bar in chart["bars"]:
        per_day[bar["day"]] = per_day.get(bar["day"], Decimal(0)) + Decimal(bar["value"])
    assert min(per_day) == "2026-10-01" and per_day["2026-10-01"] == 1440
    assert sum(per_day.values()) == 12_226


# --- KWD and the anchor-31 lookup ------------------------------------------------------


def test_kwd_amounts_keep_three_decimals(cases: Cases, tmp_path: Path) -> None:
    out = write_statement("kuwait", "2026-10", tmp_path / "kuwait.html", config=cases.config)
    seen = render_in_chromium(out, tmp_path)
    rows = {r["price"]: r["cells"] for r in seen["rows"]}
    # 2,469 x 0.005 = 12.345 KWD, to the fils; no seats: 0.000.
    assert rows["resolution"] == ["resolution", "2,469 resolution", "0.005", "12.345"]
    assert rows["seat"] == ["seat", "0 seat", "3.000", "0.000"]
    assert seen["totals"] == {"subtotal": "12.345", "total": "12.345"}
    assert "12.34 " not in seen["text"] and not seen["text"].count("12.34\n")


def test_anchor_31_periods_are_found_by_their_local_start(cases: Cases) -> None:
    # The anchor-31 period that starts on 2026-10-31 (local; 2026-10-30 21:00 UTC) is
    # "2026-10"; the one starting 2026-09-30 is "2026-09", and holds 2026-10-15.
    october = statement_data("kuwait", "2026-10", config=cases.config)
    ((inv,),) = [october.invoices]
    assert (inv.period.first_day.isoformat(), inv.period.last_day.isoformat()) == (
        "2026-10-31",
        "2026-11-29",
    )
    assert inv.period.start == datetime(2026, 10, 30, 21, tzinfo=UTC)
    assert inv.total_minor == 12_345

    for asked in ("2026-09", "2026-10-15", "2026-09-30", "2026-10-30"):
        found = statement_data("kuwait", asked, config=cases.config)
        assert [(i.period.local_text, i.total_minor) for i in found.invoices] == [
            ("2026-09-30 to 2026-10-30", 50)  # 10 x 0.005 = 0.050 KWD
        ], asked
    assert [
        i.period.local_text
        for i in statement_data("kuwait", "2026-10-31", config=cases.config).invoices
    ] == ["2026-10-31 to 2026-11-29"]


# --- the customer view carries nothing internal ----------------------------------------


def test_customer_view_has_no_ids_hashes_or_long_decimals(cases: Cases) -> None:
    customer = render(statement_data("dublin", "2026-10", config=cases.config))
    internal = render(statement_data("dublin", "2026-10", view="internal", config=cases.config))
    ((invoice_id,),) = ledger(
        cases,
        "SELECT i.id FROM invoices i JOIN customers c ON c.id = i.customer_id"
        " WHERE c.external_id = 'dublin' AND i.period_start_local = '2026-10-01'",
    )
    lines = ledger(
        cases,
        "SELECT id, price_version, idempotency_key FROM invoice_lines WHERE invoice_id = ?",
        invoice_id,
    )
    versions = sorted({version for _, version, _ in lines})
    internal_only = [
        *versions,  # "2026-01-01#<12 hex>"
        *(v.split("#")[1] for v in versions),
        *(key for _, _, key in lines),
        "sub_dublin",
        f'data-invoice="{invoice_id}"',
        *(f'data-line="{i}"' for i, _, _ in lines),
        "2026-09-30T23:00:00Z",
        "Audit chain per line",
        "2.029530201",  # the seats quantity's nine decimals
    ]
    # The internal view shows each of them (so the check below can see them) ...
    for part in internal_only:
        if "|" not in part:  # idempotency keys are not shown in either view
            assert part in internal, part
    # ... and the customer view none.
    for part in internal_only:
        assert part not in customer, part
    assert not re.search(r"\d\.\d{4,}", customer), re.search(r".{40}\d\.\d{4,}.{20}", customer)
    assert not re.search(r"\b[0-9a-f]{12,}\b", customer)
    assert "≈ 2.03" in customer and "Volume resolutions and seats" in customer


# --- not found: exit 3, one line, the periods that exist -------------------------------


@pytest.fixture
def cli_env(cases: Cases, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cases]:
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", cases.config.warehouse_url)
    monkeypatch.setenv("METERLINE_LEDGER_URL", cases.config.ledger_url)
    monkeypatch.setenv("METERLINE_CATALOG_PATH", str(CATALOG))
    settings.cache_clear()
    yield cases
    settings.cache_clear()


def one_error_line(stderr: str) -> str:
    match = re.fullmatch(r"(?:meterline: )?[Ee]rror: (.+)\n", stderr)
    assert match, stderr
    return match.group(1)


def test_not_found_exits_3_listing_the_periods(cli_env: Cases, tmp_path: Path) -> None:
    out = tmp_path / "s.html"
    missing = CliRunner().invoke(
        main, ["statement", "--customer", "kuwait", "--period", "2026-11", "--out", str(out)]
    )
    assert missing.exit_code == 3, missing.output
    # One line, "error: " (or the command line's "meterline: error: ") and the message.
    assert one_error_line(missing.stderr) == (
        "customer kuwait has no invoice for a billing period starting in 2026-11"
        " (Asia/Kuwait time); its periods: 2026-09 (2026-09-30 to 2026-10-30),"
        " 2026-10 (2026-10-31 to 2026-11-29)"
    )
    assert not out.exists()

    nobody = CliRunner().invoke(
        main, ["statement", "--customer", "nobody", "--period", "2026-10", "--out", str(out)]
    )
    assert nobody.exit_code == 3
    assert one_error_line(nobody.stderr) == "no customer 'nobody' in the ledger"

    bad = CliRunner().invoke(
        main, ["statement", "--customer", "kuwait", "--period", "2026-13", "--out", str(out)]
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "'2026-13' is not a period: use YYYY-MM" in bad.stderr

    found = CliRunner().invoke(
        main,
        [
            "statement",
            "--customer",
            "kuwait",
            "--period",
            "2026-10",
            "--view",
            "internal",
            "--out",
            str(out),
        ],
    )
    assert (found.exit_code, found.stdout) == (0, f"wrote {out}\n")
    page = out.read_text()
    assert "12.345" in page and "Audit chain per line" in page


def test_not_found_raises_a_typed_error(cases: Cases) -> None:
    with pytest.raises(
        StatementNotFound,
        match=r"its periods: 2026-10 \(2026-10-01 to 2026-10-31\), 2026-11 \(2026-11-01 to 2026-11-30\)$",
    ):
        statement_data("dublin", "2026-12", config=cases.config)


# --- either ledger database ------------------------------------------------------------


def test_statement_reads_either_ledger(
    warehouse: Warehouse,
    chdb_folder: Path,
    ledger_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The anchor-31 KWD customer alone, on SQLite and on PostgreSQL.
    world = Cases(warehouse, chdb_folder, tmp_path / "world", ledger_url=ledger_url)
    world.load_customers([c for c in CUSTOMERS if c.customer_id == "kuwait"])
    world.deliver([e for e in EVENTS if e["customer_id"] == "kuwait"])
    world.nightly(day("2026-10-05"), day("2026-11-10"), day("2026-11-11"))
    world.close(AS_OF)

    october = statement_data("kuwait", "2026-10", config=world.config)
    assert [(i.period.local_text, i.total_minor) for i in october.invoices] == [
        ("2026-10-31 to 2026-11-29", 12_345)
    ]
    page = render(october)
    assert '<td class="num amount" data-amount-minor="12345">12.345</td>' in page
    with pytest.raises(
        StatementNotFound,
        match=r"its periods: 2026-09 \(2026-09-30 to 2026-10-30\), 2026-10 \(2026-10-31 to 2026-11-29\)$",
    ):
        statement_data("kuwait", "2026-11", config=world.config)
