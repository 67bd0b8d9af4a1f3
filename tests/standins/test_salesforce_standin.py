"""The Salesforce stand-in answers the SOQL it models as Salesforce would, refuses the rest
loudly, and speaks the REST API's shapes (paging, errors, sessions) over TLS."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
import requests

from meterline.demo.salesforce_standin import ApiError, SalesforceStandIn, Store, define_cpq
from meterline.demo.salesforce_standin.server import encode
from meterline.demo.salesforce_standin.store import salesforce_id


@pytest.fixture
def store() -> Store:
    store = Store(page_size=2)
    define_cpq(store)
    a = store.insert("Account", {"Name": "Acme", "Type": "Customer", "CurrencyIsoCode": "USD"})
    b = store.insert("Account", {"Name": "O'Brien", "Type": "Prospect"})
    p = store.insert("Product2", {"Name": "Std", "ProductCode": "MTR-STANDARD"})
    for account, day, discount in ((a, 1, "10"), (a, 2, None), (b, 3, "2.5")):
        store.insert(
            "SBQQ__Subscription__c",
            {
                "SBQQ__Account__c": account,
                "SBQQ__Product__c": p,
                "SBQQ__SubscriptionStartDate__c": date(2026, 1, day),
                "SBQQ__Discount__c": Decimal(discount) if discount else None,
            },
        )
    return store


def _names(store: Store, soql: str) -> list[str]:
    return [r["Name"] for r in store.query(soql)["records"]]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Type = 'customer'", ["Acme"]),  # text compares case-insensitively
        ("Name = 'O\\'Brien'", ["O'Brien"]),
        ("Type != 'Customer' OR Name IN ('Acme', 'Nobody')", ["Acme", "O'Brien"]),
        ("NOT (Type = 'Customer') AND CurrencyIsoCode = null", ["O'Brien"]),
        ("SystemModstamp >= 2026-11-01T00:00:02Z", ["O'Brien"]),
        ("SystemModstamp <= 2026-11-01T01:00:02+01:00", ["Acme", "O'Brien"]),
    ],
)
def test_where_conditions(store: Store, where: str, expected: list[str]) -> None:
    assert sorted(_names(store, f"SELECT Name FROM Account WHERE {where}")) == expected


def test_relationships_order_limit_and_the_answers_shape(store: Store) -> None:
    soql = (
        "SELECT Id, SBQQ__Account__r.Name, SBQQ__Discount__c, SBQQ__SubscriptionStartDate__c"
        " FROM SBQQ__Subscription__c WHERE SBQQ__Account__r.Type = 'Customer'"
        " AND SBQQ__SubscriptionStartDate__c >= 2026-01-01 ORDER BY SBQQ__SubscriptionStartDate__c"
        " DESC LIMIT 5"
    )
    first = store.query(soql)
    assert (first["totalSize"], first["done"]) == (2, True) and "nextRecordsUrl" not in first
    record = first["records"][0]
    assert record["SBQQ__SubscriptionStartDate__c"] == "2026-01-02"
    assert record["SBQQ__Account__r"]["Name"] == "Acme"
    assert record["SBQQ__Account__r"]["attributes"]["type"] == "Account"
    assert record["attributes"]["url"].endswith(f"/sobjects/SBQQ__Subscription__c/{record['Id']}")
    assert encode(first["records"][1]["SBQQ__Discount__c"]) == "10.0"
    every = store.query("SELECT Id, SystemModstamp FROM SBQQ__Subscription__c")
    assert (every["totalSize"], every["done"], len(every["records"])) == (3, False, 2)
    assert every["records"][0]["SystemModstamp"].endswith(".000+0000")
    locator = every["nextRecordsUrl"].rsplit("/", 1)[1]
    rest = store.query_more(locator)
    assert rest["done"] and len(rest["records"]) == 1
    with pytest.raises(ApiError) as gone:
        store.query_more(locator)
    assert gone.value.code == "INVALID_QUERY_LOCATOR"


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        (
            "SELECT Foo__c FROM Account",
            "INVALID_FIELD",
            "No such column 'Foo__c' on entity 'Account'",
        ),
        (
            "SELECT Nope__r.Name FROM Account",
            "INVALID_FIELD",
            "Didn't understand relationship 'Nope__r'",
        ),
        (
            "SELECT Id FROM Opportunity",
            "INVALID_TYPE",
            "sObject type 'Opportunity' is not supported",
        ),
        ("SELECT Id FROM Account WHERE Name LIKE 'A%'", "MALFORMED_QUERY", "does not model"),
        ("SELECT COUNT() FROM Account", "MALFORMED_QUERY", "does not model"),
        ("SELECT Id FROM Account WHERE CreatedDate = TODAY", "MALFORMED_QUERY", "does not model"),
        (
            "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contract)",
            "MALFORMED_QUERY",
            "does not model",
        ),
        ("SELECT Id FROM Account GROUP BY Type", "MALFORMED_QUERY", "does not model"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD", "does not match"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected end"),
        ("SELECT Id, FROM Account", "MALFORMED_QUERY", "unexpected token"),
    ],
)
def test_what_it_refuses(store: Store, soql: str, code: str, fragment: str) -> None:
    with pytest.raises(ApiError) as refused:
        store.query(soql)
    assert (refused.value.status, refused.value.code) == (400, code)
    assert fragment in refused.value.message


def test_ids_have_salesforces_suffix() -> None:
    # An 18-character id ends with the case of its 15 characters, 5 at a time.
    assert salesforce_id("001", 1) == "0015e0000000001AAA"
    assert salesforce_id("a0B", 3)[15:] == "EAA"  # the B of a0B: bit 2 of the first 5


@pytest.fixture(scope="module")
def sf() -> Iterator[SalesforceStandIn]:
    with SalesforceStandIn(page_size=2) as server:
        define_cpq(server.store)
        for n in range(5):
            server.store.insert("Account", {"Name": f"A{n}"})
        yield server


def test_the_rest_api_over_tls(sf: SalesforceStandIn) -> None:
    # Its certificate per request: REQUESTS_CA_BUNDLE, when set, overrides a session's.
    session = requests.Session()
    ca = str(sf.ca_file)
    url = f"{sf.base_url}/services/data/v59.0/query"
    q = {"q": "SELECT Name FROM Account"}
    denied = session.get(url, params=q, timeout=5, verify=ca)
    assert denied.status_code == 401
    assert denied.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    auth = {"Authorization": f"Bearer {sf.store.new_session()}"}
    page = session.get(url, params=q, headers=auth, timeout=5, verify=ca).json()
    assert (page["totalSize"], len(page["records"])) == (5, 2)
    more = session.get(
        f"{sf.base_url}{page['nextRecordsUrl']}", headers=auth, timeout=5, verify=ca
    ).json()
    assert len(more["records"]) == 2 and not more["done"]
    missing = session.get(
        f"{sf.base_url}/services/data/v59.0/sobjects/Account", headers=auth, timeout=5, verify=ca
    )
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    # Without its certificate, a client refuses the stand-in (TLS is verified).
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, params=q, timeout=5, verify=True)
