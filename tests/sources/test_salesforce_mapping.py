"""The Salesforce sync's pure parts: the mapping file, the SOQL it builds, records to
customers-file rows and their problems back to records, and which records a sync reads
(against a fake reader)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.customers import Problem
from billing.customers.read import parse_records
from meterline.sources.salesforce import soql
from meterline.sources.salesforce.changes import read_changes
from meterline.sources.salesforce.errors import MappingInvalid
from meterline.sources.salesforce.mapping import FieldSpec, parse_mapping, read_mapping
from meterline.sources.salesforce.records import build_rows, keep_stored, parse_stamp, translate

ROOT = Path(__file__).resolve().parents[2]
CPQ = read_mapping(ROOT / "docs" / "examples" / "salesforce-cpq.yaml")

MINIMAL: dict[str, Any] = {
    "accounts": {"fields": {"customer_id": "Id", "name": "Name", "currency": "CurrencyIsoCode"}},
    "subscriptions": {
        "object": "Contract",
        "account": "AccountId",
        "fields": {
            "subscription_id": "Id",
            "timezone": {"value": "UTC"},
            "plan": "Plan__c",
            "billing_anchor_day": {"value": 1},
            "start": "StartDate",
            "end": {"field": "EndDate", "inclusive": True},
        },
    },
}


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(MappingInvalid) as caught:
        parse_mapping(data, "m.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["accounts"]["fields"].update(custmer_id="X"),
            "accounts.fields: 'custmer_id' is not a meterline field; did you mean 'customer_id'?",
        ),
        (lambda d: d["subscriptions"]["fields"].pop("start"), "start not mapped"),
        (lambda d: d["accounts"]["fields"].update(plan="P"), "plan is mapped on both"),
        (
            lambda d: d["subscriptions"]["fields"].update(plan="Plan__c; DELETE"),
            "is not a Salesforce field path",
        ),
        (lambda d: d["subscriptions"].update(object="Contract WHERE"), "not a Salesforce API name"),
        (lambda d: d["subscriptions"].pop("account"), "subscriptions.account: required"),
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (
            lambda d: d["subscriptions"]["fields"].update(plan={"field": "A", "value": "b"}),
            "give exactly one of field, fields and value",
        ),
        (
            lambda d: d["subscriptions"]["fields"].update(plan={"field": "A", "map": {1: "x"}}),
            "key 1 must be text",
        ),
        (
            lambda d: d["subscriptions"].update(
                discounts=[{"price": {"value": "p"}, "valid_from": "StartDate"}]
            ),
            "give exactly one of percent_off and amount_off",
        ),
        (lambda d: d["subscriptions"].update(object="Account"), "both read Account"),
    ],
    ids=range(11),
)
def test_a_bad_mapping_names_the_key(change: Any, expected: str) -> None:
    import copy

    data = copy.deepcopy(MINIMAL)
    change(data)
    problems = _problems(data)
    assert any(expected in p for p in problems), problems


def test_a_mapping_file_that_is_not_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("accounts: [\n")
    with pytest.raises(MappingInvalid, match=r"m.yaml: 1 problem\(s\).*\n  line 2"):
        read_mapping(path)


def test_a_field_spec_reads_coalesces_maps_and_defaults() -> None:
    record = {"A": None, "B": "2026-12-31", "P": {"attributes": {}, "Code": "X-1"}, "N": None}
    assert FieldSpec.model_validate({"fields": ["A", "B"], "inclusive": True}).apply(record) == (
        "2027-01-01"
    )
    assert (
        FieldSpec.model_validate({"field": "P.Code", "map": {"X-1": "pro"}}).apply(record) == "pro"
    )
    assert FieldSpec.model_validate("P.Code").apply(record) == "X-1"
    assert FieldSpec.model_validate({"field": "N.Code", "default": "UTC"}).apply(record) == "UTC"
    assert FieldSpec.model_validate({"value": 1}).apply(record) == 1
    # A value that is not a date passes unchanged, for the row's own check to refuse.
    assert FieldSpec.model_validate({"field": "P.Code", "inclusive": True}).apply(record) == "X-1"


def test_the_digest_follows_what_is_read_not_the_lookback() -> None:
    import copy

    base = parse_mapping(MINIMAL, "m")
    longer = copy.deepcopy(MINIMAL) | {"lookback_minutes": 60}
    other = copy.deepcopy(MINIMAL)
    other["subscriptions"]["where"] = "Status = 'Activated'"
    assert parse_mapping(longer, "m").digest == base.digest
    assert parse_mapping(other, "m").digest != base.digest


def test_the_queries_are_exact() -> None:
    since = datetime(2026, 11, 4, 10, 15, 30, 999_000, tzinfo=UTC)
    assert soql.modified_since(CPQ.accounts, since) == (
        "SELECT Id, SystemModstamp, Meterline_Customer_Id__c, Name, CurrencyIsoCode,"
        " Billing_Timezone__c, Stripe_Customer_Id__c FROM Account WHERE (Type = 'Customer')"
        " AND SystemModstamp >= 2026-11-04T10:15:30Z"
    )
    assert soql.modified_since(CPQ.subscriptions, None) == (
        "SELECT Id, SystemModstamp, SBQQ__Account__c, SBQQ__Product__r.ProductCode,"
        " Billing_Anchor_Day__c, SBQQ__SubscriptionStartDate__c, SBQQ__TerminatedDate__c,"
        " SBQQ__SubscriptionEndDate__c, SBQQ__Discount__c FROM SBQQ__Subscription__c WHERE"
        " (SBQQ__Product__r.Family = 'Meterline plan')"
    )
    queries = soql.having(CPQ.accounts, "Id", [f"001{i:015d}" for i in range(301)] + ["it's\\"])
    assert len(queries) == 2 and queries[1].endswith(" IN ('001000000000000300', 'it\\'s\\\\')")
    assert all(len(q) < 16_000 for q in queries)


def _sub(
    sid: str, account: str | None, stamp: str = "2026-11-04T10:00:00.000+0000", **kw: Any
) -> dict[str, Any]:
    return {
        "Id": sid,
        "SystemModstamp": stamp,
        "SBQQ__Account__c": account,
        "SBQQ__Product__r": {"ProductCode": kw.pop("code", "MTR-STANDARD")},
        "SBQQ__SubscriptionStartDate__c": kw.pop("start", "2026-01-01"),
        **kw,
    }


def _account(
    aid: str, customer: str | None, stamp: str = "2026-11-04T09:00:00.000+0000"
) -> dict[str, Any]:
    return {
        "Id": aid,
        "SystemModstamp": stamp,
        "Name": f"Account {aid}",
        "CurrencyIsoCode": "USD",
        "Meterline_Customer_Id__c": customer,
        "Billing_Timezone__c": None,
    }


def test_rows_from_records_and_their_problems_back_to_records() -> None:
    accounts = {"001A": _account("001A", "cus_a"), "001B": _account("001B", None)}
    subs = [
        _sub("a0B2", "001A", start="2026-03-01", SBQQ__Discount__c=Decimal("10.0")),
        _sub("a0B1", "001A", SBQQ__SubscriptionEndDate__c="2026-06-30"),
        _sub("a0B3", "001B"),
        _sub("a0B4", "001B"),
        _sub("a0B5", "001Z"),
        _sub("a0B6", None),
    ]
    rows = build_rows(CPQ, accounts, subs)
    # Sorted by Id, numbered from 1; the two without a readable account are problems.
    assert [o.subscription.id for o in rows.origins.values()] == ["a0B1", "a0B2", "a0B3", "a0B4"]
    first = dict(rows.records)[1]
    assert first == {
        "customer_id": "cus_a",
        "name": "Account 001A",
        "currency": "USD",
        "timezone": "UTC",
        "subscription_id": "a0B1",
        "plan": "standard",
        "billing_anchor_day": 1,
        "start": "2026-01-01",
        "end": "2026-07-01",
    }
    assert dict(rows.records)[2]["discounts"] == [
        {"price": "fin_resolution", "percent_off": Decimal("10.0"), "valid_from": "2026-03-01"}
    ]
    parsed = parse_records(rows.records)
    overlap = Problem(2, "start", "subscription a0B2 overlaps subscription a0B1 (line 1: ...)")
    lines = translate([*parsed.problems, overlap], rows, CPQ)
    assert lines == [
        # The account's problem once, though both of its subscriptions' rows have it.
        "Account 001B: Meterline_Customer_Id__c (customer_id): empty in Salesforce, and"
        " meterline needs it: fill it in, or give the field a default in the mapping",
        "SBQQ__Subscription__c a0B2: SBQQ__SubscriptionStartDate__c (start): subscription a0B2"
        " overlaps subscription a0B1 (SBQQ__Subscription__c a0B1: ...)",
        "SBQQ__Subscription__c a0B5: SBQQ__Account__c (its account): Account 001Z is not among"
        " the accounts the mapping reads (accounts.where: Type = 'Customer'): make the account"
        " match, or leave the subscription out with subscriptions.where",
        "SBQQ__Subscription__c a0B6: SBQQ__Account__c (its account): empty; a subscription"
        " belongs to an account: fill it in Salesforce",
    ]


def test_a_stored_customer_keeps_the_fields_the_mapping_does_not_give() -> None:
    """The CPQ mapping maps stripe_customer_id (empty in Salesforce: emptied), not the
    address, the tax ids or the collection terms (the ledger's kept); a customer the
    ledger does not hold gets nothing."""
    accounts = {"001A": _account("001A", "cus_a"), "001B": _account("001B", "cus_b")}
    rows = build_rows(CPQ, accounts, [_sub("a0B1", "001A"), _sub("a0B2", "001B")])
    address = {"country": "IE", "city": "Dublin"}
    stored = {
        "cus_a": {
            "name": "Old name",
            "stripe_customer_id": "cus_Old",
            "billing_address": address,
            "tax_ids": [{"type": "eu_vat", "value": "IE1234567T"}],
            "collection_method": "send_invoice",
            "days_until_due": 15,
        }
    }
    keep_stored(rows, CPQ, stored)
    first, second = dict(rows.records)[1], dict(rows.records)[2]
    assert first["name"] == "Account 001A" and "stripe_customer_id" not in first
    assert first["billing_address"] == address and first["days_until_due"] == 15
    assert first["tax_ids"] == stored["cus_a"]["tax_ids"]
    assert first["collection_method"] == "send_invoice"
    assert "billing_address" not in second
    assert not parse_records(rows.records).problems


def test_a_discount_problem_names_the_mappings_discount() -> None:
    rows = build_rows(
        CPQ,
        {"001A": _account("001A", "cus_a")},
        [_sub("a0B1", "001A", SBQQ__Discount__c=Decimal("150.0"))],
    )
    parsed = parse_records(rows.records)
    assert translate(parsed.problems, rows, CPQ) == [
        "SBQQ__Subscription__c a0B1: SBQQ__Discount__c (discounts.0.percent_off): must be above"
        " 0 and at most 100, got 150.0"
    ]


def test_two_accounts_are_never_one_customer() -> None:
    accounts = {"001A": _account("001A", "cus_a"), "001B": _account("001B", "cus_a")}
    subs = [_sub("a0B1", "001A"), _sub("a0B2", "001B"), _sub("a0B3", "001B", start="2027-01-01")]
    assert translate([], build_rows(CPQ, accounts, subs), CPQ) == [
        "Account 001B: Meterline_Customer_Id__c (customer_id): 'cus_a' is also Account 001A's;"
        " one customer is one account: give each account its own id"
    ]


class FakeReader:
    """Answers each query by the object it reads and the ids its IN list names."""

    def __init__(self, records: dict[str, list[dict[str, Any]]]) -> None:
        self.records = records
        self.queries: list[str] = []

    def query(self, text: str, what: str) -> list[dict[str, Any]]:
        self.queries.append(text)
        found = self.records[what]
        if " IN (" in text:
            field, ids = text.rsplit(" AND ", 1)[1].split(" IN (")
            wanted = {i.strip("' )") for i in ids.split(",")}
            return [r for r in found if str(r.get(field.strip())) in wanted]
        if ">=" in text:
            since = parse_stamp(text.rsplit(">= ", 1)[1].replace("Z", ".000+0000"))
            return [r for r in found if parse_stamp(r["SystemModstamp"]) >= since]
        return found


def test_an_incremental_read_completes_its_rows() -> None:
    old, new = "2026-11-01T00:00:00.000+0000", "2026-11-05T00:00:00.000+0000"
    reader = FakeReader(
        {
            "Account": [
                _account("001A", "a", new),
                _account("001B", "b", old),
                _account("001C", "c", old),
            ],
            "SBQQ__Subscription__c": [
                _sub("a0B1", "001A", old),  # an account that changed: its row too
                _sub("a0B2", "001B", new),  # a subscription that changed: its account too
                _sub("a0B3", "001C", old),  # neither
            ],
        }
    )
    since = datetime(2026, 11, 3, tzinfo=UTC)
    changes = read_changes(reader, CPQ, since, since)
    assert sorted(changes.accounts) == ["001A", "001B"]
    assert sorted(changes.subscriptions) == ["a0B1", "a0B2"]
    assert changes.modified == (1, 1)
    # The marks are step 1's stamps, never those the completing reads found.
    assert changes.accounts_high_water == changes.subscriptions_high_water == parse_stamp(new)
    assert len(reader.queries) == 4
    everything = read_changes(reader, CPQ, None, None)
    assert len(everything.accounts) == 3 and len(everything.subscriptions) == 3
    assert len(reader.queries) == 6


def test_a_stamp_is_read_in_every_shape_salesforce_writes() -> None:
    expected = datetime(2026, 11, 4, 9, 15, tzinfo=UTC)
    for text in (
        "2026-11-04T10:15:00.000+0100",
        "2026-11-04T09:15:00Z",
        "2026-11-04T09:15:00.000+00:00",
    ):
        assert parse_stamp(text) == expected
    with pytest.raises(ValueError, match="not a Salesforce dateTime"):
        parse_stamp("2026-11-04")
