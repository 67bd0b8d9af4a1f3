"""A local stand-in for the part of Salesforce meterline's sync reads: the SOAP login, the
REST API's SOQL query and its paging (``nextRecordsUrl``), in the shapes simple-salesforce
sends and parses, over TLS, with Salesforce's error shapes and injectable faults.

See docs/salesforce.md ("The stand-in") for what it covers and what it does not.
"""

from datetime import date
from decimal import Decimal

from .server import SalesforceStandIn
from .store import ApiError, Store, salesforce_id

#: A Salesforce CPQ org's objects as far as docs/examples/salesforce-cpq.yaml reads
#: them: accounts (with the custom fields the example maps), products, and CPQ
#: subscriptions (SBQQ__Subscription__c) with their account and product lookups.
CPQ_OBJECTS: dict[str, dict[str, str]] = {
    "Account": {
        "Name": "string",
        "Type": "string",
        "CurrencyIsoCode": "string",
        "Meterline_Customer_Id__c": "string",
        "Billing_Timezone__c": "string",
        "Stripe_Customer_Id__c": "string",
    },
    "Product2": {"Name": "string", "ProductCode": "string", "Family": "string"},
    "Contract": {"AccountId": "reference:Account", "Status": "string"},
    "SBQQ__Subscription__c": {
        "SBQQ__Account__c": "reference:Account",
        "SBQQ__Contract__c": "reference:Contract",
        "SBQQ__Product__c": "reference:Product2",
        "SBQQ__Quantity__c": "number",
        "SBQQ__SubscriptionStartDate__c": "date",
        "SBQQ__SubscriptionEndDate__c": "date",
        "SBQQ__TerminatedDate__c": "date",
        "SBQQ__Discount__c": "number",
        "Billing_Anchor_Day__c": "number",
    },
}


def define_cpq(store: Store) -> None:
    """Define CPQ_OBJECTS in ``store``."""
    for name, fields in CPQ_OBJECTS.items():
        store.define(name, fields)


def example_org(store: Store) -> dict[str, str]:
    """Fill a CPQ org (``define_cpq``) with a few records that
    docs/examples/salesforce-cpq.yaml syncs into the demo catalog: two customer accounts
    with a plan subscription each (Acme: standard, 2026-11-01 to 2027-10-31, 10% off;
    Initech: volume in EUR from 2026-11-15, anchor day 15), an add-on line and a prospect
    the mapping leaves out. Returns the records' Ids by name (acme, initech, ...)."""
    ids = {
        code: store.insert("Product2", {"Name": code, "ProductCode": code, "Family": family})
        for code, family in (
            ("MTR-STANDARD", "Meterline plan"),
            ("MTR-VOLUME", "Meterline plan"),
            ("MTR-COMMITTED", "Meterline plan"),
            ("ADDON-TRAINING", "Services"),
        )
    }
    account = {"Type": "Customer", "CurrencyIsoCode": "USD"}
    ids["acme"] = store.insert(
        "Account",
        {
            **account,
            "Name": "Acme",
            "Meterline_Customer_Id__c": "cus_acme",
            "Billing_Timezone__c": "America/New_York",
        },
    )
    ids["initech"] = store.insert(
        "Account",
        {
            **account,
            "Name": "Initech",
            "CurrencyIsoCode": "EUR",
            "Meterline_Customer_Id__c": "cus_initech",
            "Billing_Timezone__c": "Europe/Dublin",
        },
    )
    ids["prospect"] = store.insert("Account", {"Name": "Globex", "Type": "Prospect"})
    line = {"SBQQ__Quantity__c": Decimal(1)}
    ids["acme_plan"] = store.insert(
        "SBQQ__Subscription__c",
        {
            **line,
            "SBQQ__Account__c": ids["acme"],
            "SBQQ__Product__c": ids["MTR-STANDARD"],
            "SBQQ__SubscriptionStartDate__c": date(2026, 11, 1),
            "SBQQ__SubscriptionEndDate__c": date(2027, 10, 31),
            "SBQQ__Discount__c": Decimal(10),
        },
    )
    ids["acme_addon"] = store.insert(
        "SBQQ__Subscription__c",
        {
            **line,
            "SBQQ__Account__c": ids["acme"],
            "SBQQ__Product__c": ids["ADDON-TRAINING"],
            "SBQQ__SubscriptionStartDate__c": date(2026, 11, 1),
        },
    )
    ids["initech_plan"] = store.insert(
        "SBQQ__Subscription__c",
        {
            **line,
            "SBQQ__Account__c": ids["initech"],
            "SBQQ__Product__c": ids["MTR-VOLUME"],
            "SBQQ__SubscriptionStartDate__c": date(2026, 11, 15),
            "Billing_Anchor_Day__c": Decimal(15),
        },
    )
    return ids


__all__ = [
    "CPQ_OBJECTS",
    "ApiError",
    "SalesforceStandIn",
    "Store",
    "define_cpq",
    "example_org",
    "salesforce_id",
]
