"""The AvaTax stand-in, driven through Avalara's SDK (``avalara.AvataxClient``): it
serves the routes the SDK's methods call, answers with the fields of AvaTax's models as
Avalara's SDK declares them (definitions.json), computes tax from its rate table, and
fails where AvaTax would (docs/tax.md, "The AvaTax stand-in")."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from avalara import AvataxClient
from avalara.client_methods import Mixin

from meterline.demo.avatax_standin import AvaTaxStandIn, Jurisdiction, RateTable
from meterline.demo.avatax_standin.server import _ROUTES
from meterline.demo.avatax_standin.validate import answer_problems, definitions, fields_of
from meterline.sinks.tax.avatax import SDK_VERSION

ACCOUNT, KEY = "2000000001", "secret-license"
RATES = RateTable(
    places={
        ("US", "NY"): (
            Jurisdiction("NEW YORK", "STA", Decimal("0.04")),
            Jurisdiction("NEW YORK CITY", "CIT", Decimal("0.045")),
        ),
        ("IE", None): (Jurisdiction("IRELAND", "CNT", Decimal("0.23"), "IE VAT", "VAT"),),
    }
)
NYC = {
    "line1": "350 5th Ave",
    "city": "New York",
    "region": "NY",
    "postalCode": "10118",
    "country": "US",
}


@pytest.fixture(scope="module")
def standin() -> Iterator[AvaTaxStandIn]:
    with AvaTaxStandIn(rates=RATES, accounts={ACCOUNT: KEY}) as server:
        yield server


@pytest.fixture(scope="module")
def client(standin: AvaTaxStandIn) -> AvataxClient:
    return AvataxClient(
        "meterline-tests", "1", "tests", standin.base_url, timeout_limit=5
    ).add_credentials(ACCOUNT, KEY)


def model(code: str, *amounts: Any, commit: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "type": "SalesInvoice",
        "code": code,
        "companyCode": "DEFAULT",
        "date": "2026-04-04",
        "customerCode": "cus_1",
        "currencyCode": "USD",
        "commit": commit,
        "addresses": {
            "shipFrom": {"country": "US", "region": "NY", "postalCode": "12207"},
            "shipTo": NYC,
        },
        "lines": [
            {"number": str(i), "amount": amount, "taxCode": "SW054000", "description": f"line {i}"}
            for i, amount in enumerate(amounts, start=1)
        ],
        **extra,
    }


def body(response: requests.Response, model_name: str = "TransactionModel") -> dict[str, Any]:
    """The answer, parsed exactly, after checking it against the model's definition."""
    assert response.headers.get("x-correlation-id"), "the SDK's logger needs it"
    doc = response.json(parse_float=Decimal)
    assert answer_problems(model_name, doc) == [], doc
    return dict(doc)


def error(response: requests.Response) -> tuple[int, str, list[str]]:
    doc = body(response, "ErrorResult")
    return (
        response.status_code,
        doc["error"]["code"],
        [d["message"] for d in doc["error"]["details"]],
    )


def test_the_routes_are_those_the_sdk_calls() -> None:
    """Every route the stand-in serves is a URL one of the SDK's methods builds, and the
    definitions say which SDK they come from."""
    sources = "\n".join(
        inspect.getsource(getattr(Mixin, name))
        for name in (
            "ping",
            "create_transaction",
            "get_transaction_by_code",
            "get_transaction_by_code_and_type",
            "commit_transaction",
            "void_transaction",
        )
    )
    for _, path, _, _ in _ROUTES:
        sdk_form = re.sub(r"\{\w+\}", "{}", path)
        assert f"'{{}}{sdk_form}'" in sources, path
    assert "AvaTax-REST-V2-JS-SDK" in definitions()["source"]
    assert SDK_VERSION in inspect.getsource(Mixin.create_transaction)
    assert fields_of("LineItemModel")["amount"]["required"] is True


def test_create_get_commit_void_through_the_sdk(
    client: AvataxClient, standin: AvaTaxStandIn
) -> None:
    assert body(client.ping(), "PingResultModel")["authenticated"] is True
    created = body(client.create_transaction(model("doc-1", 99, 10.01, commit=False)))
    assert (created["status"], created["type"], created["code"]) == (
        "Saved",
        "SalesInvoice",
        "doc-1",
    )
    # 99 x 4% = 3.96, 99 x 4.5% = 4.455 -> 4.46; 10.01 -> 0.40 + 0.45 (each rounded half-up).
    assert [line["tax"] for line in created["lines"]] == [Decimal("8.42"), Decimal("0.85")]
    assert created["totalTax"] == Decimal("9.27") and created["totalAmount"] == Decimal("109.01")
    assert {d["jurisType"] for d in created["lines"][0]["details"]} == {"STA", "CIT"}

    found = body(
        client.get_transaction_by_code_and_type(
            "DEFAULT", "doc-1", "SalesInvoice", {"$include": "Lines"}
        )
    )
    assert found["id"] == created["id"] and "details" not in found["lines"][0]
    committed = body(client.commit_transaction("DEFAULT", "doc-1", {"commit": True}))
    assert committed["status"] == "Committed"
    voided = body(
        client.void_transaction(
            "DEFAULT", "doc-1", {"code": "DocVoided"}, {"documentType": "SalesInvoice"}
        )
    )
    assert voided["status"] == "Cancelled"
    status, code, _ = error(client.void_transaction("DEFAULT", "doc-1", {"code": "DocVoided"}))
    assert (status, code) == (400, "InvalidDocumentStatus")
    assert ("doc-1", "SalesInvoice", "Cancelled") in standin.store.live()


def test_a_committed_code_is_reserved_an_uncommitted_one_replaced(
    client: AvataxClient, standin: AvaTaxStandIn
) -> None:
    first = body(client.create_transaction(model("doc-2", 10, commit=False)))
    second = body(client.create_transaction(model("doc-2", 20)))
    assert (
        second["version"] == 2 and second["id"] != first["id"] and second["status"] == "Committed"
    )
    status, code, messages = error(client.create_transaction(model("doc-2", 30)))
    assert (status, code) == (400, "TransactionAlreadyExists")
    assert messages == ["A transaction with this code and type already exists."]
    # The same code is another transaction under another document type.
    returned = body(
        client.create_transaction(model("doc-2", -5, type="ReturnInvoice", referenceCode="doc-2"))
    )
    assert returned["type"] == "ReturnInvoice" and returned["referenceCode"] == "doc-2"
    assert standin.store.committed_count("doc-2") == 1


def test_vat_and_exempt_lines_and_a_tax_date(client: AvataxClient) -> None:
    dublin = {"line1": "1 Grand Canal Sq", "city": "Dublin", "postalCode": "D02", "country": "IE"}
    doc = model("doc-3", 100.10, 50, addresses={"shipTo": dublin})
    doc["lines"][1]["taxCode"] = "NT"
    doc["taxOverride"] = {"type": "TaxDate", "taxDate": "2026-01-31", "reason": "return"}
    created = body(client.create_transaction(doc))
    assert [line["tax"] for line in created["lines"]] == [Decimal("23.02"), Decimal(0)]
    assert created["lines"][1]["exemptAmount"] == Decimal(50) and created["taxDate"] == "2026-01-31"
    assert created["summary"][0]["taxName"] == "IE VAT"


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        (
            {"lines": [{"number": "1", "amont": 1}]},
            "InvalidField",
            "lines[0].amont: LineItemModel has no field",
        ),
        (
            {"lines": [{"number": "1"}]},
            "ValueRequiredError",
            "Field 'lines[0].amount' is required.",
        ),
        ({"customerCode": None}, "ValueRequiredError", "Field 'customerCode' is required."),
        ({"date": "04/04/2026"}, "DateFormatError", "date: '04/04/2026' is not a date"),
        ({"type": "Invoice"}, "InvalidEnumValue", "type: 'Invoice' is not a DocumentType"),
        ({"commit": "yes"}, "ModelStateInvalid", "commit: must be boolean, not a string"),
        ({"lines": []}, "MissingLine", "at least one line"),
        ({"addresses": None}, "MissingAddress", "an address is required"),
        ({"companyCode": "NOPE"}, "EntityNotFoundError", "Company not found."),
    ],
)
def test_refusals(client: AvataxClient, change: dict[str, Any], code: str, message: str) -> None:
    doc = {**model("doc-bad", 1), **change}
    doc = {k: v for k, v in doc.items() if v is not None}
    status, found, messages = error(client.create_transaction(doc))
    assert found == code and status == (404 if code == "EntityNotFoundError" else 400)
    assert any(message in m for m in messages), messages


def test_credentials_and_missing_documents(client: AvataxClient, standin: AvaTaxStandIn) -> None:
    wrong = AvataxClient("t", "1", "t", standin.base_url, timeout_limit=5).add_credentials(
        ACCOUNT, "wrong"
    )
    assert error(wrong.get_transaction_by_code("DEFAULT", "doc-1"))[:2] == (
        401,
        "AuthenticationException",
    )
    anonymous = AvataxClient("t", "1", "t", standin.base_url, timeout_limit=5)
    assert error(anonymous.get_transaction_by_code("DEFAULT", "doc-1"))[:2] == (
        401,
        "AuthenticationIncomplete",
    )
    assert body(anonymous.ping(), "PingResultModel")["authenticated"] is False
    assert error(client.get_transaction_by_code("DEFAULT", "nothing"))[:2] == (
        404,
        "EntityNotFoundError",
    )


def test_faults(client: AvataxClient, standin: AvaTaxStandIn) -> None:
    """error_500 fails before acting; timeout and drop act, then lose the answer."""
    standin.plan("error_500", when=lambda method, path: path.endswith("/create"))
    assert error(client.create_transaction(model("doc-f1", 1)))[:2] == (500, "InternalServerError")
    assert not any(code == "doc-f1" for code, _, _ in standin.store.live())

    quick = AvataxClient("t", "1", "t", standin.base_url, timeout_limit=0.3).add_credentials(
        ACCOUNT, KEY
    )
    standin.plan("timeout", when=lambda method, path: path.endswith("/create"), delay=0.6)
    with pytest.raises(requests.Timeout):
        quick.create_transaction(model("doc-f2", 1))
    standin.plan("drop", when=lambda method, path: path.endswith("/create"))
    with pytest.raises(requests.ConnectionError):
        client.create_transaction(model("doc-f3", 1))
    live = standin.store.live()
    assert ("doc-f2", "SalesInvoice", "Committed") in live and (
        "doc-f3",
        "SalesInvoice",
        "Committed",
    ) in live
    assert standin.injected == {"error_500": 1, "timeout": 1, "drop": 1}
