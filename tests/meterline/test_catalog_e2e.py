"""One catalog, end to end: `catalog load` puts it in the ledger, and ingest, rollup,
close and reconcile read it from there, never the settings' file (issue 11 item 5); a
price that priced a finalized invoice never changes in place, and after any catalog
change close and reconcile agree to the cent (item 6)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select

import billing
import billing.migrate
from billing.catalog import CatalogChangeRefused, CatalogNotLoaded
from billing.db import create_ledger_engine, session_factory
from billing.models import CatalogVersion, Invoice, InvoiceLine, Subscription
from meterline import settings as settings_module
from meterline.audit.reconcile import reconcile_period
from meterline.connections import meter_catalog
from meterline.jobs.catalog import load_catalog_file
from meterline.jobs.close import close_periods
from meterline.jobs.rollup import rollup_day
from meterline.output import json_text
from meterline.settings import Settings, load_settings
from meters.warehouse.base import Warehouse
from tests.billing.conftest import BACKENDS, PG_ENV, pg_url_with_schema
from tests.conftest import warehouse_url

START = date(2026, 10, 1)

# A catalog of its own: its meter api_call is not in the settings' default catalog.
API_CATALOG = """\
meters:
  - name: api_call
    aggregation: count
    unit: call
    properties: {endpoint: null}
    dimensions: [endpoint]
plans:
  - id: api
    name: API
    prices:
      - id: calls
        meter: api_call
        versions:
          - effective_from: "2026-01-01"
            prices:
              USD: {model: per_unit, unit_amount: 0.002}
"""

# Resolutions priced per unit, and an sms price that sees no usage (a 0.00 line).
RESOLUTION_CATALOG = """\
meters:
  - name: resolution
    aggregation: count
    properties: {channel: [chat, sms]}
    dimensions: [channel]
plans:
  - id: std
    name: Standard
    prices:
      - id: chat
        meter: resolution
        filter: {channel: chat}
        versions:
          - effective_from: "2026-01-01"
            prices: {USD: {model: per_unit, unit_amount: "%(jan)s"}}%(nov)s
      - id: sms
        meter: resolution
        filter: {channel: sms}
        versions:
          - effective_from: "2026-01-01"
            prices: {USD: {model: per_unit, unit_amount: "%(sms)s"}}
      - id: platform
        versions:
          - effective_from: "2026-01-01"
            prices: {USD: {model: flat, amount: "20"}}
"""
NOVEMBER = """
          - effective_from: "2026-11-01"
            prices: {USD: {model: per_unit, unit_amount: "%s"}}"""


def resolution_catalog(path: Path, jan: str, nov: str | None = None, sms: str = "0.05") -> Path:
    text = RESOLUTION_CATALOG % {"jan": jan, "nov": NOVEMBER % nov if nov else "", "sms": sms}
    path.write_text(text)
    return path


@dataclass
class World:
    warehouse: Warehouse
    config: Settings
    tmp: Path

    def customers(self, plan: str, *ids: str) -> None:
        path = self.tmp / "customers.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "customer_id": c,
                        "name": c,
                        "currency": "USD",
                        "timezone": "UTC",
                        "subscription_id": f"sub_{c}",
                        "plan": plan,
                        "billing_anchor_day": 1,
                        "start": START.isoformat(),
                    }
                )
                + "\n"
                for c in ids
            )
        )
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine).begin() as session:
                billing.load_customers_file(session, path)
        finally:
            engine.dispose()

    def ingest(self, name: str, events: list[dict[str, Any]], as_of: str) -> dict[str, Any]:
        """Through the command line, as a user runs it: `meterline ingest FILE --json`."""
        from meterline.cli import main

        path = self.tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        result = CliRunner().invoke(main, ["ingest", str(path), "--as-of", as_of, "--json"])
        assert "Traceback" not in result.output, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def invoices(self) -> list[tuple[str, str, str, int, list[tuple[str, str, int]]]]:
        """(subscription, local start, status, total minor, [(kind, price, minor)])."""
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine)() as session:
                out = []
                for inv, sub in session.execute(
                    select(Invoice, Subscription.external_id)
                    .join(Subscription)
                    .order_by(Subscription.external_id, Invoice.period_start)
                ):
                    lines = session.scalars(
                        select(InvoiceLine).where(InvoiceLine.invoice_id == inv.id)
                    )
                    out.append(
                        (
                            sub,
                            inv.period_start_local.isoformat(),
                            inv.status,
                            inv.total_minor,
                            sorted((ln.kind, ln.price_id, ln.amount_minor) for ln in lines),
                        )
                    )
                return out
        finally:
            engine.dispose()

    def catalog_versions(self) -> list[int]:
        engine = create_ledger_engine(self.config.ledger_url)
        try:
            with session_factory(engine)() as session:
                return list(session.scalars(select(CatalogVersion.id).order_by(CatalogVersion.id)))
        finally:
            engine.dispose()

    def findings(self, *months: str) -> list[str]:
        return [
            f"{month}: {json_text(f)}"
            for month in months
            for f in reconcile_period(month, config=self.config).findings
        ]


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated ledger of this test's own: SQLite, and PostgreSQL (a fresh schema) when
    METERLINE_TEST_POSTGRES_URL is set, as in tests/billing/conftest.py."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        billing.migrate.upgrade(url)  # what `meterline init` does for the ledger
        yield url
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL variant: set {PG_ENV} to run it")
    schema = f"catalog_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        url = pg_url_with_schema(base, schema)
        billing.migrate.upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def world(
    warehouse: Warehouse, ledger: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """Settings pointing at this test's warehouse and ledger; the settings' catalog path
    stays the demo catalog, which has neither api_call nor resolution."""
    url = warehouse_url(warehouse)
    monkeypatch.setenv("METERLINE_WAREHOUSE_URL", url)
    monkeypatch.setenv("METERLINE_LEDGER_URL", ledger)
    monkeypatch.setenv("METERLINE_BILLING_GO_LIVE", START.isoformat())
    monkeypatch.delenv("METERLINE_CATALOG_PATH", raising=False)
    settings_module.settings.cache_clear()
    config = load_settings(warehouse_url=url, ledger_url=ledger, billing_go_live=START)
    assert settings_module.settings() == config
    yield World(warehouse, config, tmp_path)
    settings_module.settings.cache_clear()


def calls(
    prefix: str, n: int, day: date, meter: str = "api_call", **props: str
) -> list[dict[str, Any]]:
    base = datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    return [
        {
            "event_id": f"{prefix}{i}",
            "customer_id": "cus_api",
            "meter": meter,
            "timestamp": (base + timedelta(seconds=20 * i)).isoformat().replace("+00:00", "Z"),
            "properties": props or {"endpoint": "/v1/search"},
        }
        for i in range(n)
    ]


def test_every_command_reads_the_loaded_catalog_not_the_settings_file(world: World) -> None:
    with pytest.raises(CatalogNotLoaded, match=r"run `meterline catalog load FILE` first"):
        meter_catalog(world.config)
    path = world.tmp / "api.yaml"
    path.write_text(API_CATALOG)
    report = load_catalog_file(path, config=world.config)
    assert report.result.catalog_version == 1 and report.result.versions_created == 1
    world.customers("api", "cus_api")

    day = date(2026, 10, 5)
    summary = world.ingest(
        "october",
        # 1,500 calls of the loaded catalog's meter, and one event of a meter only the
        # settings' default catalog has: ingest knows only the loaded one.
        calls("c", 1500, day) + calls("r", 1, day, meter="fin_resolution", channel="chat"),
        "2026-10-06T00:30:00Z",
    )
    assert (summary["received"], summary["accepted"], summary["rejected"]) == (1501, 1500, 1)
    assert summary["rejected_by_reason"] == {"unknown_meter": 1}

    rolled = rollup_day(day, config=world.config)
    assert rolled.rebuilt[0]["events"] == 1500
    closed = close_periods(datetime(2026, 11, 4, tzinfo=UTC), config=world.config)
    assert closed.periods_closed == 1
    # 1,500 calls x 0.002 = USD 3.00
    assert world.invoices() == [
        ("sub_cus_api", "2026-10-01", "finalized", 300, [("usage", "calls", 300)])
    ]
    assert world.findings("2026-10") == []


def resolutions(customer: str, prefix: str, n: int, day: date) -> list[dict[str, Any]]:
    return [
        {**e, "customer_id": customer, "meter": "resolution", "properties": {"channel": "chat"}}
        for e in calls(prefix, n, day)
    ]


def test_a_catalog_change_never_leaves_close_and_reconcile_apart(world: World) -> None:
    cat = world.tmp
    load_catalog_file(resolution_catalog(cat / "v1.yaml", "1.00"), config=world.config)
    world.customers("std", "c1", "c2")
    oct5, nov5 = date(2026, 10, 5), date(2026, 11, 5)
    world.ingest(
        "october",
        resolutions("c1", "a", 100, oct5) + resolutions("c2", "b", 50, oct5),
        "2026-10-06T00:30:00Z",
    )
    rollup_day(oct5, config=world.config)
    close_periods(datetime(2026, 11, 4, tzinfo=UTC), config=world.config)
    october = world.invoices()
    # c1: 100 x 1.00 + 0 sms + 20 platform; c2: 50 x 1.00 + 20
    assert october == [
        ("sub_c1", "2026-10-01", "finalized", 12000,
         [("flat", "platform", 2000), ("usage", "chat", 10000), ("usage", "sms", 0)]),
        ("sub_c2", "2026-10-01", "finalized", 7000,
         [("flat", "platform", 2000), ("usage", "chat", 5000), ("usage", "sms", 0)]),
    ]  # fmt: skip
    assert world.findings("2026-10") == []

    # 1. The price that billed October, edited in place: refused, nothing stored.
    with pytest.raises(
        CatalogChangeRefused, match=r"price std/chat USD: this catalog changes"
    ) as refused:
        load_catalog_file(resolution_catalog(cat / "edit.yaml", "1.10"), config=world.config)
    assert len(refused.value.invoices) == 2
    assert world.catalog_versions() == [1]

    # 2. A version of its own from November: accepted; October stays as billed.
    load_catalog_file(resolution_catalog(cat / "v2.yaml", "1.00", "1.10"), config=world.config)
    world.ingest("november", resolutions("c1", "n", 10, nov5), "2026-11-06T00:30:00Z")
    rollup_day(nov5, config=world.config)
    closed = close_periods(datetime(2026, 12, 4, tzinfo=UTC), config=world.config)
    assert (closed.periods_closed, closed.adjustment_lines) == (2, 0)
    invoices = world.invoices()
    assert [i for i in invoices if i[1] == "2026-10-01"] == october
    assert ("sub_c1", "2026-11-01", "finalized", 3100,
            [("flat", "platform", 2000), ("usage", "chat", 1100), ("usage", "sms", 0)]
            ) in invoices  # fmt: skip
    assert world.findings("2026-10", "2026-11") == []

    # 3. An explicit re-price of January's versions (chat 1.00 -> 0.90, and sms, which
    # billed 0.00, 0.05 -> 0.04): October is corrected once, by adjustment lines on the
    # next open invoice; November (chat priced by its own version) only for sms, at 0.00.
    report = load_catalog_file(
        resolution_catalog(cat / "v3.yaml", "0.90", "1.10", sms="0.04"),
        reprice=True,
        config=world.config,
    )
    assert sorted(p.period.start.date().isoformat() for p in report.repriced) == [
        "2026-10-01",
        "2026-10-01",
        "2026-11-01",
        "2026-11-01",
    ]
    december = [i for i in world.invoices() if i[1] == "2026-12-01"]
    # c1: -100.00 (the line priced at 1.00) + 90.00 (at 0.90); the 0.00 sms line and the
    # platform fee did not change.
    assert december == [
        ("sub_c1", "2026-12-01", "draft", -1000, [("adjustment", "chat", -10000), ("adjustment", "chat", 9000)]),
        ("sub_c2", "2026-12-01", "draft", -500, [("adjustment", "chat", -5000), ("adjustment", "chat", 4500)]),
    ]  # fmt: skip
    assert world.findings("2026-10", "2026-11") == []
    # The next close finds nothing left to correct, and reconcile still agrees.
    again = close_periods(datetime(2026, 12, 4, tzinfo=UTC), config=world.config)
    assert again.adjustment_lines == 0
    assert [i for i in world.invoices() if i[1] == "2026-12-01"] == december
    assert world.findings("2026-10", "2026-11") == []
    # A late October event after the re-price: the next close sees the re-price run did
    # not see it, re-rates October at the new price and replaces the correction.
    world.ingest("late", resolutions("c1", "late", 1, oct5), "2026-11-10T00:00:00Z")
    rollup_day(oct5, config=world.config)
    late = close_periods(datetime(2026, 12, 4, tzinfo=UTC), config=world.config)
    assert late.adjustment_lines == 1
    c1_december = [i for i in world.invoices() if i[:2] == ("sub_c1", "2026-12-01")]
    # billed 100.00 - 100.00 + 90.90 = 101 x 0.90
    assert c1_december == [
        ("sub_c1", "2026-12-01", "draft", -910, [("adjustment", "chat", -10000), ("adjustment", "chat", 9090)]),
    ]  # fmt: skip
    assert world.findings("2026-10", "2026-11") == []
    # Loading the same catalog again, re-price or not, changes nothing.
    same = load_catalog_file(cat / "v3.yaml", reprice=True, config=world.config)
    assert not same.result.changed and same.adjustment_lines == 0

    # 4. A re-price while the rollup is stale: c2's late October event is ingested but not
    # rolled up yet. The re-price rates from the rollup as it is, and records what it did
    # not see, so the close after the rollup corrects October once more.
    world.ingest("late2", resolutions("c2", "c2late", 1, oct5), "2026-11-10T00:00:00Z")
    report = load_catalog_file(
        resolution_catalog(cat / "v4.yaml", "0.80", "1.10", sms="0.04"),
        reprice=True,
        config=world.config,
    )
    assert sorted(p.subscription for p in report.repriced) == ["sub_c1", "sub_c2"]
    rollup_day(oct5, config=world.config)
    close_periods(datetime(2026, 12, 4, tzinfo=UTC), config=world.config)
    # c1: 101 x 0.80 = 80.80; c2: 51 x 0.80 = 40.80 (its 51st event seen by the close).
    assert [i for i in world.invoices() if i[1] == "2026-12-01"] == [
        ("sub_c1", "2026-12-01", "draft", -1920, [("adjustment", "chat", -10000), ("adjustment", "chat", 8080)]),
        ("sub_c2", "2026-12-01", "draft", -920, [("adjustment", "chat", -5000), ("adjustment", "chat", 4080)]),
    ]  # fmt: skip
    assert world.findings("2026-10", "2026-11") == []
