"""`meterline customers sync-salesforce` end to end: the Salesforce stand-in (a CPQ org
answering two records a page, so every read pages through nextRecordsUrl) read through
simple-salesforce with the docs' CPQ mapping, into a ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from billing.models import Customer, Subscription, SubscriptionDiscount, SyncCursor
from meterline.cli.exits import ExitCode
from meterline.demo.salesforce_standin import SalesforceStandIn, define_cpq, example_org
from meterline.settings import settings
from tests.billing.conftest import Ledger
from tests.sources.conftest import CPQ_MAPPING, Org, run_cli


def ledger_state(ledger: Ledger) -> dict[str, Any]:
    """What the sync writes: customers, subscriptions, discounts and cursors."""
    with ledger.Session() as session:
        return {
            "customers": {
                c.external_id: (c.name, c.currency, c.timezone, c.stripe_customer_id)
                for c in session.scalars(select(Customer))
            },
            "subscriptions": {
                s.external_id: (s.customer.external_id, s.plan_id, s.start_date, s.end_date)
                for s in session.scalars(select(Subscription))
            },
            "discounts": sorted(
                (d.subscription.external_id, d.price_id, d.percent_off, d.valid_from, d.valid_to)
                for d in session.scalars(select(SubscriptionDiscount))
            ),
            "cursors": {
                c.object_name: (c.high_water, c.mapping_digest)
                for c in session.scalars(select(SyncCursor))
            },
        }


def test_a_sync_stores_then_changes_nothing_then_stores_the_changes(
    catalog_ledger: Ledger, org: Org
) -> None:
    acme = org.account("cus_acme", "Acme", Stripe_Customer_Id__c="cus_AcmeStripe1")
    globex = org.account("cus_globex", "Globex", CurrencyIsoCode="EUR", Billing_Timezone__c=None)
    org.account("cus_prospect", "Prospect", Type="Prospect")  # not read: accounts.where
    lonely = org.account("cus_lonely", "Lonely")  # read, but no plan subscription
    s1 = org.subscription(acme, start=date(2026, 1, 1), end=date(2026, 6, 30), discount="10")
    s2 = org.subscription(acme, start=date(2026, 7, 1))
    s3 = org.subscription(globex, product="MTR-VOLUME", start=date(2026, 2, 1))
    org.subscription(acme, product="ADDON-TRAINING")  # not a plan: subscriptions.where
    org.subscription(lonely, product="ADDON-TRAINING")

    code, out = org.sync(catalog_ledger)
    assert code == ExitCode.OK, out
    state = ledger_state(catalog_ledger)
    assert state["customers"] == {
        "cus_acme": ("Acme", "USD", "America/New_York", "cus_AcmeStripe1"),
        "cus_globex": ("Globex", "EUR", "UTC", None),
    }
    assert state["subscriptions"] == {
        # CPQ's end date is the term's last day: meterline's end is the day after.
        s1: ("cus_acme", "standard", date(2026, 1, 1), date(2026, 7, 1)),
        s2: ("cus_acme", "standard", date(2026, 7, 1), None),
        s3: ("cus_globex", "volume", date(2026, 2, 1), None),
    }
    assert state["discounts"] == [
        (s1, "fin_resolution", Decimal(10), date(2026, 1, 1), date(2026, 7, 1))
    ]
    assert set(state["cursors"]) == {"Account", "SBQQ__Subscription__c"}
    assert "every record (the first sync" in out and "2 added, 0 changed" in out, out
    # Three accounts and three plan subscriptions, two a page: each read paged.
    assert org.store.requests["query_more"] >= 2, org.store.requests

    # Nothing changed in Salesforce: nothing changes in the ledger, cursors included.
    sent = len(org.store.queries)
    code, again = org.sync(catalog_ledger)
    assert code == ExitCode.OK and ledger_state(catalog_ledger) == state, again
    # Incremental: from each object's high-water mark less the mapping's 10 minutes.
    mark = state["cursors"]["Account"][0] - timedelta(minutes=10)
    assert org.store.queries[sent].endswith(
        f"AND SystemModstamp >= {mark.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    ), org.store.queries[sent]
    assert "customers: 0 added, 0 changed, 2 unchanged" in again, again
    assert "the ledger's customers did not change" in again

    # Changes: a name, a plan, an early termination, a new subscription, a new account.
    org.store.advance(3600)
    org.store.update("Account", acme, {"Name": "Acme Corp"})
    org.store.update(
        "SBQQ__Subscription__c", s3, {"SBQQ__Product__c": org.products["MTR-STANDARD"]}
    )
    org.store.update("SBQQ__Subscription__c", s2, {"SBQQ__TerminatedDate__c": date(2026, 12, 31)})
    initech = org.account("cus_initech", "Initech")
    s4 = org.subscription(initech, start=date(2026, 11, 1), discount="5")

    code, dry = org.sync(catalog_ledger, "--dry-run")
    assert code == ExitCode.OK, dry
    assert ledger_state(catalog_ledger) == state, "a dry run stored something"
    lines = dry.splitlines()
    assert lines[1:-2] == [
        f"  customer cus_acme (Account {acme}): changed: name Acme -> Acme Corp",
        f"  customer cus_globex (Account {globex}): unchanged",
        f"  customer cus_initech (Account {initech}): added",
        f"  subscription {s1} (SBQQ__Subscription__c {s1}): unchanged",
        f"  subscription {s2} (SBQQ__Subscription__c {s2}): changed: end_date none -> 2027-01-01",
        f"  subscription {s3} (SBQQ__Subscription__c {s3}): changed: plan_id volume -> standard",
        f"  subscription {s4} (SBQQ__Subscription__c {s4}): added",
        f"  Account {lonely}: no subscription read: not a customer",
    ], dry
    assert lines[-2] == (
        "customers: 1 added, 1 changed, 1 unchanged; subscriptions: 1 added, 2 changed,"
        " 1 unchanged; 1 account(s) without a subscription"
    )
    assert lines[-1].startswith("dry run: nothing was stored; a sync would set the high-water")

    code, out = org.sync(catalog_ledger)
    assert code == ExitCode.OK, out
    after = ledger_state(catalog_ledger)
    assert after["customers"]["cus_acme"][0] == "Acme Corp"
    assert after["subscriptions"][s2][3] == date(2027, 1, 1)
    assert after["subscriptions"][s3][1] == "standard"
    assert after["subscriptions"][s4] == ("cus_initech", "standard", date(2026, 11, 1), None)
    assert len(after["discounts"]) == 2
    for name in ("Account", "SBQQ__Subscription__c"):
        assert after["cursors"][name][0] > state["cursors"][name][0]
    # Not an unchanged record in the output of a real run: only what it changed.
    assert "unchanged\n" not in out.split("customers:")[0], out


def test_bad_records_refuse_the_whole_sync_naming_record_and_field(
    catalog_ledger: Ledger, org: Org
) -> None:
    acme = org.account("cus_acme", "Acme")
    s1 = org.subscription(acme)
    assert org.sync(catalog_ledger)[0] == ExitCode.OK
    before = ledger_state(catalog_ledger)

    org.store.advance(3600)
    org.store.update("Account", acme, {"Name": "Acme Corp"})  # valid, but not stored alone
    nameless = org.account(None, "No id yet")  # type: ignore[arg-type]
    s2 = org.subscription(nameless, discount="150")
    gold = org.store.insert(
        "Product2", {"Name": "Gold", "ProductCode": "MTR-GOLD", "Family": "Meterline plan"}
    )
    s3 = org.store.insert(
        "SBQQ__Subscription__c",
        {
            "SBQQ__Account__c": acme,
            "SBQQ__Product__c": gold,
            "SBQQ__SubscriptionStartDate__c": date(2027, 1, 1),
        },
    )
    code, out = org.sync(catalog_ledger)
    assert code == ExitCode.REFUSED, out
    assert "Traceback" not in out
    assert out.splitlines() == [
        "meterline: error: salesforce: 3 problem(s) among the 5 record(s) read; nothing was"
        " stored and the high-water marks did not move: fix the records in Salesforce (or the"
        " mapping) and sync again",
        f"  Account {nameless}: Meterline_Customer_Id__c (customer_id): empty in Salesforce,"
        " and meterline needs it: fill it in, or give the field a default in the mapping",
        f"  SBQQ__Subscription__c {s2}: SBQQ__Discount__c (discounts.0.percent_off): must be"
        " above 0 and at most 100, got 150.0",
        f"  SBQQ__Subscription__c {s3}: SBQQ__Product__r.ProductCode (plan): unknown plan"
        " 'MTR-GOLD'; the catalog's plans are committed, standard, volume",
    ], out
    assert ledger_state(catalog_ledger) == before
    # The dry run refuses them the same way.
    code, dry = org.sync(catalog_ledger, "--dry-run")
    assert code == ExitCode.REFUSED and dry == out
    assert s1 in before["subscriptions"]


def test_the_login_the_since_option_and_the_scheduled_task(
    sqlite_ledger: Ledger, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = org.account("cus_acme", "Acme")
    org.subscription(acme)
    login = org.standin.login_env("sync@example.com", "pass word<&>", "TOKEN123")
    code, out = org.sync(sqlite_ledger, env=login)
    assert code == ExitCode.OK and org.store.requests["login"] == 1, out
    # --since reads from the given time: a time after every record reads none.
    code, out = org.sync(sqlite_ledger, "--since", "2026-12-01T00:00:00Z")
    assert code == ExitCode.OK and "0 Account and 0 SBQQ__Subscription__c" in out, out
    assert "the records modified since 2026-12-01T00:00:00Z" in out
    # The salesforce_sync DAG's task: skipped unconfigured, else the job's counts.
    from airflow.sdk.exceptions import AirflowSkipException

    import dags.salesforce_sync as module

    task = module.salesforce_sync().get_task("sync").python_callable  # type: ignore[attr-defined]
    for name in [n for n in os.environ if n.startswith("METERLINE_")]:
        monkeypatch.delenv(name)
    settings.cache_clear()
    with pytest.raises(AirflowSkipException):
        task()
    env = {
        **org.standin.session_env(),
        "METERLINE_LEDGER_URL": sqlite_ledger.url,
        "METERLINE_SALESFORCE_MAPPING": str(CPQ_MAPPING),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    try:
        result = task()
    finally:
        settings.cache_clear()
    assert result["customers"] == {"added": 0, "changed": 0, "unchanged": 1}, result


def test_a_sync_keeps_what_a_customers_file_gave_that_the_mapping_does_not(
    sqlite_ledger: Ledger, org: Org, tmp_path: Path
) -> None:
    """The tax profile (billing address, tax ids) and Stripe terms a customers file loaded
    for a Salesforce customer survive the next sync, which maps none of them: the sync used
    to store its rows whole and empty them, so the tax sink then parked every invoice of
    the customer for want of an address."""
    acme = org.account("cus_acme", "Acme")
    sub = org.subscription(acme, start=date(2026, 1, 1))
    assert org.sync(sqlite_ledger)[0] == ExitCode.OK
    profile = {
        "billing_address": {
            "line1": "1 Acme Way",
            "city": "New York",
            "region": "NY",
            "postal_code": "10001",
            "country": "US",
        },
        "tax_ids": [{"type": "us_ein", "value": "12-3456789"}],
        "collection_method": "send_invoice",
        "days_until_due": 15,
    }
    row = {
        "customer_id": "cus_acme",
        "name": "Acme",
        "currency": "USD",
        "timezone": "America/New_York",
        "subscription_id": sub,
        "plan": "standard",
        "billing_anchor_day": 1,
        "start": "2026-01-01",
        **profile,
    }
    (tmp_path / "profile.jsonl").write_text(json.dumps(row) + "\n")
    code, out = run_cli(
        ["customers", "load", str(tmp_path / "profile.jsonl")],
        {"METERLINE_LEDGER_URL": sqlite_ledger.url},
    )
    assert code == ExitCode.OK and "1 updated" in out, out

    org.store.advance(3600)
    org.store.update("Account", acme, {"Name": "Acme Corp"})
    code, out = org.sync(sqlite_ledger)
    assert code == ExitCode.OK, out
    assert f"  customer cus_acme (Account {acme}): changed: name Acme -> Acme Corp\n" in out, out
    with sqlite_ledger.Session() as session:
        customer = session.scalars(select(Customer)).one()
        kept = {name: getattr(customer, name) for name in profile}
    assert customer.name == "Acme Corp"
    assert kept == profile


def test_the_example_org_syncs_with_the_docs_mapping(
    sqlite_ledger: Ledger, standin: SalesforceStandIn
) -> None:
    """`python -m meterline.demo.salesforce_standin --example`'s records: what a user
    trying the sync from a shell gets (the empty org synced nothing)."""
    store = standin.reset()
    define_cpq(store)
    ids = example_org(store)
    code, out = Org(standin).sync(sqlite_ledger)
    assert code == ExitCode.OK, out
    assert "customers: 2 added" in out and "subscriptions: 2 added" in out, out
    state = ledger_state(sqlite_ledger)
    assert state["subscriptions"] == {
        ids["acme_plan"]: ("cus_acme", "standard", date(2026, 11, 1), date(2027, 11, 1)),
        ids["initech_plan"]: ("cus_initech", "volume", date(2026, 11, 15), None),
    }
    assert len(state["discounts"]) == 1
