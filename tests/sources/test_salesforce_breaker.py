"""Bad input against `meterline customers sync-salesforce` (issue 19 part 2): malformed
mappings (types, unknown keys, constants that cannot be one value, paths and where
conditions that cannot go into a query), query results that are not Salesforce's
(pages that loop or lie, records without Ids), records of the wrong types, decimals
beyond what rating can hold, duplicate ids, a modification stamp that is not one, and
credentials given by halves or blank.

Each case ends in one line saying what is wrong and what to do, with the README's exit
code (2: change something first; 4: run again), nothing stored, no secret printed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing import yamlio
from billing.customers import parse_records
from meterline.cli.exits import ExitCode
from meterline.settings import load_settings
from meterline.sources.salesforce.changes import read_changes
from meterline.sources.salesforce.client import (
    SalesforceConfig,
    SalesforceReader,
    salesforce_config,
)
from meterline.sources.salesforce.errors import (
    MappingInvalid,
    SalesforceNotConfigured,
    SalesforceRefused,
    SalesforceUnavailable,
)
from meterline.sources.salesforce.mapping import parse_mapping, read_mapping
from meterline.sources.salesforce.records import build_rows, translate
from tests.billing.conftest import Ledger
from tests.sources.conftest import CPQ_MAPPING, Org, run_cli
from tests.sources.test_salesforce_sync import ledger_state

CPQ: dict[str, Any] = yamlio.load(CPQ_MAPPING.read_text())


def changed(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(CPQ)
    change(data)
    return data


def fields(data: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = data["subscriptions"]["fields"]
    return found


# -- the mapping ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            changed(lambda d: fields(d).update(plan={"field": "X", "type": "date"})),
            "subscriptions.fields.plan.type: unknown key",
        ),
        (
            changed(lambda d: fields(d).update(end={"field": "X", "inclusive": "yes"})),
            "subscriptions.fields.end.inclusive: must be true or false, not the text 'yes'",
        ),
        # A constant is meterline's value as written: inclusive was silently ignored.
        (
            changed(lambda d: fields(d).update(end={"value": "2026-12-31", "inclusive": True})),
            "subscriptions.fields.end: inclusive does not apply to a value",
        ),
        (
            changed(lambda d: fields(d).update(plan={"value": "x", "map": {"x": "standard"}})),
            "subscriptions.fields.plan: map does not apply to a value",
        ),
        (
            changed(lambda d: fields(d).update(plan={"value": {"a": 1}})),
            "subscriptions.fields.plan.value: must be one text, number, true or false",
        ),
        (
            changed(
                lambda d: d["accounts"]["fields"].update(timezone={"field": "T", "default": []})
            ),
            "accounts.fields.timezone.default: must be one text, number, true or false",
        ),
        (
            changed(lambda d: fields(d).update(plan={"field": "P", "map": {"A": ["x"]}})),
            "subscriptions.fields.plan.map: the value of 'A' must be one text",
        ),
        (changed(lambda d: fields(d).update(plan="a" * 100_000)), "is not a Salesforce field"),
        (changed(lambda d: fields(d).update(plan="A.B.C.D.E.F")), "up to five relationships"),
        (
            changed(lambda d: d["subscriptions"].update(object=5)),
            "subscriptions.object: must be text (a Salesforce API name or SOQL), not the number 5",
        ),
        (
            changed(lambda d: d["subscriptions"].update(fields=["Id"])),
            "subscriptions.fields: must be an object of keys and values, not a list",
        ),
        (
            changed(lambda d: d["subscriptions"].update(discounts=None)),
            "subscriptions.discounts: must be a list, not empty (null)",
        ),
        (
            changed(lambda d: d["subscriptions"].update(discounts=["x"])),
            "subscriptions.discounts.0: must be an object of keys and values, not the text 'x'",
        ),
        (
            changed(lambda d: d.update(accounts=None)),
            "accounts: must be an object of keys and values, not empty (null)",
        ),
        # A where that closes its own parenthesis reads every record on every sync.
        (
            changed(lambda d: d["subscriptions"].update(where="Id != null) OR (Id != null")),
            "subscriptions.where: has parentheses that do not balance",
        ),
        (
            changed(lambda d: d["accounts"].update(where="Name = 'it''s")),
            "accounts.where: has a string that is not closed",
        ),
        (
            changed(lambda d: d["accounts"].update(where="Type = 'a'\x00")),
            "accounts.where: contains the character U+0000",
        ),
        (
            changed(lambda d: d["accounts"].update(where="Name != 'x' " * 400)),
            "accounts.where: has 4,800 characters; at most 4,000",
        ),
        (
            changed(lambda d: d.update(lookback_minutes=True)),
            "lookback_minutes: must be a whole number of minutes from 0 to 1440, not the boolean",
        ),
        (
            changed(lambda d: d.update(lookback_minutes="10")),
            "lookback_minutes: must be a whole number of minutes from 0 to 1440, not the text",
        ),
        (changed(lambda d: d.update(lookback_minutes=10**100)), "not the number 1000000000"),
    ],
)
def test_a_malformed_mapping_names_the_key_and_what_it_must_be(
    data: dict[str, Any], expected: str
) -> None:
    with pytest.raises(MappingInvalid) as refused:
        parse_mapping(data, "m.yaml")
    problems = refused.value.problems
    assert any(expected in p for p in problems), problems
    assert all("Input should" not in p and "instance of" not in p for p in problems)
    assert all(len(p) < 300 for p in problems)


def test_a_where_with_parentheses_and_quotes_that_balance_passes() -> None:
    data = changed(
        lambda d: d["accounts"].update(where="(Name = 'a(b' OR Name = 'it\\'s)') AND Type != null")
    )
    assert parse_mapping(data, "m.yaml").accounts.where is not None
    assert parse_mapping(changed(lambda d: d["accounts"].update(where="A = 1\n AND B = 2")), "m")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x [*x]\n", "anchors and aliases are refused"),
        ("accounts: {}\naccounts: {}\n", "key 'accounts' appears twice"),
        ("[" * 100_000, "nested too deeply"),
        ("x: !!binary aGVsbG8=\n", "the YAML tag !!binary is not accepted"),
        ("", "the file must be a YAML object with accounts and subscriptions"),
    ],
)
def test_a_mapping_file_that_is_bad_yaml_is_one_problem(
    text: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MappingInvalid) as refused:
        read_mapping(path)
    assert len(refused.value.problems) == 1 and expected in refused.value.problems[0]


# -- what Salesforce answers ----------------------------------------------------------

MAPPING = parse_mapping(CPQ, "cpq")
ACCOUNT = {"Id": "0015e0000000001AAA", "SystemModstamp": "2026-11-01T00:00:00.000+0000"}


class FakeSalesforce:
    """simple-salesforce's query and query_more, answering what a test gives."""

    def __init__(self, first: Any, more: Callable[[str], Any]) -> None:
        self.first, self.more, self.pages = first, more, 0

    def query(self, soql: str) -> Any:
        return self.first

    def query_more(self, url: str, identifier_is_url: bool = False) -> Any:
        self.pages += 1
        assert self.pages < 20, "the reader would page forever"
        return self.more(url)


def reader(first: Any, more: Callable[[str], Any] | None = None) -> SalesforceReader:
    found = object.__new__(SalesforceReader)
    found.config = SalesforceConfig("59.0", 1.0, "https://login.salesforce.com", "u")
    found.sf = FakeSalesforce(first, more or (lambda url: {"done": True, "records": []}))
    found.requests = 0
    return found


NEXT = "/services/data/v59.0/query/01gD0000002HU6KIAW-2000"


@pytest.mark.parametrize(
    ("first", "more", "expected"),
    [
        # A cursor that leads back to itself: the read never ended.
        (
            {"done": False, "records": [ACCOUNT], "nextRecordsUrl": NEXT},
            lambda url: {"done": False, "records": [], "nextRecordsUrl": NEXT},
            f"nextRecordsUrl {NEXT} was given twice",
        ),
        (
            {"done": False, "records": [ACCOUNT]},
            None,
            "a page that is not the last has no nextRecordsUrl",
        ),
        # The SDK appends it to https://INSTANCE: '@host/...' would send the session there.
        (
            {"done": False, "records": [], "nextRecordsUrl": "@evil.example/x"},
            None,
            "nextRecordsUrl '@evil.example/x' is not a query locator path",
        ),
        # 'false' is true in Python: the read stopped after one page, silently.
        ({"done": "false", "records": [ACCOUNT]}, None, "done is 'false', not true or false"),
        ({"done": True, "records": None}, None, "records is NoneType, not a list"),
        ({"done": True, "records": {"a": 1}}, None, "records is dict, not a list"),
        ({"done": True, "records": ["x"]}, None, "records[0] is str, not a record"),
        ({"done": True, "records": [{"Id": None}]}, None, "records[0] has no Id of a record"),
        ({"done": True, "records": [{"Name": "x"}]}, None, "records[0] has no Id of a record"),
        ([1, 2], None, "the answer is a JSON list, not an object"),
    ],
)
def test_a_query_result_that_is_not_salesforces_is_unavailable_not_a_crash(
    first: Any, more: Callable[[str], Any] | None, expected: str
) -> None:
    with pytest.raises(SalesforceUnavailable) as unavailable:
        read_changes(reader(first, more), MAPPING, None, None)
    text = str(unavailable.value)
    assert expected in text and text.endswith("nothing was stored: run the sync again")


def test_empty_pages_are_followed_and_a_record_twice_counts_once() -> None:
    pages = {
        NEXT: {"done": False, "records": [], "nextRecordsUrl": NEXT + "0"},
        NEXT + "0": {"done": True, "records": [ACCOUNT]},
    }
    first = {"done": False, "records": [ACCOUNT], "nextRecordsUrl": NEXT}
    found = reader(first, pages.__getitem__)
    changes = read_changes(found, MAPPING, None, None)
    assert list(changes.accounts) == [ACCOUNT["Id"]] and changes.modified[0] == 1
    assert found.requests == 6  # each of the two queries: three pages


@pytest.mark.parametrize("stamp", ["2026-11-01", None, "yesterday"])
def test_a_modification_stamp_that_is_not_a_datetime_is_the_mappings_problem(
    stamp: Any,
) -> None:
    first = {"done": True, "records": [{**ACCOUNT, "SystemModstamp": stamp}]}
    with pytest.raises(SalesforceRefused) as refused:
        read_changes(reader(first), MAPPING, None, None)
    text = str(refused.value)
    assert text.startswith("accounts.modified: record 0015e0000000001AAA: SystemModstamp: ")
    assert "use SystemModstamp or LastModifiedDate" in text


def test_an_account_lookup_that_is_not_an_id_is_the_subscriptions_problem() -> None:
    sub = {
        "Id": "a0A5e0000000001AAA",
        "SBQQ__Account__c": {"attributes": {"type": "Account"}, "Id": "0015e0000000001AAA"},
    }
    rows = build_rows(MAPPING, {}, [sub])
    assert rows.problems == [
        "SBQQ__Subscription__c a0A5e0000000001AAA: SBQQ__Account__c (its account): a record,"
        " not the Id of an account: map subscriptions.account to the lookup field that holds"
        " it (SBQQ__Account__c, AccountId)"
    ]


@pytest.mark.parametrize("value", [{"street": "1 Main St"}, ["x"]])
def test_a_customer_id_that_is_no_text_is_the_accounts_problem_not_a_crash(value: Any) -> None:
    account = {"Id": "0015e0000000001AAA", "Meterline_Customer_Id__c": value, "Name": "A"}
    sub = {"Id": "a0A5e0000000001AAA", "SBQQ__Account__c": account["Id"]}
    rows = build_rows(MAPPING, {account["Id"]: account}, [sub, {**sub, "Id": "a0A2"}])
    assert not rows.problems and len(rows.records) == 2  # was TypeError: unhashable
    parsed = parse_records(rows.records)
    problems = translate(parsed.problems, rows, MAPPING)
    assert any(
        p.startswith("Account 0015e0000000001AAA: Meterline_Customer_Id__c (customer_id): must be")
        for p in problems
    ), problems


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-02-30T00:00:00Z",
        "2026-11-04T25:00:00Z",
        "2026-11-04T10:15:00.000+2400",
        "9999-12-31T23:59:59.000-1400",  # was OverflowError
    ],
)
def test_a_stamp_that_is_no_instant_is_refused_as_the_mappings_problem(stamp: str) -> None:
    first = {"done": True, "records": [{**ACCOUNT, "SystemModstamp": stamp}]}
    with pytest.raises(SalesforceRefused, match="is not a Salesforce dateTime"):
        read_changes(reader(first), MAPPING, None, None)


# -- records through the customers file's rules ---------------------------------------

ROW = {
    "customer_id": "c1",
    "name": "A",
    "currency": "USD",
    "timezone": "UTC",
    "subscription_id": "s1",
    "plan": "standard",
    "billing_anchor_day": 1,
    "start": "2026-01-01",
}


@pytest.mark.parametrize(
    ("discount", "expected"),
    [
        # Rating multiplies in a 60-digit exact context: beyond, a close would fail.
        ({"percent_off": Decimal("12.3456789012345678901")}, "has 19 decimal places; at most 18"),
        ({"percent_off": Decimal("1e-400")}, "has 400 decimal places; at most 18"),
        # Was rounded to 100 when compared: 'nothing changed'.
        ({"percent_off": Decimal("99." + "9" * 500)}, "has 500 decimal places; at most 18"),
        ({"percent_off": Decimal("NaN")}, "percent_off: Input should be a finite number"),
        ({"amount_off": Decimal("1e30")}, "1E+30 USD is beyond the ledger's range"),
        # Was an internal error (decimal.Overflow while scaling).
        ({"amount_off": Decimal("1e999999")}, "1E+999999 USD is beyond the ledger's range"),
        ({"amount_off": Decimal("Infinity")}, "amount_off: Input should be a finite number"),
    ],
)
def test_a_discount_beyond_what_rating_holds_is_refused(
    discount: dict[str, Any], expected: str
) -> None:
    record = {**ROW, "discounts": [{"price": "fin_resolution", "valid_from": "2026-01-01"}]}
    record["discounts"][0].update(discount)
    parsed = parse_records([(1, record)])
    assert not parsed.rows and len(parsed.problems) == 1
    assert expected in str(parsed.problems[0]), parsed.problems


def test_eighteen_decimal_places_pass() -> None:
    record = {
        **ROW,
        "discounts": [
            {
                "price": "fin_resolution",
                "percent_off": Decimal("33.333333333333333333000"),
                "valid_from": "2026-01-01",
            }
        ],
    }
    assert parse_records([(1, record)]).rows


# -- credentials ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (
            {"salesforce_instance_url": "https://acme.my.salesforce.com"},
            "METERLINE_SALESFORCE_SESSION_ID",
        ),
        ({"salesforce_session_id": "00Dxx!abc"}, "METERLINE_SALESFORCE_INSTANCE_URL"),
        (
            {"salesforce_username": "u", "salesforce_session_id": "00Dxx!abc"},
            "METERLINE_SALESFORCE_PASSWORD, METERLINE_SALESFORCE_SECURITY_TOKEN",
        ),
        (
            {
                "salesforce_username": "",
                "salesforce_password": "",
                "salesforce_security_token": "",
            },
            "all of them (or blank)",
        ),
        (
            {
                "salesforce_instance_url": "https://acme.my.salesforce.com",
                "salesforce_session_id": "  ",
            },
            "METERLINE_SALESFORCE_SESSION_ID",
        ),
    ],
)
def test_credentials_given_by_halves_or_blank_name_what_is_missing(
    given: dict[str, Any], missing: str
) -> None:
    with pytest.raises(SalesforceNotConfigured) as refused:
        salesforce_config(load_settings(**given))
    text = str(refused.value)
    assert text.endswith(f"missing: {missing}") and "00Dxx!abc" not in text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"METERLINE_SALESFORCE_LOGIN_URL": "https://u:s3cret@login.salesforce.com"},
            "'https://u:***@login.salesforce.com' holds a user or password",
        ),
        (
            {"METERLINE_SALESFORCE_INSTANCE_URL": "http://acme.my.salesforce.com"},
            "is not an https URL",
        ),
        ({"METERLINE_SALESFORCE_INSTANCE_URL": "https://[::1"}, "is not an https URL"),
        ({"METERLINE_SALESFORCE_INSTANCE_URL": "https://a.com/?x=1"}, "has a query or fragment"),
        ({"METERLINE_SALESFORCE_API_VERSION": "v59"}, "is not a Salesforce API version"),
        ({"METERLINE_SALESFORCE_TIMEOUT_S": "0"}, "METERLINE_SALESFORCE_TIMEOUT_S"),
    ],
)
def test_a_bad_salesforce_setting_stops_the_sync_at_start(
    env: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = run_cli(["customers", "sync-salesforce", "--mapping", str(CPQ_MAPPING)], env)
    assert code == ExitCode.REFUSED, out
    assert out.startswith("meterline: error: invalid setting") and expected in out, out
    assert "s3cret" not in out and "Traceback" not in out


# -- end to end, through the stand-in -------------------------------------------------


def sync_with(org: Org, ledger: Ledger, tmp_path: Path, data: dict[str, Any]) -> tuple[int, str]:
    import yaml

    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(data))
    return run_cli(
        ["customers", "sync-salesforce", "--mapping", str(path)],
        {"METERLINE_LEDGER_URL": ledger.url, **org.standin.session_env()},
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A number where a date is due.
        (
            lambda d: fields(d).update(start="SBQQ__Quantity__c"),
            "SBQQ__Quantity__c (start): must be a date written YYYY-MM-DD, not the number 1",
        ),
        # A dateTime where a date is due.
        (
            lambda d: fields(d).update(start="CreatedDate"),
            "CreatedDate (start): must be a date written YYYY-MM-DD, not '2026-",
        ),
        # Two records, one subscription id: the second names the first's record.
        (
            lambda d: fields(d).update(subscription_id="SBQQ__Account__c"),
            "SBQQ__Account__c (subscription_id): 0015",
        ),
        (
            lambda d: fields(d)["plan"]["map"].update({"MTR-STANDARD": "gold"}),
            "SBQQ__Product__r.ProductCode (plan): unknown plan 'gold'",
        ),
        (
            lambda d: fields(d).update(plan="SBQQ__Missing__r.ProductCode"),
            "refused the query while reading SBQQ__Subscription__c (400 INVALID_FIELD",
        ),
        (
            lambda d: d["subscriptions"].update(modified="SBQQ__SubscriptionStartDate__c"),
            "subscriptions.modified: record a0A",
        ),
    ],
)
def test_records_of_the_wrong_kind_refuse_the_sync_and_store_nothing(
    sqlite_ledger: Ledger,
    org: Org,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], Any],
    expected: str,
) -> None:
    acme = org.account("cus_acme", "Acme")
    org.subscription(acme, start=date(2026, 1, 1), discount="12.5")
    org.subscription(acme, product="MTR-VOLUME", start=date(2026, 7, 1))
    code, out = sync_with(org, sqlite_ledger, tmp_path, changed(change))
    assert code == ExitCode.REFUSED, out
    assert expected in out, out
    assert "Traceback" not in out and out.startswith("meterline: error: ")
    state = ledger_state(sqlite_ledger)
    assert not state["customers"] and not state["cursors"]
