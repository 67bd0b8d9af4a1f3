"""The tax sink's pure parts (docs/tax.md): an invoice's AvaTax transactions and their
models, AvaTax's amounts back in minor units, the client's retry rule; and the tax
profile and tax codes the customers file and the catalog now take."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from pydantic import SecretStr

from billing.catalog import parse_catalog_text, read_catalog
from billing.customers import parse_records
from billing.errors import LoadError
from billing.outbox import InvoiceDoc, LineDoc
from billing.tax import CustomerTaxProfile
from meterline.sinks.tax import AvalaraConfig, AvaTaxApi, AvaTaxError, AvaTaxUnavailable
from meterline.sinks.tax import mapping as m
from tests.billing.factories import CATALOG

MARCH = datetime(2026, 3, 1, 5, tzinfo=UTC)  # midnight in New York
FEB = datetime(2026, 2, 1, 5, tzinfo=UTC)
JAN = datetime(2026, 1, 1, 5, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, 4, tzinfo=UTC)
PROFILE = CustomerTaxProfile(
    "cus_1",
    {
        "line1": "350 5th Ave",
        "city": "New York",
        "region": "NY",
        "postal_code": "10118",
        "country": "US",
    },
    [{"type": "us_ein", "value": "12-3456789"}],
)
ORIGIN = {"region": "NY", "postal_code": "12207", "country": "US"}


def line(
    line_id: int, amount: int, *, kind: str = "usage", start: datetime = MARCH, price: str = "fin"
) -> LineDoc:
    return LineDoc(
        line_id=line_id,
        key=f"k{line_id}",
        kind=kind,
        description=f"{price}: line {line_id}",
        quantity="1",
        unit_amount=None,
        amount_minor=amount,
        currency="USD",
        meter=None,
        price_id=price,
        price_version="2026-01-01#abc",
        dimension_group=None,
        service_period_start=start.isoformat(),
        service_period_end=(APRIL if start == MARCH else MARCH).isoformat(),
        breakdown=[],
        adjusts_line_id=None,
        adjusts_key=None,
    )


def invoice(*lines: LineDoc, currency: str = "USD") -> InvoiceDoc:
    return InvoiceDoc(
        invoice_id=30,
        customer="cus_1",
        customer_name="Acme",
        subscription="sub_1",
        currency=currency,
        status="finalized",
        period_start=MARCH.isoformat(),
        period_end=APRIL.isoformat(),
        period_start_local="2026-03-01",
        period_end_local="2026-04-01",
        timezone="America/New_York",
        subtotal_minor=0,
        discount_minor=0,
        adjustment_minor=0,
        total_minor=sum(x.amount_minor for x in lines),
        finalized_at=datetime(2026, 4, 4, 3, tzinfo=UTC).isoformat(),  # 3 April in New York
        voided_at=None,
        reissue_of=None,
        lines=lines,
    )


def test_an_invoice_is_its_own_transaction_and_one_per_corrected_invoice() -> None:
    doc = invoice(
        line(1, 9900, price="seat"),
        line(2, 1234),
        line(3, 500, kind="adjustment", start=FEB),  # late usage of February: +5.00
        line(4, -700, kind="adjustment", start=JAN),  # a re-rate of January: -7.00
        line(5, 100, kind="adjustment", start=MARCH),  # its own period (after a re-issue)
    )
    corrected = {FEB: m.Corrected(20, date(2026, 3, 4)), JAN: m.Corrected(10, date(2026, 2, 4))}
    assert m.corrected_period_starts(doc) == [JAN, FEB]
    docs = m.plan_documents(doc, prefix="ml-", tax_codes={"seat": "SW052000"}, corrected=corrected)
    assert [(d.code, d.type, d.reference_code, d.tax_date) for d in docs] == [
        ("ml-30", "SalesInvoice", None, None),
        ("ml-30-adj-10", "ReturnInvoice", "ml-10", date(2026, 2, 4)),
        ("ml-30-adj-20", "SalesInvoice", "ml-20", None),
    ]
    assert [[x.number for x in d.lines] for d in docs] == [["1", "2", "5"], ["4"], ["3"]]
    own = docs[0]
    assert own.document_date == date(2026, 4, 3)
    assert [(x.tax_code, x.item_code, x.service_period, x.kind) for x in own.lines[:2]] == [
        ("SW052000", "seat", "2026-03-01/2026-04-01", "usage"),
        (None, "fin", "2026-03-01/2026-04-01", "usage"),
    ]
    # A correction of a period whose invoice is gone (void) stays on the invoice's own.
    alone = m.plan_documents(doc, prefix="ml-", tax_codes={}, corrected={})
    assert [d.code for d in alone] == ["ml-30"] and len(alone[0].lines) == 5


def test_the_create_model() -> None:
    doc = invoice(line(1, 9900), line(2, 1234), line(3, -700, kind="adjustment", start=JAN))
    corrected = {JAN: m.Corrected(10, date(2026, 2, 4))}
    own, back = m.plan_documents(
        doc, prefix="ml-", tax_codes={"fin": "SW054000"}, corrected=corrected
    )
    model = m.create_model(own, company_code="DEFAULT", origin=ORIGIN, profile=PROFILE)
    assert {
        k: model[k] for k in ("type", "code", "companyCode", "date", "customerCode", "commit")
    } == {
        "type": "SalesInvoice",
        "code": "ml-30",
        "companyCode": "DEFAULT",
        "date": "2026-04-03",
        "customerCode": "cus_1",
        "commit": True,
    }
    assert model["addresses"]["shipTo"] == {
        "line1": "350 5th Ave",
        "city": "New York",
        "region": "NY",
        "postalCode": "10118",
        "country": "US",
    }
    assert model["addresses"]["shipFrom"] == {
        "region": "NY",
        "postalCode": "12207",
        "country": "US",
    }
    assert model["businessIdentificationNo"] == "12-3456789"
    assert [(x["number"], x["amount"], x.get("taxCode")) for x in model["lines"]] == [
        ("1", 99, "SW054000"),
        ("2", 12.34, "SW054000"),
    ]
    returned = m.create_model(back, company_code="DEFAULT", origin=ORIGIN, profile=PROFILE)
    assert returned["referenceCode"] == "ml-10"
    assert returned["taxOverride"] == {
        "type": "TaxDate",
        "taxDate": "2026-02-04",
        "reason": "Correction of ml-10",
    }
    with pytest.raises(m.MappingError, match="no billing_address"):
        m.create_model(
            own,
            company_code="DEFAULT",
            origin=ORIGIN,
            profile=replace(PROFILE, billing_address=None),
        )


@pytest.mark.parametrize(
    ("minor", "currency", "wire"),
    [
        (12345, "USD", 123.45),
        (12300, "USD", 123),
        (-1, "USD", -0.01),
        (123, "JPY", 123),
        (1005, "KWD", 1.005),
    ],
)
def test_amounts_go_exactly(minor: int, currency: str, wire: Any) -> None:
    sent = m.wire_amount(minor, currency)
    assert sent == wire and type(sent) is type(wire)
    assert m.minor_of(Decimal(repr(sent)), currency, "back") == minor


def test_amounts_come_back_in_minor_units_as_returned() -> None:
    assert m.minor_of(Decimal("8.42"), "USD", "tax") == 842
    assert m.minor_of(3, "JPY", "tax") == 3
    with pytest.raises(m.MappingError, match="not a whole number of the currency's minor unit"):
        m.minor_of(Decimal("8.425"), "USD", "tax")
    with pytest.raises(m.MappingError, match="not a number"):
        m.minor_of(8.42, "USD", "tax")  # a float never passes
    request = m.plan_documents(invoice(line(7, 9900)), prefix="ml-", tax_codes={}, corrected={})[0]
    found = {
        "id": 1000001,
        "code": "ml-30",
        "type": "SalesInvoice",
        "status": "Committed",
        "date": "2026-04-03",
        "currencyCode": "USD",
        "customerCode": "cus_1",
        "totalAmount": Decimal(99),
        "totalTax": Decimal("8.42"),
        "lines": [
            {
                "lineNumber": "7",
                "lineAmount": Decimal(99),
                "taxableAmount": Decimal(99),
                "exemptAmount": 0,
                "tax": Decimal("8.42"),
                "taxCode": "SW054000",
                "details": [
                    {
                        "jurisName": "NEW YORK",
                        "jurisType": "STA",
                        "taxName": "NY STATE TAX",
                        "rate": Decimal("0.040000"),
                        "taxableAmount": Decimal(99),
                        "tax": Decimal("3.96"),
                    },
                ],
            }
        ],
    }
    recorded = m.recorded_document(found, request)
    assert (recorded.transaction_id, recorded.tax_minor, recorded.amount_minor) == (
        "1000001",
        842,
        9900,
    )
    (taxed,) = recorded.lines
    assert (taxed.invoice_line_id, taxed.tax_minor, taxed.tax_code) == (7, 842, "SW054000")
    assert taxed.details[0] == {
        "jurisdiction": "NEW YORK",
        "type": "STA",
        "tax_name": "NY STATE TAX",
        "rate": "0.04",
        "taxable_minor": 9900,
        "tax_minor": 396,
    }
    assert m.differences(request, found) == []
    other = {
        **found,
        "customerCode": "x",
        "lines": [{**found["lines"][0], "lineAmount": Decimal(98)}],
    }
    assert m.differences(request, other) == [
        "customer 'x', ours 'cus_1'",
        "line 7: AvaTax 9800, ours 9900 (minor units)",
    ]


def response(status: int, body: bytes = b"{}", **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer._content = body
    answer.headers.update(headers)
    return answer


def test_the_client_retries_what_may_pass_and_raises_the_rest() -> None:
    config = AvalaraConfig(
        "1",
        SecretStr("sekrit-license"),
        "DEFAULT",
        ORIGIN,
        api_base="http://127.0.0.1:9",
        request_attempts=3,
    )
    api = AvaTaxApi(config, backoff_s=0.001)
    answers = iter(
        [
            KeyError("x-correlation-id"),  # not an answer of AvaTax's
            response(429, b'{"error": {"code": "RateLimit"}}', **{"Retry-After": "0"}),
            response(200, b'{"totalTax": 0.1}'),
        ]
    )

    def call() -> requests.Response:
        item = next(answers)
        if isinstance(item, Exception):
            raise item
        return item

    assert api.call("x", call) == {"totalTax": Decimal("0.1")}
    assert api.requests["x"] == 3
    refused = (
        b'{"error": {"code": "InvalidField", "message": "no", "details": [{"message": "why"}]}}'
    )
    with pytest.raises(AvaTaxError, match="AvaTax 400 InvalidField: no \\(why\\)"):
        api.call("y", lambda: response(400, refused))
    with pytest.raises(AvaTaxUnavailable, match="unreachable"):
        api.call("z", lambda: (_ for _ in ()).throw(requests.ConnectionError("refused")))
    assert "sekrit" not in repr(config) and "**********" in repr(config)


def test_the_customers_file_takes_a_tax_profile() -> None:
    base = {
        "customer_id": "c1",
        "name": "A",
        "currency": "USD",
        "timezone": "UTC",
        "subscription_id": "s1",
        "plan": "standard",
        "billing_anchor_day": 1,
        "start": "2026-01-01",
    }
    cases = [
        (
            {"billing_address": {"country": "US", "region": "NY"}},
            "billing_address: postal_code: a US address needs",
        ),
        (
            {"billing_address": {"country": "ie"}},
            "billing_address.country: must be an ISO 3166-1 alpha-2",
        ),
        (
            {"billing_address": {"country": "IE", "zip": "D02"}},
            "billing_address.zip: unknown field (the fields are line1, line2, line3, city, region,",
        ),
        ({"billing_address": "Dublin"}, "billing_address: must be an object with country"),
        (
            {"tax_ids": [{"type": "vat", "value": "IE1"}]},
            "tax_ids.0.type: 'vat' is not a tax id type",
        ),
        (
            {"tax_ids": [{"type": "eu_vat", "value": "IE1"}, {"type": "eu_vat", "value": "IE1"}]},
            "tax_ids: eu_vat IE1 is given twice (items 0 and 1)",
        ),
    ]
    parsed = parse_records(
        [
            (i + 1, {**base, "subscription_id": f"s{i}", **extra})
            for i, (extra, _) in enumerate(cases)
        ]
    )
    found = sorted(str(p) for p in parsed.problems)
    for i, (_, expected) in enumerate(cases):
        assert any(p.startswith(f"line {i + 1}: {expected}") for p in found), (expected, found)
    ok = parse_records(
        [
            (
                1,
                {
                    **base,
                    "billing_address": {"country": "IE", "line1": "1 Grand Canal Sq"},
                    "tax_ids": [{"type": "eu_vat", "value": "IE6388047V"}],
                },
            )
        ]
    )
    ((_, row),) = ok.rows
    assert row.billing_address is not None and row.billing_address.stored() == {
        "line1": "1 Grand Canal Sq",
        "country": "IE",
    }


def test_the_catalog_takes_one_tax_code_per_price() -> None:
    text = CATALOG.read_text()
    plain = read_catalog(CATALOG)
    assert plain.price_tax_codes == {}
    head = "      - id: fin_resolution\n        meter: fin_resolution\n"
    coded = parse_catalog_text(text.replace(head, head + "        tax_code: SW054000\n"))
    assert coded.price_tax_codes == {"fin_resolution": "SW054000"}
    assert coded.content_hash != plain.content_hash  # a tax code is content
    with pytest.raises(LoadError) as refused:
        parse_catalog_text(text.replace(head, head + "        tax_code: SW054000\n", 1))
    assert "has no tax_code here and tax_code SW054000 at plans[0] (standard)" in str(refused.value)
    with pytest.raises(LoadError, match="'SW 054' is not a tax code"):
        parse_catalog_text(text.replace(head, head + "        tax_code: 'SW 054'\n"))
