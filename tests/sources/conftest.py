"""Fixtures for the sources: the Salesforce stand-in (one server per module, its store
emptied for each test) on a CPQ org, and a ledger (SQLite, and PostgreSQL when
configured) holding the demo catalog."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import billing
from meterline.cli import main
from meterline.demo.salesforce_standin import SalesforceStandIn, Store, define_cpq
from meterline.settings import settings
from tests.billing.conftest import CATALOG, Ledger, ledger, ledger_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CPQ_MAPPING = ROOT / "docs" / "examples" / "salesforce-cpq.yaml"


@pytest.fixture(scope="module")
def standin() -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(page_size=2) as server:
        yield server


@pytest.fixture
def org(standin: SalesforceStandIn) -> Org:
    """The stand-in's org, emptied: a CPQ org with three plan products and an add-on."""
    store = standin.reset(page_size=2)
    define_cpq(store)
    return Org(standin)


@pytest.fixture
def catalog_ledger(ledger: Ledger) -> Ledger:  # noqa: F811
    with ledger.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    return ledger


class Org:
    """Records of a CPQ org, written the way the tests need them."""

    def __init__(self, standin: SalesforceStandIn) -> None:
        self.standin = standin
        self.store: Store = standin.store
        store = self.store
        self.products = {
            code: store.insert(
                "Product2",
                {"Name": code, "ProductCode": code, "Family": family},
            )
            for code, family in (
                ("MTR-STANDARD", "Meterline plan"),
                ("MTR-VOLUME", "Meterline plan"),
                ("MTR-COMMITTED", "Meterline plan"),
                ("ADDON-TRAINING", "Services"),
            )
        }

    def account(self, customer: str, name: str, **extra: Any) -> str:
        values = {
            "Name": name,
            "Type": "Customer",
            "CurrencyIsoCode": "USD",
            "Meterline_Customer_Id__c": customer,
            "Billing_Timezone__c": "America/New_York",
            **extra,
        }
        return self.store.insert("Account", values)

    def subscription(
        self,
        account: str,
        product: str = "MTR-STANDARD",
        start: date = date(2026, 1, 1),
        end: date | None = None,
        discount: str | None = None,
        **extra: Any,
    ) -> str:
        values = {
            "SBQQ__Account__c": account,
            "SBQQ__Product__c": self.products[product],
            "SBQQ__Quantity__c": Decimal(1),
            "SBQQ__SubscriptionStartDate__c": start,
            "SBQQ__SubscriptionEndDate__c": end,
            "SBQQ__Discount__c": Decimal(discount) if discount else None,
            **extra,
        }
        return self.store.insert("SBQQ__Subscription__c", values)

    def sync(self, into: Ledger, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """`meterline customers sync-salesforce --mapping CPQ ARGS` on the ledger
        ``into``, reading the stand-in with a new session (or ``env``'s credentials)."""
        return run_cli(
            ["customers", "sync-salesforce", "--mapping", str(CPQ_MAPPING), *args],
            {"METERLINE_LEDGER_URL": into.url, **(env or self.standin.session_env())},
        )


def run_cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """`meterline ARGS` in this process with ``env`` set, the settings read afresh."""
    settings.cache_clear()
    try:
        result = CliRunner().invoke(main, args, env=env)
    finally:
        settings.cache_clear()
    return result.exit_code, result.output


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A migrated SQLite ledger with the demo catalog (the tests of Salesforce's faults:
    the ledger's engine does not matter to them)."""
    from billing import migrate
    from billing.db import create_ledger_engine, session_factory

    url = f"sqlite:///{tmp_path}/ledger.db"
    engine = create_ledger_engine(url)
    migrate.upgrade(engine)
    found = Ledger(url, engine, session_factory(engine))
    with found.Session.begin() as session:
        billing.load_catalog(session, CATALOG)
    try:
        yield found
    finally:
        engine.dispose()
