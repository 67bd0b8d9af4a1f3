"""Bad input against what issue 19 part 1 added (docs/tax.md): customers files with bad
billing addresses and tax ids, catalogs with bad tax codes, bad METERLINE_AVALARA_*
settings, and the tax sink against AvaTax answers it cannot record as they are (wrong
types, missing fields, totals that are not their lines' sums, amounts beyond the
ledger), faults on voids, a correction below zero and re-delivery.

Each case ends in one line saying what is wrong and what to do, with the README's exit
code, nothing stored, no secret printed; a delivery that cannot be recorded parks its
event and records nothing, and never stops the run."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import func, select

import billing
from billing.catalog import parse_catalog_text
from billing.customers import parse_records
from billing.errors import LoadError
from billing.models import TaxDocument
from meterline.cli import main
from meterline.jobs.deliver import replay_from
from meterline.settings import load_settings
from meterline.sinks.tax import AvalaraConfig, AvaTaxApi, AvaTaxError, AvaTaxUnavailable
from meterline.sinks.tax import mapping as m
from tests.billing.conftest import Ledger, ledger, ledger_url  # noqa: F401
from tests.billing.factories import CATALOG, standard_charges
from tests.sinks.test_tax_delivery import APRIL, GRACE, MARCH, ONE_LEDGER, TaxWorld, make_world
from tests.sinks.test_tax_mapping import ORIGIN, invoice, line, response

BASE = {
    "customer_id": "c1",
    "name": "A",
    "currency": "USD",
    "timezone": "UTC",
    "subscription_id": "s1",
    "plan": "standard",
    "billing_anchor_day": 1,
    "start": "2026-01-01",
}


# -- the customers file ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"billing_address": {}}, "billing_address.country: Field required"),
        ({"billing_address": {"country": 12}}, "billing_address.country: must be an ISO 3166-1"),
        ({"billing_address": {"country": "IE", "line1": "x" * 10**6}}, "has 1000000 characters"),
        ({"billing_address": {"country": "IE", "line1": "a\u202eb"}}, "the character U+202E"),
        ({"billing_address": {"country": "IE", "city": ""}}, "city: must not be empty"),
        ({"billing_address": {"country": "IE", "line1": {"a": 1}}}, "must be text, not an object"),
        ({"billing_address": {"country": "US", "postal_code": True}}, "not the boolean true"),
        ({"billing_address": ["US"]}, "billing_address: must be an object with country"),
        ({"tax_ids": "IE123"}, "tax_ids: must be a list of {type, value} objects"),
        ({"tax_ids": [{"type": "vat_eu", "value": "IE1"}]}, "'vat_eu' is not a tax id type"),
        ({"tax_ids": [{"type": 1, "value": "x"}]}, "tax_ids.0.type: the int 1 is not a tax id"),
        ({"tax_ids": [{"type": "eu_vat", "value": 123}]}, "must be text, not the number 123"),
        ({"tax_ids": [{"type": "eu_vat", "value": "9" * 10**5}]}, "has 100000 characters"),
        ({"tax_ids": [{"type": "eu_vat", "value": "IE\u200b1"}]}, "the character U+200B"),
        # An item that is no object: what it must be, not pydantic's class name.
        (
            {"tax_ids": [None]},
            "tax_ids.0: must be an object with the fields type, value, not null (empty)",
        ),
        ({"tax_ids": ["IE1"]}, "tax_ids.0: must be an object with the fields type, value, not"),
        ({"discounts": [5]}, "discounts.0: must be an object with the fields price, percent_off"),
        (
            {"tax_ids": [{"type": "eu_vat", "value": f"IE{i}"} for i in range(26)]},
            "tax_ids: 26 tax ids; at most 25",
        ),
    ],
)
def test_a_bad_tax_profile_is_one_problem_naming_its_field(
    extra: dict[str, Any], expected: str
) -> None:
    parsed = parse_records([(1, {**BASE, **extra})])
    assert not parsed.rows
    found = [str(p) for p in parsed.problems]
    assert len(found) == 1 and expected in found[0], found
    assert "\n" not in found[0] and "TaxId" not in found[0] and "DiscountRow" not in found[0]


# -- the catalog ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("123", "the number 123 is not a tax code: write it in quotes ('123')"),
        ("12.5", "the number 12.5 is not a tax code: write it in quotes ('12.5')"),
        ("true", "the boolean true is not a tax code"),
        ("[a]", "a list is not a tax code"),
        ("''", "'' is not a tax code"),
        ("'SW 054'", "'SW 054' is not a tax code"),
        ('"SW\\u200b1"', "'SW\\u200b1' is not a tax code"),
        ("T" * 26, "is not a tax code"),
    ],
)
def test_a_bad_tax_code_is_refused_saying_what_a_tax_code_is(code: str, expected: str) -> None:
    head = "      - id: fin_resolution\n        meter: fin_resolution\n"
    text = CATALOG.read_text().replace(head, head + f"        tax_code: {code}\n")
    with pytest.raises(LoadError) as refused:
        parse_catalog_text(text)
    message = str(refused.value)
    assert expected in message and "letters, digits" in message
    assert "Decimal(" not in message


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"METERLINE_AVALARA_ORIGIN_ADDRESS": "not json"},
            "METERLINE_AVALARA_ORIGIN_ADDRESS: is not JSON: give a JSON object",
        ),
        (
            {"METERLINE_AVALARA_ORIGIN_ADDRESS": "[]"},
            "must be a JSON object with the customers file's billing_address fields, not a list",
        ),
        (
            {"METERLINE_AVALARA_ORIGIN_ADDRESS": '{"country": "US", "line1": 5}'},
            "METERLINE_AVALARA_ORIGIN_ADDRESS: line1: must be text, not the number 5",
        ),
        (
            {"METERLINE_AVALARA_ORIGIN_ADDRESS": '{"line1": "1 Main St"}'},
            "METERLINE_AVALARA_ORIGIN_ADDRESS: country: required: e.g.",
        ),
        (
            {"METERLINE_AVALARA_ORIGIN_ADDRESS": '{"country": "IE", "zip": "D02"}'},
            "zip: unknown field (the fields are line1",
        ),
        (
            {"METERLINE_AVALARA_COMPANY_CODE": "../x?y"},
            "'../x?y' is not an AvaTax company code",
        ),
        (
            {"METERLINE_AVALARA_API_BASE": "https://u:sekrit@rest.avatax.com"},
            "'https://u:***@rest.avatax.com' holds a user or password",
        ),
        (
            {"METERLINE_AVALARA_API_BASE": "https://rest.avatax.com?x=1"},
            "has a query or fragment",
        ),
        ({"METERLINE_AVALARA_API_BASE": "https://[::1"}, "is not an http(s) URL"),
        ({"METERLINE_AVALARA_API_BASE": "https://h:99999"}, "has no valid port"),
        (
            {"METERLINE_TAX_SINK": "avalara"},
            "avalara needs METERLINE_AVALARA_COMPANY_CODE and METERLINE_AVALARA_ORIGIN_ADDRESS",
        ),
    ],
)
def test_a_bad_avalara_setting_stops_the_command_at_start(
    env: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["outbox", "list", "--sink", "avalara"], env=env)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert "sekrit" not in result.output
    assert result.output.startswith("meterline: error: invalid setting")


def test_an_empty_origin_address_is_unset() -> None:
    assert load_settings(avalara_origin_address="").avalara_origin_address is None
    assert load_settings(avalara_company_code=" ").avalara_company_code is None


# -- AvaTax's answers -----------------------------------------------------------------


def api() -> AvaTaxApi:
    config = AvalaraConfig(
        "1", SecretStr("sekrit"), "DEFAULT", ORIGIN, api_base="http://127.0.0.1:9"
    )
    return AvaTaxApi(replace_attempts(config, 2), backoff_s=0.001)


def replace_attempts(config: AvalaraConfig, attempts: int) -> AvalaraConfig:
    from dataclasses import replace

    return replace(config, request_attempts=attempts)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[1, 2]", "AvaTax answered 200 with a JSON list, not a JSON object"),
        (b'"abc"', "AvaTax answered 200 with a JSON str, not a JSON object"),
        (b"12", "AvaTax answered 200 with a JSON int, not a JSON object"),
        (b"null", "AvaTax answered 200 with no JSON body"),
        (b"<html>", "AvaTax answered 200 with no JSON body"),
        (b"[" * 100_000 + b"]" * 100_000, "AvaTax answered 200 with no JSON body"),
    ],
)
def test_a_success_that_is_no_json_object_is_retried_then_unavailable(
    body: bytes, expected: str
) -> None:
    client = api()
    with pytest.raises(AvaTaxUnavailable, match=expected):
        client.call("x", lambda: response(200, body))
    assert client.requests["x"] == 2


def test_an_error_answer_of_odd_shape_is_one_short_line() -> None:
    client = api()
    with pytest.raises(AvaTaxError) as odd:
        client.call("x", lambda: response(400, b'{"error": {"code": "X", "details": 5}}'))
    assert str(odd.value) == "AvaTax 400 X: "
    long = {"error": {"code": "C" * 5000, "message": "a\nb " * 2000, "details": [{"message": 5}]}}
    with pytest.raises(AvaTaxError) as huge:
        client.call("x", lambda: response(400, json.dumps(long).encode()))
    text = str(huge.value)
    assert "\n" not in text and len(text) < 1200 and text.startswith("AvaTax 400 CCC")


REQUEST = m.plan_documents(invoice(line(7, 9900)), prefix="ml-", tax_codes={}, corrected={})[0]
GOOD: dict[str, Any] = {
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
                    "rate": Decimal("0.085"),
                    "taxableAmount": Decimal(99),
                    "tax": Decimal("8.42"),
                }
            ],
        }
    ],
}


def changed(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    found = copy.deepcopy(GOOD)
    change(found)
    return found


def detail(found: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = found["lines"][0]["details"][0]
    return result


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (changed(lambda f: f.update(lines="abc")), "lines: not a list of objects"),
        (changed(lambda f: f.update(lines=[None])), "lines: not a list of objects"),
        (
            changed(lambda f: f["lines"][0].update(details=[None])),
            "lines[0].details: not a list of objects",
        ),
        (changed(lambda f: f.pop("date")), "date: None is not a date YYYY-MM-DD"),
        (changed(lambda f: f.update(date="2026-13-45")), "date: '2026-13-45' is not a date"),
        (changed(lambda f: f.pop("id")), "id: missing"),
        (changed(lambda f: f.update(id="9" * 41)), "id: 41 characters, more than the ledger"),
        (changed(lambda f: f.pop("status")), "status: missing"),
        (changed(lambda f: f.update(status="Done")), "status: 'Done' is not a status of"),
        (changed(lambda f: f.update(totalTax=Decimal("1e30"))), "totalTax: 1E+30 USD: beyond"),
        (changed(lambda f: f.update(totalTax=Decimal("1e999999"))), "beyond the ledger's range"),
        (changed(lambda f: f.update(totalTax=Decimal("NaN"))), "NaN: not a finite number"),
        (changed(lambda f: f.update(totalTax="8.42")), "totalTax: '8.42': not a number"),
        (
            changed(lambda f: f.update(totalTax=Decimal("1.00"))),
            "totalTax: 100 minor units, but its lines' tax add up to 842",
        ),
        (
            changed(lambda f: f.update(totalAmount=Decimal(98))),
            "totalAmount: 9800 minor units, but its lines' amount add up to 9900",
        ),
        (
            changed(lambda f: f["lines"][0].update(taxCode="T" * 26)),
            "lines[0].taxCode: 26 characters, more than the ledger keeps (25)",
        ),
        (
            changed(lambda f: detail(f).update(rate="abc")),
            "lines[0].details[0].rate: 'abc' is not a rate",
        ),
        (
            changed(lambda f: detail(f).update(jurisName={"a": 1})),
            "lines[0].details[0].jurisName: {'a': 1} is not a text",
        ),
        (
            changed(lambda f: detail(f).update(tax=Decimal("8.425"))),
            "lines[0].details[0].tax: 8.425 USD: not a whole number of the currency's minor",
        ),
        (
            changed(lambda f: f["lines"].append(copy.deepcopy(f["lines"][0]))),
            "lines: line number 7 is given twice",
        ),
    ],
)
def test_an_answer_the_ledger_cannot_record_is_refused_naming_the_field(
    found: dict[str, Any], expected: str
) -> None:
    with pytest.raises(m.AnswerInvalid) as refused:
        assert m.differences(REQUEST, found) == []
        m.recorded_document(found, REQUEST)
    text = str(refused.value)
    assert text.startswith("AvaTax's answer for ml-30 (SalesInvoice) cannot be recorded: ")
    assert expected in text and "outbox replay" in text and "\n" not in text


def test_an_answer_of_another_code_or_type_is_another_transaction() -> None:
    other = changed(lambda f: f.update(code="someone-else", type="ReturnInvoice"))
    assert m.differences(REQUEST, other) == [
        "code 'someone-else', ours 'ml-30'",
        "type 'ReturnInvoice', ours 'SalesInvoice'",
    ]
    assert m.recorded_document(GOOD, REQUEST).tax_minor == 842


# -- the sink against the stand-in ----------------------------------------------------


@pytest.fixture
def tax_world(ledger: Ledger, tmp_path: Path) -> Iterator[TaxWorld]:  # noqa: F811
    yield from make_world(ledger, tmp_path)


def documents(world: TaxWorld) -> int:
    with world.ledger.Session() as session:
        return int(session.scalar(select(func.count()).select_from(TaxDocument)) or 0)


def render_with(world: TaxWorld, change: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
    """Make the stand-in's transactions answer changed by ``change``; returns the undo."""
    store = world.avatax.store
    render = store.render

    def changed_render(txn: Any, include: Any) -> dict[str, Any]:
        doc = render(txn, include)
        change(doc)
        return doc

    store.render = changed_render  # type: ignore[method-assign]
    return lambda: setattr(store, "render", render)


@ONE_LEDGER
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda doc: doc.update(lines="abc"), "lines: not a list of objects"),
        (lambda doc: doc.update(status="Saved"), "with status 'Saved' after a create that"),
        (lambda doc: doc.update(totalTax=Decimal("1e30")), "totalTax: 1E+30 USD: beyond"),
        (lambda doc: doc.update(id="9" * 100), "id: 100 characters"),
        (lambda doc: doc["lines"].append(doc["lines"][0]), "given twice"),
    ],
)
def test_an_answer_that_cannot_be_recorded_parks_the_event_and_records_nothing(
    tax_world: TaxWorld, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    undo = render_with(world, change)
    report = world.tax()  # the run goes on: nothing raised past the delivery
    assert (report.parked, report.delivered) == (1, 0), report.summary()
    assert expected in report.errors[0] and "\n" not in report.errors[0]
    assert world.state(march).status == "pending" and documents(world) == 0
    assert world.to_stripe().delivered == 0  # Stripe waits for the tax
    # AvaTax answers right again: a replay records the one transaction, never a second.
    undo()
    assert replay_from(1, sink="avalara", config=world.settings) >= 1
    again = world.tax()
    assert again.ok and again.transactions_created == 0, again.summary()
    assert world.avatax.store.committed_count(f"meterline-{march}") == 1
    assert world.state(march).status == "recorded" and documents(world) == 1


@ONE_LEDGER
def test_a_correction_below_zero_is_a_return_at_the_original_date(tax_world: TaxWorld) -> None:
    world = tax_world
    march = world.post(MARCH, resolutions=100)
    world.finalize(march, MARCH)
    assert world.tax().ok
    with world.Session.begin() as session:
        billing.post_adjustments(
            session, "sub_00001", MARCH, standard_charges(session, resolutions=40)
        )
    april = world.post(APRIL, resolutions=10)
    world.finalize(april, APRIL)
    report = world.tax()
    assert report.ok and report.transactions_created == 2, report.summary()
    code = f"meterline-{april}-adj-{march}"
    returned = world.avatax.store.transactions[("DEFAULT", code, "ReturnInvoice")]
    march_model = world.avatax.store.transactions[
        ("DEFAULT", f"meterline-{march}", "SalesInvoice")
    ].model
    assert returned.model["taxOverride"]["taxDate"] == march_model["date"]
    with world.ledger.Session() as session:
        taxes = dict(
            session.execute(
                select(TaxDocument.type, TaxDocument.tax_minor).where(
                    TaxDocument.invoice_id == april
                )
            ).all()
        )
    assert taxes["ReturnInvoice"] < 0 < taxes["SalesInvoice"]
    assert world.state(april).tax_minor == sum(taxes.values())
    assert world.to_stripe().delivered == 3


@ONE_LEDGER
@pytest.mark.parametrize("fault", ["timeout", "drop", "error_500"])
def test_a_void_through_faults_voids_once_and_redelivery_changes_nothing(
    tax_world: TaxWorld, fault: str
) -> None:
    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    assert world.tax().ok
    with world.Session.begin() as session:
        billing.void(session, march, as_of=MARCH.end + GRACE)
    world.avatax.plan(fault, when=lambda method, path: path.endswith("/void"), delay=1.0)
    report = world.tax()
    assert report.ok, report.summary()
    assert world.avatax.injected[fault] == 1
    assert world.avatax.store.live() == [(f"meterline-{march}", "SalesInvoice", "Cancelled")]
    assert world.state(march).status == "voided"
    # Both events again (finalized, then voided): nothing is created, nothing changes.
    assert replay_from(1, sink="avalara", config=world.settings) == 2
    again = world.tax()
    assert again.ok and again.delivered == 2, again.summary()
    assert (again.transactions_created, again.transactions_voided) == (0, 0)
    assert world.avatax.store.done["create"] == 1 and world.state(march).status == "voided"
    assert documents(world) == 1


@ONE_LEDGER
@pytest.mark.parametrize(
    ("env", "code", "expected"),
    [
        (
            {"METERLINE_AVALARA_LICENSE_KEY": "wrong-sekrit-key"},
            2,
            "AvaTax 401 AuthenticationException",
        ),
        ({"METERLINE_AVALARA_API_BASE": "http://127.0.0.1:9"}, 4, "AvaTax unreachable"),
        ({"METERLINE_AVALARA_COMPANY_CODE": "NOPE"}, 1, "Company not found"),
    ],
)
def test_the_deliver_command_against_a_refusing_avatax_is_one_line_and_charges_nothing(
    tax_world: TaxWorld,
    env: dict[str, str],
    code: int,
    expected: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from billing.models import OutboxDelivery
    from meterline.settings import settings

    world = tax_world
    march = world.post(MARCH)
    world.finalize(march, MARCH)
    monkeypatch.chdir(tmp_path)
    base = {
        "METERLINE_LEDGER_URL": world.ledger.url,
        "METERLINE_TAX_SINK": "avalara",
        "METERLINE_AVALARA_ACCOUNT_ID": "2000000001",
        "METERLINE_AVALARA_LICENSE_KEY": "standin-license-key",
        "METERLINE_AVALARA_API_BASE": world.avatax.base_url,
        "METERLINE_AVALARA_COMPANY_CODE": "DEFAULT",
        "METERLINE_AVALARA_ORIGIN_ADDRESS": json.dumps(ORIGIN),
        "METERLINE_AVALARA_TIMEOUT_S": "1",
        "METERLINE_AVALARA_REQUEST_ATTEMPTS": "1",
    }
    settings.cache_clear()
    try:
        result = CliRunner().invoke(
            main, ["outbox", "deliver", "--sink", "avalara"], env={**base, **env}
        )
    finally:
        settings.cache_clear()
    out = result.output
    assert result.exit_code == code, out
    assert expected in out and "Traceback" not in out
    # Every line is one of meterline's (the SDK's multi-line JSON log records are not).
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0].startswith("meterline: ") and '"error"' not in out, out
    for secret in ("sekrit", "standin-license-key"):
        assert secret not in out and secret not in caplog.text
    assert world.state(march).status == "pending" and documents(world) == 0
    if code == 2:  # refused credentials: the run stops, no attempt charged
        assert len([line for line in out.splitlines() if line.strip()]) == 1
        with world.ledger.Session() as session:
            attempts = session.scalars(
                select(OutboxDelivery.attempts).where(OutboxDelivery.sink == "avalara")
            ).all()
        assert attempts == [0]
