"""A local stand-in for the part of Salesforce meterline's sync reads: the SOAP login, the
REST API's SOQL query and its paging (``nextRecordsUrl``), in the shapes simple-salesforce
sends and parses, over TLS, with Salesforce's error shapes and injectable faults.

See docs/salesforce.md ("The stand-in") for what it covers and what it does not.
"""

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


__all__ = ["CPQ_OBJECTS", "ApiError", "SalesforceStandIn", "Store", "define_cpq", "salesforce_id"]
